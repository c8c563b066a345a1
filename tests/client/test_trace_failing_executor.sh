#!/usr/bin/env bash
# Trace jobs with a failing executor beside healthy ones, through the real
# daemons: a sim executor that fails every job (--sim-fail-share=1) next to
# two healthy ones; the Mooncake trace replayed by sluice-bench loadgen.
# The failing one is quarantined after its first few failures, so nearly
# every trace job runs on the healthy ones, and loadgen reports the few that
# failed (and exits 1 for them). Usage: test_trace_failing_executor.sh BIN_DIR TRACE_DIR
set -euo pipefail
bin=$1 traces=$2
. "$(dirname "$0")/../support/daemons.sh"
sl_daemons_init sluice-trace-fail
fail() { echo "FAIL: $*"; cat "$run"/*.log 2>/dev/null | tail -20; exit 1; }
n=60 q=3 # trace jobs; failures before quarantine (the scheduler's default)

"$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" --policy=least-outstanding \
  --quarantine-failures=$q --log-level=error 2>"$run/sched.log" &
pids+=($!)
for e in good1 good2; do
  "$bin/sluice-executor" --scheduler="$eep" --name=$e --sim-speed=50 --log-level=error 2>"$run/$e.log" &
  pids+=($!)
done
"$bin/sluice-executor" --scheduler="$eep" --name=bad --sim-speed=50 --sim-fail-share=1 \
  --log-level=error 2>"$run/bad.log" &
pids+=($!)
sl_wait_executors "$bin" good1 good2 bad

set +e
out=$("$bin/sluice-bench" loadgen --endpoint="$cep" --trace=mooncake-conversation --trace-dir="$traces" \
  --count=$n --rate=100 --max-new-tokens-cap=4 --prompt-cap=2048 --drain-timeout-ms=30000 2>&1)
st=$?
set -e
res=$(grep '^RESULT' <<<"$out") || fail "no RESULT line: $out"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $res"; }
sent=$(field sent) done_=$(field done) errors=$(field errors)
echo "$res"
[ "$sent" -eq $n ] || fail "sent $sent of $n"
# the failures before quarantine, plus the few already dispatched to it
# when the q-th failure came back
[ "$errors" -ge 1 ] && [ "$errors" -le $((2 * q)) ] ||
  fail "$errors trace jobs failed (want 1..$((2 * q)): the failing executor's jobs before quarantine)"
[ "$done_" -eq $((n - errors)) ] || fail "done $done_ + errors $errors != $n"
[ $st -eq 1 ] || fail "loadgen exited $st with $errors failed jobs (want 1)"

status=$("$bin/sluice" status --endpoint="$cep")
bad=$(grep '^ *bad ' <<<"$status") || fail "no bad executor in status"
grep -q ' quar ' <<<"$bad" || fail "the failing executor is not quarantined: $bad"
grep -qE '^ *executors_quarantined +1$' <<<"$status" || fail "executors_quarantined is not 1"
echo "1 passed, 0 failed"
