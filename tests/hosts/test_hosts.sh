#!/usr/bin/env bash
# The multi-host bed for real (tests/hosts/hosts.sh): three hosts on links
# shaped to 100 Mbit/s; a TCP transfer between two of them runs within 10%
# of the shaped rate (the best of up to three, never over it); a host is reached by a TCP connect, not reached while
# its link is down, reached again once it is up; with deploy/tc/sluice-tc.sh
# as the root tree of a host's egress, traffic marked with TOS 0x20 (DSCP
# CS1) lands in the background class 1:30 and is held at its 20% ceiling;
# and the cleanup leaves no namespace, bridge or veth of the run.
# Needs root and iproute2: exits 77 (ctest: skipped) otherwise.
#   test_hosts.sh SL_HOSTS_TCP
set -euo pipefail
tool=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/hosts/hosts.sh"
fail() { echo "FAIL: $*"; exit 1; }
rate_mbit=100
port=5201

hosts_init
prefix=$HOSTS_PREFIX
for h in a b c; do hosts_add "$h" ${rate_mbit}mbit; done
[ "$(hosts_addr a)" != "$(hosts_addr b)" ] || fail "two hosts share an address"
[ "$(hosts_ns c)" = "$prefix-c" ] || fail "hosts_ns c: $(hosts_ns c)"
dev=$(hosts_dev a)
[ ${#dev} -le 15 ] || fail "interface name $dev longer than 15 characters"
devs=$(hosts_exec a ip -o link show)
grep -q " $dev[@:]" <<<"$devs" || fail "hosts_dev a ($dev) is not in host a: $devs"

out=$(mktemp -d /tmp/test-hosts-XXXXXX)
kept=""
trap 'hosts_cleanup; rm -rf "$out"; [ -z "$kept" ] || SLUICE_HOSTS_BED=$kept "$root/scripts/hosts" down' EXIT
hosts_exec b "$tool" recv $port >"$out/recv-b" 2>&1 &
hosts_exec c "$tool" recv $port >"$out/recv-c" 2>&1 &

# reachability by TCP connect (the receiver may still be starting: retry)
ok=0
for _ in $(seq 50); do
  if hosts_exec a "$tool" connect "$(hosts_addr b)" $port 200; then ok=1; break; fi
  sleep 0.1
done
[ $ok -eq 1 ] || fail "host a cannot connect to host b"

# the shaped rate: 2 s of TCP from a to b, measured at the receiver. A busy
# machine can only slow a transfer (the shaper caps it), so up to three
# tries are made for the lower bound; the upper bound holds on every one.
ok=0
for try in 1 2 3; do
  hosts_exec a "$tool" send "$(hosts_addr b)" $port 2 >/dev/null
  for _ in $(seq 50); do [ "$(wc -l <"$out/recv-b")" -ge $try ] && break; sleep 0.1; done
  line=$(sed -n "${try}p" "$out/recv-b")
  mbit=$(sed -n 's/.*mbit_s=\([0-9.]*\).*/\1/p' <<<"$line")
  echo "a -> b at ${rate_mbit}mbit, try $try: $line"
  [ -n "$mbit" ] || fail "no measurement from the receiver: $line"
  awk -v m="$mbit" -v r=$rate_mbit 'BEGIN { exit !(m <= 1.1 * r) }' ||
    fail "a -> b ran at $mbit Mbit/s, over the shaped $rate_mbit by more than 10%"
  if awk -v m="$mbit" -v r=$rate_mbit 'BEGIN { exit !(m >= 0.9 * r) }'; then ok=1; break; fi
done
[ $ok -eq 1 ] || fail "a -> b under 90% of the shaped $rate_mbit Mbit/s in three tries"

# a partition: c's link down, a cannot reach c (nor c reach a); up again, it can
hosts_link c down
if hosts_exec a "$tool" connect "$(hosts_addr c)" $port 500; then fail "connect to c with its link down"; fi
if hosts_exec c "$tool" connect "$(hosts_addr a)" $port 500; then fail "c connected out with its link down"; fi
hosts_link c up
ok=0
for _ in $(seq 30); do
  if hosts_exec a "$tool" connect "$(hosts_addr c)" $port 500; then ok=1; break; fi
  sleep 0.1
done
[ $ok -eq 1 ] || fail "host c unreachable after its link came back up"

# DSCP: sluice-tc.sh as a's egress root; CS1-marked traffic goes to 1:30 and
# runs at its ceiling (20% of the link), unmarked traffic to 1:20
hosts_exec a "$root/deploy/tc/sluice-tc.sh" apply "$dev" ${rate_mbit}mbit >/dev/null
hosts_exec a "$tool" send "$(hosts_addr c)" $port 2 0x20 >/dev/null
hosts_exec a "$tool" send "$(hosts_addr c)" $port 1 >/dev/null
stats=$(hosts_tc_stats a)
echo "a's egress classes after a CS1 and an unmarked transfer:"
echo "$stats"
bg=$(awk '$1 == "1:30" { print $2 }' <<<"$stats")
crit=$(awk '$1 == "1:20" { print $2 }' <<<"$stats")
[ -n "$bg" ] && [ -n "$crit" ] || fail "no classes 1:20 and 1:30 on a's egress"
for _ in $(seq 50); do [ "$(wc -l <"$out/recv-c")" -ge 2 ] && break; sleep 0.1; done
marked=$(sed -n '1s/^bytes=\([0-9]*\) .*/\1/p' "$out/recv-c")
plain=$(sed -n '2s/^bytes=\([0-9]*\) .*/\1/p' "$out/recv-c")
cs1=$(sed -n '1s/.*mbit_s=\([0-9.]*\).*/\1/p' "$out/recv-c")
echo "c received: CS1-marked $marked bytes at $cs1 Mbit/s, unmarked $plain bytes"
[ -n "$marked" ] && [ -n "$plain" ] || fail "c did not report both transfers"
# each class sent its transfer's bytes with their headers (1514 on the wire
# per 1448 of payload: 4.6% more), and nothing of the other's
awk -v w="$bg" -v p="$marked" 'BEGIN { exit !(w >= p && w <= 1.08 * p) }' ||
  fail "class 1:30 sent $bg bytes for a CS1-marked transfer of $marked"
awk -v w="$crit" -v p="$plain" 'BEGIN { exit !(w >= p && w <= 1.08 * p) }' ||
  fail "class 1:20 sent $crit bytes for an unmarked transfer of $plain"
awk -v m="$cs1" -v r=$rate_mbit 'BEGIN { exit !(m >= 0.12 * r && m <= 0.21 * r) }' ||
  fail "CS1-marked transfer at $cs1 Mbit/s, want under its class's 20% ceiling of $rate_mbit (and not starved)"

# a run killed with SIGKILL leaves its namespaces; `scripts/hosts clean`
# removes them, and leaves this (live) run's alone, and a kept bed (as
# `scripts/hosts up` makes), which `scripts/hosts down` removes
kept=$(bash -c '. "$1"; hosts_init >/dev/null; hosts_add k; hosts_keep; echo "$HOSTS_PREFIX"' _ \
  "$root/tests/hosts/hosts.sh")
[ -n "$kept" ] || fail "no kept bed"
dead=$(bash -c '. "$1"; hosts_init; hosts_add x; echo "$HOSTS_PREFIX"; kill -KILL $$' _ \
  "$root/tests/hosts/hosts.sh" || true)
[ -n "$dead" ] || fail "the killed run printed no prefix"
left=$(ip netns list)
grep -q "^$dead-x" <<<"$left" || fail "the killed run left nothing to clean ($left)"
cleaned=$("$root/scripts/hosts" clean)
echo "$cleaned"
left=$(ip netns list)
if grep -q "^$dead" <<<"$left"; then fail "clean left the killed run's namespaces: $left"; fi
grep -q "^$prefix-a" <<<"$left" || fail "clean removed a live run's namespaces"
grep -q "^$kept-k" <<<"$left" || fail "clean removed a kept bed"
SLUICE_HOSTS_BED=$kept "$root/scripts/hosts" down
left=$(ip netns list)
down=$kept kept=""
if grep -q "^$down" <<<"$left"; then fail "down left the kept bed: $left"; fi

# cleanup: nothing of the run remains, here or in any namespace list
hosts_cleanup
left=$(ip netns list)
if grep -q "^$prefix" <<<"$left"; then fail "namespaces left: $left"; fi
left=$(ip -o link show)
if grep -q "$prefix" <<<"$left"; then fail "interfaces left: $left"; fi
[ ! -e "$HOSTS_STATE_DIR/$prefix.pid" ] || fail "state file left"
echo "1 passed, 0 failed"
