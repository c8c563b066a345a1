# A multi-host test bed on one machine: each host a network namespace with
# its own address, every host joined to one bridge by a veth pair, each
# link optionally shaped to a rate with HTB. Source it from bash, then:
#
#   hosts_init              a run of its own: unique names, cleanup at exit;
#                           exits 77 ("skipped: <reason>") when namespaces,
#                           veth pairs, bridges or tc cannot be made
#   hosts_add NAME [RATE]   a host; RATE (1gbit, 100mbit...) shapes both
#                           directions of its link
#   hosts_exec NAME cmd...  run cmd inside the host
#   hosts_addr NAME         its IPv4 address     hosts_dev NAME   its interface
#   hosts_ns NAME           its namespace name
#   hosts_link NAME down|up take its link down (a partition) or up again
#   hosts_tc_stats NAME     "class bytes" lines of its egress HTB classes
#   hosts_cleanup           remove everything now (also run at exit)
#
# Shape. The bridge lives in a namespace of its own, so nothing is made in
# the caller's namespace: deleting the run's namespaces (the bridge's and
# the hosts') removes every veth and the bridge with them. Names:
# namespaces "slhRRRRRR-NAME" and "slhRRRRRR-br" (RRRRRR: six hex digits
# from $$ and $RANDOM), interfaces "slhRRRRRRbN" (bridge side), "slhRRRRRReN"
# (host side) and "slhRRRRRRbr", all under 15 characters. A host's address is
# 10.X.Y.N/24, X.Y drawn per run. The host's egress is an HTB root (1:)
# with one class 1:1 at RATE, so deploy/tc/sluice-tc.sh apply DEV RATE can
# replace it as the root tree and shape and classify at once; the bridge
# side (the host's ingress) is one HTB class at RATE. The link goes down on
# the bridge side, like a pulled cable: the host keeps its address, routes
# and tc tree, and sees no carrier.
#
# Each run records its owner's pid in $HOSTS_STATE_DIR (default
# /run/sluice-hosts), so `scripts/hosts clean` can remove the leftovers of
# runs whose owner died (a SIGKILL leaves no chance for a trap) without
# touching live ones, nor beds kept by `scripts/hosts up` (owner 0). The state is in shell variables: call hosts_add in
# the shell that called hosts_init, not in a $(...) subshell.
#
# hosts_init keeps an EXIT trap set before it (tests/support/daemons.sh's)
# and runs it after its own cleanup; a trap set after hosts_init replaces
# it, and must then call hosts_cleanup itself.

HOSTS_PROJECT_PREFIX=slh
: "${HOSTS_STATE_DIR:=/run/sluice-hosts}"

hosts__skip() {
  echo "skipped: $*"
  hosts_cleanup
  exit 77
}

hosts__die() {
  echo "hosts: $*" >&2
  exit 1
}

hosts__idx() { # NAME -> its index, or fail
  local i=${HOSTS_IDX[$1]:-}
  [ -n "$i" ] || hosts__die "no host named '$1' in this run"
  echo "$i"
}

# Remove one namespace: its processes first (a namespace with processes in
# it outlives its name), then the name.
hosts__ns_del() {
  local ns=$1 p pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  if [ -n "$pids" ]; then
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 20); do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -z "$pids" ] && break
      sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  ip netns del "$ns" 2>/dev/null || true
}

hosts_init() {
  local why
  [ "$(id -u)" -eq 0 ] || { echo "skipped: needs root (network namespaces)"; exit 77; }
  command -v ip >/dev/null && command -v tc >/dev/null ||
    { echo "skipped: needs ip and tc (Debian package iproute2)"; exit 77; }
  HOSTS_PREFIX=$HOSTS_PROJECT_PREFIX$(printf '%04x%02x' $(($$ & 0xffff)) $((RANDOM & 0xff)))
  HOSTS_NET=$((RANDOM % 254 + 1)).$((RANDOM % 256))
  HOSTS_BR_NS=$HOSTS_PREFIX-br
  HOSTS_BR=${HOSTS_PREFIX}br
  HOSTS_N=0
  HOSTS_NAMES=()
  declare -gA HOSTS_IDX=()
  local prev
  prev=$(trap -p EXIT)
  HOSTS_PREV_EXIT=""
  [ -z "$prev" ] || eval "hosts__trap_cmd $prev"
  trap 'hosts_cleanup; eval "$HOSTS_PREV_EXIT"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$HOSTS_STATE_DIR" && echo $$ >"$HOSTS_STATE_DIR/$HOSTS_PREFIX.pid" ||
    hosts__skip "cannot write $HOSTS_STATE_DIR"
  why=$(ip netns add "$HOSTS_BR_NS" 2>&1) || hosts__skip "cannot create a network namespace: $why"
  why=$(ip -n "$HOSTS_BR_NS" link add "$HOSTS_BR" type bridge 2>&1) ||
    hosts__skip "cannot create a bridge: $why"
  ip -n "$HOSTS_BR_NS" link set "$HOSTS_BR" up
  ip -n "$HOSTS_BR_NS" link set lo up
  # veth and HTB, tried once here so that a test skips before its first host
  why=$(ip -n "$HOSTS_BR_NS" link add "${HOSTS_PREFIX}t0" type veth peer name "${HOSTS_PREFIX}t1" 2>&1) ||
    hosts__skip "cannot create a veth pair: $why"
  why=$(tc -n "$HOSTS_BR_NS" qdisc add dev "${HOSTS_PREFIX}t0" root handle 1: htb 2>&1) ||
    hosts__skip "cannot add an HTB qdisc: $why"
  ip -n "$HOSTS_BR_NS" link del "${HOSTS_PREFIX}t0"
}

hosts__trap_cmd() { # trap -- 'cmd' EXIT
  HOSTS_PREV_EXIT=$3
}

# One HTB class at RATE as the root of dev's egress, in namespace ns.
hosts__shape() {
  local ns=$1 dev=$2 rate=$3
  tc -n "$ns" qdisc replace dev "$dev" root handle 1: htb default 1 &&
    tc -n "$ns" class add dev "$dev" parent 1: classid 1:1 htb rate "$rate" ceil "$rate" quantum 65536 burst 128k cburst 128k
}

hosts_add() {
  local name=$1 rate=${2:-} i ns hdev bdev
  [ -n "${HOSTS_PREFIX:-}" ] || hosts__die "hosts_add before hosts_init"
  [[ $name =~ ^[A-Za-z0-9_-]{1,32}$ ]] || hosts__die "host name '$name': letters, digits, - and _ (32 at most)"
  [ -z "${HOSTS_IDX[$name]:-}" ] || hosts__die "host '$name' exists"
  [ "$HOSTS_N" -lt 250 ] || hosts__die "250 hosts at most"
  i=$((HOSTS_N + 1))
  ns=$HOSTS_PREFIX-$name hdev=${HOSTS_PREFIX}e$i bdev=${HOSTS_PREFIX}b$i
  ip netns add "$ns" || hosts__die "cannot create namespace $ns"
  HOSTS_N=$i
  HOSTS_IDX[$name]=$i
  HOSTS_NAMES+=("$name")
  ip -n "$ns" link set lo up
  ip -n "$HOSTS_BR_NS" link add "$bdev" type veth peer name "$hdev" netns "$ns" ||
    hosts__die "cannot create the veth pair of $name"
  ip -n "$HOSTS_BR_NS" link set "$bdev" master "$HOSTS_BR"
  ip -n "$HOSTS_BR_NS" link set "$bdev" up
  ip -n "$ns" addr add "10.$HOSTS_NET.$i/24" dev "$hdev"
  ip -n "$ns" link set "$hdev" up
  if [ -n "$rate" ]; then
    hosts__shape "$ns" "$hdev" "$rate" && hosts__shape "$HOSTS_BR_NS" "$bdev" "$rate" ||
      hosts__die "cannot shape $name's link to '$rate'"
  fi
}

hosts_ns() { hosts__idx "$1" >/dev/null && echo "$HOSTS_PREFIX-$1"; }
hosts_dev() { echo "${HOSTS_PREFIX}e$(hosts__idx "$1")"; }
hosts_addr() { echo "10.$HOSTS_NET.$(hosts__idx "$1")"; }

hosts_exec() {
  local name=$1
  shift
  hosts__idx "$name" >/dev/null
  ip netns exec "$HOSTS_PREFIX-$name" "$@"
}

hosts_link() {
  local i
  i=$(hosts__idx "$1")
  case "${2:-}" in
  down | up) ip -n "$HOSTS_BR_NS" link set "${HOSTS_PREFIX}b$i" "$2" ;;
  *) hosts__die "hosts_link NAME down|up" ;;
  esac
}

# "1:30 123456" per HTB class of the host's egress (bytes sent)
hosts_tc_stats() {
  local i out
  i=$(hosts__idx "$1")
  out=$(tc -n "$HOSTS_PREFIX-$1" -s class show dev "${HOSTS_PREFIX}e$i")
  awk '$1 == "class" && $2 == "htb" { id = $3 }
       $1 == "Sent" && id != "" { print id, $2; id = "" }' <<<"$out"
}

hosts_cleanup() {
  local ns
  [ -n "${HOSTS_PREFIX:-}" ] || return 0
  # every namespace of the run, hosts added in subshells included
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
    case "$ns" in "$HOSTS_PREFIX"-*) hosts__ns_del "$ns" ;; esac
  done
  rm -f "$HOSTS_STATE_DIR/$HOSTS_PREFIX.pid" "$HOSTS_STATE_DIR/$HOSTS_PREFIX.env"
  HOSTS_N=0
  HOSTS_NAMES=()
  HOSTS_IDX=()
}

# Keep the run past this shell (no cleanup at exit) and write its state, so
# that later commands can find it (hosts_load). OWNER_PID: the process the
# bed belongs to from now on (`scripts/hosts clean` leaves the bed alone
# while it lives); 0 or none: nobody's (scripts/hosts up; down removes it).
hosts_keep() {
  trap - EXIT INT TERM
  echo "${1:-0}" >"$HOSTS_STATE_DIR/$HOSTS_PREFIX.pid"
  {
    echo "HOSTS_PREFIX=$HOSTS_PREFIX HOSTS_NET=$HOSTS_NET HOSTS_N=$HOSTS_N"
    echo "HOSTS_BR_NS=$HOSTS_BR_NS HOSTS_BR=$HOSTS_BR"
    echo "HOSTS_NAMES=(${HOSTS_NAMES[*]})"
  } >"$HOSTS_STATE_DIR/$HOSTS_PREFIX.env"
}

# Load a kept run by its prefix (no cleanup at exit).
hosts_load() {
  local f=$HOSTS_STATE_DIR/$1.env i
  [ -r "$f" ] || hosts__die "no bed $1 (no $f)"
  . "$f"
  declare -gA HOSTS_IDX=()
  for i in "${!HOSTS_NAMES[@]}"; do HOSTS_IDX[${HOSTS_NAMES[$i]}]=$((i + 1)); done
}

# Remove the namespaces of every run whose owner is gone; runs of live
# owners stay, and so do kept beds (scripts/hosts up, owner 0) unless the
# argument is --all. Prints what it removed.
hosts_clean_leftovers() {
  local ns run owner all=${1:-}
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
    [[ $ns =~ ^($HOSTS_PROJECT_PREFIX[0-9a-f]{6})- ]] || continue
    run=${BASH_REMATCH[1]}
    owner=$(cat "$HOSTS_STATE_DIR/$run.pid" 2>/dev/null || echo none)
    if [ "$owner" = 0 ] && [ "$all" != --all ]; then continue; fi
    if [ "$owner" != 0 ] && [ "$owner" != none ] && kill -0 "$owner" 2>/dev/null; then continue; fi
    hosts__ns_del "$ns"
    echo "removed namespace $ns"
    rm -f "$HOSTS_STATE_DIR/$run.pid" "$HOSTS_STATE_DIR/$run.env"
  done
}
