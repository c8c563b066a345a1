#!/usr/bin/env bash
# Sluice traffic classes on a plain TCP host, with Linux HTB: the same split
# the transport's scheduler enforces (control first, critical, background
# held at or under 20% of the link). Classification is by the IP TOS byte
# (the daemons' --tos knob on their control sockets, the transport's
# xport-tos-* knobs) and, optionally, by TCP port for bulk tools that cannot
# mark packets.
#
#   sluice-tc.sh apply  DEV RATE   e.g. sluice-tc.sh apply eth0 25gbit
#   sluice-tc.sh status DEV
#   sluice-tc.sh clear  DEV
#
# Environment (defaults match the transport's knobs):
#   SLUICE_TC_BG_SHARE=20        background ceiling, percent of RATE (1..94)
#   SLUICE_TC_TOS_CONTROL=0xb8   DSCP EF   (xport-tos-control=184)
#   SLUICE_TC_TOS_CRITICAL=0x68  DSCP AF31 (xport-tos-critical=104)
#   SLUICE_TC_TOS_BACKGROUND=0x20 DSCP CS1 (xport-tos-background=32)
#   SLUICE_TC_BG_PORTS="873 9100" destination ports also put in background
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
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
# control takes 5% and critical at least 1%: background can have 1..94
if ! [[ $share =~ ^[0-9]+$ ]] || [ "$share" -lt 1 ] || [ "$share" -gt 94 ]; then
  echo "sluice-tc: SLUICE_TC_BG_SHARE must be 1..94, got '$share'" >&2; exit 2
fi
# tc accepts "25gbit", "10000mbit"... ; shares are taken in kbit so that a
# small rate ("10gbit" at 5%) does not round down to zero
num=${rate%%[a-zA-Z]*} unit=${rate#$num}
case "$unit" in
  kbit) kbit=$num ;; mbit) kbit=$(( num * 1000 )) ;; gbit) kbit=$(( num * 1000000 )) ;;
  tbit) kbit=$(( num * 1000000000 )) ;; *) kbit="" ;;
esac
if ! [[ $num =~ ^[0-9]+$ ]] || [ -z "$kbit" ] || [ "$kbit" -lt 100 ]; then
  echo "sluice-tc: RATE must look like 25gbit, 10000mbit or 500kbit (at least 100kbit), got '$rate'" >&2
  exit 2
fi
pct() { echo "$(( kbit * $1 / 100 ))kbit"; }
# burst: a millisecond at the link rate, and at least 128 KiB, so that the
# 64 KiB segments of TCP segmentation offload pass without the classes
# waiting out tc's default burst (one MTU) between them, which costs a
# tenth of a 1 Gbit/s link. quantum: one such segment (the classes have
# priorities of their own, so it only orders a class's turns; left to
# HTB, rate / 10 passes its 200000-byte limit above 16 Mbit/s and the
# kernel warns on every class)
burst=$(( kbit / 8 > 131072 ? kbit / 8 : 131072 ))
add_class() { tc class add dev "$dev" "$@" burst "$burst" cburst "$burst" quantum 65536; }
crit_share=$(( 100 - share - 5 ))

tc qdisc del dev "$dev" root 2>/dev/null || true
# unclassified traffic goes to critical: nothing unmarked is ever starved
tc qdisc add dev "$dev" root handle 1: htb default 20
add_class parent 1: classid 1:1 htb rate "$rate" ceil "$rate"
# control: small guaranteed rate, may borrow everything, served first
add_class parent 1:1 classid 1:10 htb rate "$(pct 5)" ceil "$rate" prio 0
# critical: the rest of the guarantee, may borrow up to the link
add_class parent 1:1 classid 1:20 htb rate "$(pct $crit_share)" ceil "$rate" prio 1
# background: guaranteed and capped at its share (ceil), even when the link is idle
add_class parent 1:1 classid 1:30 htb rate "$(pct "$share")" ceil "$(pct "$share")" prio 2
for c in 10 20 30; do
  # fq_codel where the kernel has it; plain pfifo (with a warning) otherwise
  if ! tc qdisc add dev "$dev" parent 1:$c handle $c: fq_codel 2>/dev/null; then
    [ $c -eq 10 ] && echo "sluice-tc: warning: no fq_codel in this kernel; the classes use pfifo" >&2
    tc qdisc add dev "$dev" parent 1:$c handle $c: pfifo
  fi
done
# TOS byte = DSCP << 2; the mask ignores the two ECN bits
tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip tos "$tos_ctl" 0xfc flowid 1:10
tc filter add dev "$dev" parent 1: protocol ip prio 2 u32 match ip tos "$tos_crit" 0xfc flowid 1:20
tc filter add dev "$dev" parent 1: protocol ip prio 3 u32 match ip tos "$tos_bg" 0xfc flowid 1:30
for p in ${SLUICE_TC_BG_PORTS:-}; do
  tc filter add dev "$dev" parent 1: protocol ip prio 4 u32 match ip dport "$p" 0xffff flowid 1:30
done
echo "sluice-tc: $dev: HTB rate $rate; control 1:10, critical 1:20 (default), background 1:30 ceil $(pct "$share")"
