#!/usr/bin/env bash
# sluice-bench qos --hosts --quick: two engines in two hosts of the bed over
# a 1 Gbit/s shaped link, short phases; the run ends with a RESULT line,
# background held near its share of the bytes (at most 0.25 in these short
# windows; the full run's target is 0.20, docs/BENCHMARKS.md) and the bed
# removed. Needs root and network namespaces: 77 (skipped) otherwise.
#   test_bench_qos_hosts.sh SLUICE_BENCH
set -euo pipefail
bench=$1
fail() { echo "FAIL: $*"; exit 1; }
set +e
out=$(SLUICE_LOG_LEVEL=warn "$bench" qos --hosts --quick 2>&1)
st=$?
set -e
echo "$out"
[ $st -ne 77 ] || exit 77
[ $st -eq 0 ] || fail "sluice-bench qos --hosts exited with $st"
result=$(grep '^RESULT ' <<<"$out") || fail "no RESULT line"
bg=$(sed -n 's/.* bg_share_max=\([0-9.]*\).*/\1/p' <<<"$result")
[ -n "$bg" ] || fail "no bg_share_max in: $result"
awk -v b="$bg" 'BEGIN { exit !(b <= 0.25) }' || fail "bg_share_max=$bg over 0.25"
grep -q ' hosts=2 ' <<<"$result" || fail "the RESULT line does not say it ran on two hosts"
after=$(ip netns list 2>/dev/null || true)
prefix=$(sed -n 's/^# hosts: \(slh[0-9a-f]*\)-a .*/\1/p' <<<"$out")
[ -n "$prefix" ] || fail "no bed named in the output"
if grep -q "^$prefix" <<<"$after"; then fail "the bed $prefix was left behind: $after"; fi
echo "1 passed, 0 failed"
