#!/usr/bin/env bash
# The simulator against the live system for one disaggregated
# configuration: a scheduler (policy learned, admission off), one prefill
# and one decode sim executor with the data plane on, and sluice-bench
# loadgen replaying the first 90 requests of the conversation trace at
# 1.5 req/s; then sluice-sim run on the same executors, speed, roles,
# requests and rate. The p50 TTFT, the goodput and the KV bytes moved must
# agree within 15%.
#   test_disagg_live.sh BUILD_DIR TRACE_DIR
# Time: the sim backend's coefficients are the same in both; the live
# executors run the modelled time on the wall clock at --sim-speed 5 (a
# run takes about a minute) and the simulator gets the same speed. The
# data plane here is UCX over loopback on a shared host, not a 100 Gbit/s
# NIC: its transfers took a few milliseconds each (a couple for the
# scheduler's reservation round trip, the rest software RMA at about
# 1 Gbit/s), so the simulator's links are given 1 Gbit/s and 3 ms, and the
# KV is kept small (32 bytes per token) so the figures measure the split,
# not the loopback. Exit 77 (skipped) when the live scheduler hands no
# split's KV off (its kv_handoffs counter stays 0): the live data plane
# path is then not working, and there is nothing to compare.
set -euo pipefail
bin=$1/bin traces=$2
. "$(dirname "$0")/../support/daemons.sh"
sl_daemons_init sl-disagg-live
count=90 rate=1.5 speed=5 bpt=32

show_logs() {
  for f in "$run"/*.log; do
    echo "== $(basename "$f")"
    tail -20 "$f"
  done
}
fail() {
  echo "FAIL: $*"
  show_logs
  exit 1
}

# A loaded host delays heartbeats; an executor declared lost would end the
# comparison, so the scheduler tolerates 5 s of silence.
"$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" --policy=learned \
  --admission=false --kv-rebalance=false --missed-heartbeats=50 --log-level=warn \
  2>"$run/scheduler.log" &
pids+=($!)
for role in prefill decode; do
  "$bin/sluice-executor" --scheduler="$eep" --name="$role" --backend=sim --slots=32 \
    --max-batch=32 --sim-speed="$speed" --data-plane=on --role="$role" \
    --kv-bytes-per-token="$bpt" --log-level=warn 2>"$run/$role.log" &
  pids+=($!)
done
sl_wait_executors "$bin" prefill decode
# Each must have reached the other over the data plane (DATA_PLANE 1/1)
# before a job can be split between them.
for _ in $(seq 100); do
  status=$("$bin/sluice" status --endpoint="$cep" 2>/dev/null || true)
  reached=$(grep -cE '^ *(prefill|decode) .*MiB 1/1( |$)' <<<"$status" || true)
  [ "$reached" -eq 2 ] && break
  sleep 0.1
done
[ "$reached" -eq 2 ] || fail "the executors did not reach each other over the data plane:
$status"

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

live=$("$bin/sluice-bench" loadgen --endpoint="$cep" --trace=mooncake-conversation \
  --trace-dir="$traces" --count="$count" --rate="$rate" --busy=drop --drain-timeout-ms=60000 \
  2>"$run/loadgen.log") || fail "loadgen failed:
$live"
echo "$live"
lr=$(grep '^RESULT ' <<<"$live")
status=$("$bin/sluice" status --endpoint="$cep")
handoffs=$(sed -n 's/^ *kv_handoffs *\([0-9]*\)$/\1/p' <<<"$status")
splits=$(sed -n 's/^ *kv_splits *\([0-9]*\)$/\1/p' <<<"$status")
live_bytes=$(sed -n 's/^ *kv_bytes_moved *\([0-9]*\)$/\1/p' <<<"$status")
echo "live: kv_splits=${splits:-?} kv_handoffs=${handoffs:-?} of $count jobs"
if [ "${handoffs:-0}" -eq 0 ]; then
  echo "SKIP: the live scheduler handed no split's KV off (kv_handoffs 0): the live data plane" \
    "path does not split jobs yet, so there is nothing to compare with the simulator"
  show_logs
  exit 77
fi
[ "$(field "$lr" done)" -eq "$count" ] || fail "live: $(field "$lr" done) of $count jobs done"
# Every job is split (a decode executor only decodes). A handoff can go
# uncounted when the decode side finishes before the prefill side's KvSent
# reaches the scheduler (a short output at this speed), so handoffs are
# not required to be all.
[ "$splits" -eq "$count" ] || fail "live: $splits of $count jobs split"

sim=$("$bin/sluice-sim" run --trace=mooncake-conversation --trace-dir="$traces" --executors=2 \
  --speeds="$speed" --prefill=1 --decode=1 --no-admission --requests="$count" --rate="$rate" \
  --kv-bytes-per-token="$bpt" --link-gbps=1 --link-latency-us=3000) || fail "sluice-sim failed"
echo "$sim"
sr=$(grep '^RESULT ' <<<"$sim")
grep -q "^data plane: $count splits ($count handed off" <<<"$sim" ||
  fail "the simulator did not split every job"

sim_bytes=$(sed -n 's/^data plane: .* \([0-9]*\) KV bytes moved.*/\1/p' <<<"$sim")
# The KV bytes moved are the prompts' blocks less the decode side's cached
# ones: the same workload moves about the same bytes (cache hits may differ
# with the order of reservations and imports).
awk -v lt="$(field "$lr" ttft_p50_ms)" -v st="$(field "$sr" p50_ttft_s)" \
  -v lg="$(field "$lr" goodput)" -v sg="$(field "$sr" goodput_rps)" \
  -v lb="${live_bytes:-0}" -v sb="${sim_bytes:-0}" 'BEGIN {
  st *= 1000; rt = lt / st; rg = sg > 0 ? lg / sg : 0; rb = sb > 0 ? lb / sb : 0
  ok = rt >= 0.85 && rt <= 1.15 && rg >= 0.85 && rg <= 1.15 && rb >= 0.85 && rb <= 1.15
  printf "RESULT live_p50_ttft_ms=%.1f sim_p50_ttft_ms=%.1f ttft_ratio=%.3f live_goodput=%.3f " \
         "sim_goodput=%.3f goodput_ratio=%.3f live_kv_bytes=%d sim_kv_bytes=%d within_15pct=%s\n",
         lt, st, rt, lg, sg, rg, lb, sb, ok ? "yes" : "no"
  exit !ok }' || fail "the live system and the simulator differ by more than 15%"
echo "PASS"
