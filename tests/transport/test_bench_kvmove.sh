#!/usr/bin/env bash
# sluice-bench kvmove --quick over TCP and over shared memory: it exits
# cleanly, every move's KV arrived intact (the bench checks a hash of every
# byte of the destination's blocks and fails otherwise), and it ends with
# exactly one RESULT line with all its keys. No speed is asserted.
# Usage: test_bench_kvmove.sh BIN_DIR
set -euo pipefail
bin=$1
fail() { echo "test_bench_kvmove: $*" >&2; exit 1; }

for tls in tcp posix,sysv,self; do
  out=$(SLUICE_LOG_LEVEL=warn timeout 200 "$bin/sluice-bench" kvmove --quick --tls="$tls" \
        --migrations=3) || fail "kvmove --tls=$tls failed: $out"
  echo "$out"
  # every move checked: a warm-up move, 2 rounds of 2 prompts (each moved up
  # to 8 times) and 3 migrations, at least 8 in all
  intact=$(grep "^# kv intact: " <<<"$out" | awk '{ print $4, $6 }')
  read -r checked started <<<"$intact"
  [ -n "$checked" ] && [ "$checked" = "$started" ] && [ "$checked" -ge 8 ] ||
    fail "--tls=$tls: not every move was checked ($intact)"
  results=$(grep -c "^RESULT " <<<"$out" || true)
  [ "$results" = 1 ] || fail "--tls=$tls: $results RESULT lines"
  [ "$(tail -n 1 <<<"$out" | cut -d' ' -f1)" = RESULT ] || fail "--tls=$tls: RESULT is not last"
  line=$(grep "^RESULT " <<<"$out")
  for key in ratio ratio_4k ratio_32k kv_gbps perftest_gbps migration_pause_ms ratio_block_4k ratio_block_32k; do
    grep -Eq " $key=[0-9]+\.[0-9]+( |$)" <<<"$line" || fail "--tls=$tls: no number for $key"
  done
  grep -q " tls=$tls\$" <<<"$line" || fail "--tls=$tls: RESULT names another transport"
done
echo "test_bench_kvmove: ok"
