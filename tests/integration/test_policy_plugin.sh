#!/usr/bin/env bash
# Placement policies as plugins: the example plugin (examples/policy) built
# out of the tree against the installed <sluice/policy.h> only, then loaded
# by a real scheduler (--policy-path) with two sim executors:
#  - pinned to executor "b" (SLUICE_POLICY_PIN), every job runs on b, where
#    the fallback --policy=round-robin would alternate;
#  - answering out of range (SLUICE_POLICY_BROKEN=1), every job is still
#    served, placed by round-robin, and policy_invalid_choices counts each;
#  - a library without the entry point, or built for another ABI, is refused
#    at start (exit 2) with the reason.
#   test_policy_plugin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2 bin=$1/bin
. "$src/tests/support/daemons.sh"
sl_daemons_init sl-plugin
jobs=6

# install, then build the example as a user would: the header and a compiler
cmake --install "$build" --prefix "$run/prefix" >/dev/null || fail "cmake --install failed"
[ -f "$run/prefix/include/sluice/policy.h" ] || fail "sluice/policy.h is not installed"
cc=${CC:-cc}
"$cc" -std=c11 -Wall -Wextra -Werror -shared -fPIC -O2 -I"$run/prefix/include" \
  "$src/examples/policy/shortest_ttft.c" -o "$run/libshortest_ttft.so" ||
  fail "the example plugin does not build against the installed header"

start() { # start the scheduler with the plugin, env in "$@", and executors a, b
  env "$@" "$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" \
    --policy=round-robin --policy-path="$run/libshortest_ttft.so" --log-level=info \
    2>"$run/scheduler.log" &
  sched=$!
  pids+=($sched)
  for n in a b; do
    "$bin/sluice-executor" --scheduler="$eep" --name="$n" --backend=sim --slots=4 \
      --sim-speed=50 --log-level=warn 2>"$run/exec-$n.log" &
    pids+=($!)
  done
  sl_wait_executors "$bin" a b
}
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
where() { # the executors that ran $jobs jobs, one per line
  for i in $(seq "$jobs"); do
    "$bin/sluice" submit --endpoint="$cep" --prompt-tokens=32 --max-new-tokens=4 \
      --id="$1-$i" 2>&1 | sed -n 's/^ *executor \([^,]*\),.*/\1/p'
  done
}
counter() {
  "$bin/sluice" status --endpoint="$cep" | sed -n "s/^ *$1 *\([0-9]*\)$/\1/p"
}

start SLUICE_POLICY_PIN=b
grep -q "placement by plugin 'shortest-ttft'" "$run/scheduler.log" ||
  fail "the scheduler did not say it loaded the plugin: $(cat "$run/scheduler.log")"
ran=$(where pin)
echo "pinned: $(tr '\n' ' ' <<<"$ran")"
[ "$(grep -c '^b$' <<<"$ran")" -eq "$jobs" ] || fail "pinned to b, the jobs ran on: $ran"
[ "$(counter policy_invalid_choices)" = 0 ] || fail "policy_invalid_choices is not 0"
stop

start SLUICE_POLICY_BROKEN=1
ran=$(where broken)
echo "broken: $(tr '\n' ' ' <<<"$ran")"
[ "$(grep -c . <<<"$ran")" -eq "$jobs" ] || fail "only $(grep -c . <<<"$ran") of $jobs served"
grep -q '^a$' <<<"$ran" && grep -q '^b$' <<<"$ran" ||
  fail "round-robin, the fallback, would use both executors: $ran"
invalid=$(counter policy_invalid_choices)
[ "$invalid" = "$jobs" ] || fail "policy_invalid_choices is ${invalid:-missing}, not $jobs"
stop

# refused at start: no entry point; another ABI
printf 'int nothing_here;\n' >"$run/none.c"
"$cc" -shared -fPIC "$run/none.c" -o "$run/libnone.so"
sed 's/\.abi = SL_POLICY_PLUGIN_ABI/.abi = SL_POLICY_PLUGIN_ABI + 1/' \
  "$src/examples/policy/shortest_ttft.c" >"$run/future.c"
"$cc" -shared -fPIC -I"$run/prefix/include" "$run/future.c" -o "$run/libfuture.so"
for lib in libnone.so libfuture.so; do
  set +e
  timeout 10 "$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" \
    --policy-path="$run/$lib" 2>"$run/refused.log"
  st=$?
  set -e
  [ $st -eq 2 ] || fail "$lib: the scheduler exited $st, not 2: $(cat "$run/refused.log")"
  grep -qE "exports no sl_policy_plugin_v1|built for another plugin ABI" "$run/refused.log" ||
    fail "$lib: no reason given: $(cat "$run/refused.log")"
  echo "$lib refused: $(grep -oE 'policy plugin .*' "$run/refused.log" | head -1)"
done
echo "PASS"
