#!/usr/bin/env bash
# sluice-bench abuse, short: the scheduler survives garbage, oversized,
# malformed, churned and bogus-executor messages and a client flooding
# submits without reading, and refuses them by its counters. The memory
# bound itself is a one-minute figure in docs/BENCHMARKS.md.
# Usage: test_abuse_quick.sh BIN_DIR
set -euo pipefail
bin=$1
fail() { echo "FAIL: $*"; exit 1; }
set +e
# a small queue, so that it fills within the run even in the sanitizer build
out=$(timeout 120 "$bin/sluice-bench" abuse --seconds=6 --queue-max=300 2>&1)
st=$?
set -e
echo "$out"
[ $st -eq 0 ] || fail "abuse exited $st"
line=$(grep '^RESULT ' <<<"$out") || fail "no RESULT line"
grep -q ' alive=1' <<<"$line" || fail "the scheduler did not survive: $line"
counters=$(grep "^# the scheduler's counters:" <<<"$out") || fail "no counters from the scheduler"
for c in msgs_rejected_client msgs_rejected_executor busy_queue_full; do
  v=$(grep -o " $c=[0-9]*" <<<"$counters" | cut -d= -f2)
  [ -n "$v" ] && [ "$v" -gt 0 ] || fail "$c is not above 0: $counters"
done
echo PASS
