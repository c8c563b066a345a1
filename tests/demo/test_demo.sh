#!/usr/bin/env bash
# scripts/demo in its short mode (a few seconds of replay per run) against an
# existing build: both runs answer every request of the slice, the demo ends
# with the side-by-side table and a RESULT line carrying every figure of both
# sides, and nothing it started is left running.
#   test_demo.sh DEMO BUILD_DIR TRACE_DIR
set -euo pipefail
demo=$1 build=$2 traces=$3
tmp=$(mktemp -d /tmp/sl-demo-test-XXXXXX) # the demo's run folder goes under it
out=$tmp.out
trap 'rm -rf "$tmp" "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

rc=0
TMPDIR=$tmp "$demo" --build-dir "$build" --trace-dir "$traces" --duration 3 >"$out" 2>&1 || rc=$?
cat "$out"
[ $rc -eq 0 ] || fail "the demo exited with status $rc"

left=$(pgrep -f "$tmp/" || true)
[ -z "$left" ] || fail "processes left running: $left"
[ -z "$(ls -A "$tmp")" ] || fail "the demo's run folder was not removed"

for row in "goodput (jobs/s in SLO)" "requests meeting SLOs" "TTFT p50 (ms)" "TTFT p99 (ms)" \
           "BUSY answers" "completed"; do
  grep -qF "$row " "$out" || fail "no '$row' row in the table"
done
grep -q '^ *learned+admission  *kv-cost$' "$out" || fail "no table header naming both runs"
[ "$(grep -c '^RESULT ' "$out")" -eq 1 ] || fail "not exactly one RESULT line"
result=$(grep '^RESULT ' "$out")
[ "$(tail -n 1 "$out")" = "$result" ] || fail "the RESULT line is not the last line"

get() { tr ' ' '\n' <<<"$result" | sed -n "s/^$1=//p"; } # key -> value from the RESULT line
num='^[0-9]+([.][0-9]+)?$'
for k in peer policy requests; do
  [ -n "$(get $k)" ] || fail "RESULT has no $k"
done
for side in learned peer; do
  for k in goodput slo_met p50_ttft_ms p99_ttft_ms busy done errors; do
    v=$(get "${side}_$k")
    [[ $v =~ $num ]] || fail "RESULT's ${side}_$k is '$v', not a number"
  done
done
[ "$(get peer)" = kv-cost ] || fail "peer is not kv-cost"
[ "$(get policy)" = learned ] || fail "policy is not learned"
requests=$(get requests)
[ "$requests" -gt 0 ] || fail "no request replayed"
for side in learned peer; do
  # Every request of the slice answered once: completed, refused or failed.
  total=$(( $(get ${side}_done) + $(get ${side}_busy) + $(get ${side}_errors) ))
  [ "$total" -eq "$requests" ] || fail "$side answered $total of $requests requests"
  [ "$(get ${side}_done)" -gt 0 ] || fail "$side completed nothing"
  [ "$(get ${side}_slo_met)" -le "$(get ${side}_done)" ] || fail "$side met more SLOs than it completed"
done
[ "$(get peer_busy)" -eq 0 ] || fail "the peer ran with admission"

# A bad option is refused before anything starts.
rc=0
"$demo" --build-dir "$build" --duration -1 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--duration -1 gave status $rc, not 2"
echo "PASS"
