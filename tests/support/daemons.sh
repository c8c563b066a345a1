# For shell tests that start the real daemons; source it, then:
#   sl_daemons_init PREFIX      $run: a fresh folder (removed at exit); $cep, $eep:
#                               ipc endpoints in it for clients and executors;
#                               every pid added to $pids is stopped at exit;
#                               $keys: a key directory in it (sl_keys_init)
#   sl_keys_init                make $run/keys with the pairs server, client
#                               (tenant "test") and executor, their allow-lists,
#                               and export SLUICE_KEY_DIR, so that every program
#                               the test starts runs with keys (each finds its
#                               own pair by its role); needs $bin/sluice or
#                               $SLUICE_BIN/sluice
#   sl_wait_executors BIN NAME...
#                               wait (10 s at most) until `sluice status` lists
#                               every NAME as an executor; fail otherwise
#   fail MESSAGE                print FAIL: MESSAGE and exit 1 (a test may
#                               define its own after sourcing)

sl_daemons_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}

sl_daemons_init() {
  run=$(mktemp -d "/tmp/$1-XXXXXX")
  pids=()
  cep="ipc://$run/c" eep="ipc://$run/e"
  trap sl_daemons_cleanup EXIT
  sl_keys_init
}

sl_keys_init() {
  local sluice=${bin:-}/sluice c e
  [ -x "$sluice" ] || sluice=${SLUICE_BIN:-}/sluice
  [ -x "$sluice" ] || fail "sl_keys_init: no sluice program to make keys with (set bin or SLUICE_BIN)"
  keys=$run/keys
  "$sluice" keygen --name=server "$keys" >/dev/null 2>&1 || fail "sluice keygen failed in $keys"
  c=$("$sluice" keygen --name=client "$keys" 2>/dev/null) || fail "sluice keygen failed"
  e=$("$sluice" keygen --name=executor "$keys" 2>/dev/null) || fail "sluice keygen failed"
  echo "$c test" >"$keys/clients.allow"
  echo "$e executors" >"$keys/executors.allow"
  export SLUICE_KEY_DIR=$keys
}

fail() { echo "FAIL: $*"; exit 1; }

sl_wait_executors() {
  local bin=$1 status name missing
  shift
  for _ in $(seq 100); do
    status=$("$bin/sluice" status --endpoint="$cep" 2>/dev/null || true)
    missing=0
    for name in "$@"; do
      grep -q "^ *$name " <<<"$status" || missing=1
    done
    [ $missing -eq 0 ] && return 0
    sleep 0.1
  done
  fail "executors $* did not all register within 10 s"
}
