#!/usr/bin/env bash
# Sluice traffic classes on a plain TCP host, with Linux HTB: the same split
# the transport's scheduler enforces (control first, critical, background
# held at or under 20% of the link). Classification is by the IP TOS byte
# the transport sets (ZMQ_TOS on control sockets, xport-tos-* knobs) and,
# optionally, by TCP port ranges for bulk tools that cannot mark packets.
#
#   sluice-tc.sh apply  DEV RATE   e.g. sluice-tc.sh apply eth0 25gbit
#   sluice-tc.sh status DEV
#   sluice-tc.sh clear  DEV
#
# Environment (defaults match the transport's knobs):
#   SLUICE_TC_BG_SHARE=20        background ceiling, percent of RATE
#   SLUICE_TC_TOS_CONTROL=0xb8   DSCP EF   (xport-tos-control=184)
#   SLUICE_TC_TOS_CRITICAL=0x68  DSCP AF31 (xport-tos-critical=104)
#   SLUICE_TC_TOS_BACKGROUND=0x20 DSCP CS1 (xport-tos-background=32)
#   SLUICE_TC_BG_PORTS="873 9100" destination ports also put in background
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dev=$2
command -v tc >/dev/null || { echo "sluice-tc: tc not found (Debian package iproute2)" >&2; exit 1; }

case "$cmd" in
status)
  tc -s qdisc show dev "$dev"
  tc -s class show dev "$dev"
  tc filter show dev "$dev"
  exit 0 ;;
clear)
  tc qdisc del dev "$dev" root 2>/dev/null || true
  exit 0 ;;
apply) ;;
*) usage ;;
esac

[ $# -ge 3 ] || usage
rate=$3
share=${SLUICE_TC_BG_SHARE:-20}
tos_ctl=${SLUICE_TC_TOS_CONTROL:-0xb8}
tos_crit=${SLUICE_TC_TOS_CRITICAL:-0x68}
tos_bg=${SLUICE_TC_TOS_BACKGROUND:-0x20}
if ! [[ $share =~ ^[0-9]+$ ]] || [ "$share" -lt 1 ] || [ "$share" -gt 100 ]; then
  echo "sluice-tc: SLUICE_TC_BG_SHARE must be 1..100, got '$share'" >&2; exit 2
fi
# tc accepts "25gbit", "10000mbit"... ; split number and unit to take shares
num=${rate%%[a-zA-Z]*} unit=${rate#$num}
if ! [[ $num =~ ^[0-9]+$ ]] || [ -z "$unit" ]; then
  echo "sluice-tc: RATE must look like 25gbit or 10000mbit, got '$rate'" >&2; exit 2
fi
pct() { echo "$(( num * $1 / 100 ))$unit"; }
crit_share=$(( 100 - share - 5 ))

tc qdisc del dev "$dev" root 2>/dev/null || true
# unclassified traffic goes to critical: nothing unmarked is ever starved
tc qdisc add dev "$dev" root handle 1: htb default 20
tc class add dev "$dev" parent 1: classid 1:1 htb rate "$rate" ceil "$rate"
# control: small guaranteed rate, may borrow everything, served first
tc class add dev "$dev" parent 1:1 classid 1:10 htb rate "$(pct 5)" ceil "$rate" prio 0
# critical: the rest of the guarantee, may borrow up to the link
tc class add dev "$dev" parent 1:1 classid 1:20 htb rate "$(pct $crit_share)" ceil "$rate" prio 1
# background: guaranteed and capped at its share (ceil), even when the link is idle
tc class add dev "$dev" parent 1:1 classid 1:30 htb rate "$(pct "$share")" ceil "$(pct "$share")" prio 2
for c in 10 20 30; do
  tc qdisc add dev "$dev" parent 1:$c handle $c: fq_codel
done
# TOS byte = DSCP << 2; the mask ignores the two ECN bits
tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip tos "$tos_ctl" 0xfc flowid 1:10
tc filter add dev "$dev" parent 1: protocol ip prio 2 u32 match ip tos "$tos_crit" 0xfc flowid 1:20
tc filter add dev "$dev" parent 1: protocol ip prio 3 u32 match ip tos "$tos_bg" 0xfc flowid 1:30
for p in ${SLUICE_TC_BG_PORTS:-}; do
  tc filter add dev "$dev" parent 1: protocol ip prio 4 u32 match ip dport "$p" 0xffff flowid 1:30
done
echo "sluice-tc: $dev: HTB rate $rate; control 1:10, critical 1:20 (default), background 1:30 ceil $(pct "$share")"
