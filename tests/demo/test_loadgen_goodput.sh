#!/usr/bin/env bash
# sluice-bench loadgen's goodput: against an SLO every job meets, every
# completed job counts and goodput is completions over the span of the
# arrivals; against an SLO no job can meet (0 ms), none counts. Conflicting
# deadline options are refused.
#   test_loadgen_goodput.sh BUILD_DIR TRACE_DIR
set -euo pipefail
bin=$1/bin traces=$2
. "$(dirname "$0")/../support/daemons.sh"
sl_daemons_init sl-goodput-test

"$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" --log-level=warn \
  2>"$run/scheduler.log" &
pids+=($!)
"$bin/sluice-executor" --scheduler="$eep" --name=g1 --backend=sim --sim-speed=50 --log-level=warn \
  2>"$run/exec.log" &
pids+=($!)
sl_wait_executors "$bin" g1

lg() {
  "$bin/sluice-bench" loadgen --endpoint="$cep" --trace=mooncake-conversation --trace-dir="$traces" \
    --count=40 --rate=40 --busy=drop --max-new-tokens-cap=8 --drain-timeout-ms=20000 "$@"
}
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

out=$(lg --slo-ttft-floor-ms=600000 --slo-tpot-ms=600000 --id-prefix=all-)
echo "$out"
result=$(grep '^RESULT ' <<<"$out")
[ "$(field "$result" done)" -eq 40 ] || fail "not every job completed"
[ "$(field "$result" slo_met)" -eq 40 ] || fail "a job missed a 10-minute SLO"
# 40 arrivals at 40/s span 39/40 s: goodput 40 / 0.975 = 41.0.
awk -v g="$(field "$result" goodput)" 'BEGIN { exit !(g > 40.5 && g < 41.5) }' ||
  fail "goodput $(field "$result" goodput) is not 40 jobs over the 0.975 s of arrivals"
grep -q '^goodput ' <<<"$out" || fail "no goodput line in the summary"

out=$(lg --slo-ttft-floor-ms=0 --slo-ttft-mult=0 --id-prefix=none-)
echo "$out"
result=$(grep '^RESULT ' <<<"$out")
[ "$(field "$result" done)" -eq 40 ] || fail "not every job completed"
[ "$(field "$result" slo_met)" -eq 0 ] || fail "a job met a 0 ms TTFT SLO"
[ "$(field "$result" goodput)" = 0.000 ] || fail "goodput without a job in SLO"

rc=0
"$bin/sluice-bench" loadgen --slo-deadline --ttft-deadline-ms=100 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--slo-deadline with --ttft-deadline-ms gave status $rc, not 2"
echo "PASS"
