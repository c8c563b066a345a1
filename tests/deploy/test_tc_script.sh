#!/usr/bin/env bash
# deploy/tc/sluice-tc.sh applied for real: an HTB tree on one end of a veth
# pair inside a network namespace made for the test, its classes and rates
# read back with tc, bad arguments refused, and the tree cleared. Needs root
# and iproute2; exits 77 (ctest: skipped) without them.
set -euo pipefail
script=$(cd "$(dirname "$0")/../.." && pwd)/deploy/tc/sluice-tc.sh
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "skipped: needs root, ip and tc"; exit 77
fi
ns=sluice-tc-$$
ip netns add "$ns" || { echo "skipped: cannot create a network namespace"; exit 77; }
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link add tca type veth peer name tcb
in_ns ip link set tca up
in_ns ip link set tcb up

fail() { echo "FAIL: $*"; in_ns tc class show dev tca || true; exit 1; }
rate_of() { # class id -> "rate ceil" as tc prints them
  in_ns tc class show dev tca | awk -v id="$1" '$3 == id { for (i = 1; i <= NF; i++) { if ($i == "rate") r = $(i + 1); if ($i == "ceil") c = $(i + 1) } print r, c }'
}

# 100mbit with background at 10%: 5 / 85 / 10 Mbit, background capped at 10
in_ns env SLUICE_TC_BG_SHARE=10 SLUICE_TC_BG_PORTS=873 "$script" apply tca 100mbit
[ "$(rate_of 1:10)" = "5Mbit 100Mbit" ] || fail "control class: $(rate_of 1:10)"
[ "$(rate_of 1:20)" = "85Mbit 100Mbit" ] || fail "critical class: $(rate_of 1:20)"
[ "$(rate_of 1:30)" = "10Mbit 10Mbit" ] || fail "background class: $(rate_of 1:30)"
# (read whole before grep: grep -q stopping early would fail tc under pipefail)
filters=$(in_ns tc filter show dev tca)
grep -q "flowid 1:30" <<<"$filters" || fail "no filter into background"

# the default share (20%), applied over the previous tree; a small gbit rate
# whose 5% is under one gbit must not round down to zero
in_ns "$script" apply tca 10gbit
[ "$(rate_of 1:30)" = "2Gbit 2Gbit" ] || fail "background at 10gbit: $(rate_of 1:30)"
[ "$(rate_of 1:10)" = "500Mbit 10Gbit" ] || fail "control at 10gbit: $(rate_of 1:10)"

# bad arguments: refused with status 2, before touching the interface
set +e
in_ns env SLUICE_TC_BG_SHARE=95 "$script" apply tca 100mbit 2>/dev/null; st1=$?
in_ns "$script" apply tca fast 2>/dev/null; st2=$?
in_ns "$script" bogus tca 2>/dev/null; st3=$?
set -e
[ $st1 -eq 2 ] && [ $st2 -eq 2 ] && [ $st3 -eq 2 ] || fail "bad arguments gave $st1 $st2 $st3, want 2 2 2"
[ "$(rate_of 1:30)" = "2Gbit 2Gbit" ] || fail "a refused apply changed the tree"

in_ns "$script" status tca >/dev/null
in_ns "$script" clear tca
qdiscs=$(in_ns tc qdisc show dev tca)
if grep -q htb <<<"$qdiscs"; then fail "clear left the HTB tree"; fi
echo "1 passed, 0 failed"
