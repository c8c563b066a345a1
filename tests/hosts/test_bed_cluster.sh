#!/usr/bin/env bash
# A cluster in the multi-host bed with background traffic on real links: a
# scheduler host, four executor hosts (sim backend, data plane on UCX over
# TCP, log and trace shipping on), a client host replaying the Mooncake
# conversation trace through loadgen, every link shaped to 1 Gbit/s with
# deploy/tc/sluice-tc.sh as each host's egress tree (so DSCP-marked traffic
# lands in its class and tc counts it). While the trace runs, a fifth
# executor joins and pulls its weights (a 96 MiB file) from the executor
# that holds them, in the background class.
#
# Checked: the joiner pulled the weights from the peer (its log), at a rate
# at or under 0.20 of the link by the transport's own figures (bytes over
# the pull's time, both from its log line); on every host's link, in every
# one-second window of tc's per-class counters sampled during the run, the
# background class carried at most 0.20 of the link's rate, and the
# holder's link carried the pull in the background class (its counter grew
# by at least the file's size); the collector wrote each executor's log and
# traces; the load generator finished with jobs answered.
#
# Usage: test_bed_cluster.sh BIN_DIR. Root only; exits 77 without the bed.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/hosts/hosts.sh"
fail() {
  echo "test_bed_cluster: $*" >&2
  for f in "$run"/*.log; do
    echo "--- $f" >&2
    tail -n 15 "$f" >&2 || true
  done
  [ -z "${KEEP_BED_RUN:-}" ] || cp -r "$run" /tmp/bed-cluster-last
  exit 1
}

rate_mbit=1000
link_Bps=$((rate_mbit * 1000000 / 8))
# what the link carries of TCP payload (1448 of every 1514 bytes on the
# wire, 95.6%): the capacity the executors' background budget is a share
# of, so that their background, headers included, stays under its share of
# the wire that tc counts
payload_mbps=$((link_Bps * 1448 / 1514 / 1000000))
hosts_init
run=$(mktemp -d /tmp/sluice-bed-cluster-XXXXXX)
HOSTS_PREV_EXIT="rm -rf '$run'"
# keys: every program (all hosts see this folder) finds its pair by its role
"$bin/sluice" keygen --name=server "$run/keys" >/dev/null 2>&1
echo "$("$bin/sluice" keygen --name=client "$run/keys" 2>/dev/null) bed" >"$run/keys/clients.allow"
echo "$("$bin/sluice" keygen --name=executor "$run/keys" 2>/dev/null) bed" \
  >"$run/keys/executors.allow"
export SLUICE_KEY_DIR=$run/keys
hosts_add sched "${rate_mbit}mbit"
hosts_add client "${rate_mbit}mbit"
execs="e1 e2 e3 e4 e5"
for h in $execs; do hosts_add "$h" "${rate_mbit}mbit"; done
for h in sched client $execs; do
  hosts_exec "$h" "$root/deploy/tc/sluice-tc.sh" apply "$(hosts_dev "$h")" "${rate_mbit}mbit" >/dev/null
done

sa=$(hosts_addr sched)
cep=tcp://$sa:5555 eep=tcp://$sa:5556
mkdir -p "$run/collect"
# the weights: a file of random bytes (the sim backend computes nothing
# from them; it loads, serves and pulls them like the ref backend)
head -c $((96 << 20)) /dev/urandom >"$run/model.bin"
wbytes=$((96 << 20))

# liveness as across a datacenter's links (2 s), not the 300 ms a lone
# machine allows: seven hosts' daemons share two CPUs here
hosts_exec sched "$bin/sluice-scheduler" --client-endpoint="tcp://*:5555" \
  --executor-endpoint="tcp://*:5556" --collect-dir="$run/collect" --log-level=info \
  --heartbeat-ms=250 --missed-heartbeats=8 \
  2>"$run/scheduler.log" &
exec_args=(--scheduler="$eep" --backend=sim --sim-speed=4 --data-plane=on
  --data-plane-tls=tcp --log-ship=on --bg-link-mbps=$payload_mbps --bg-share=0.2
  --log-level=info)
start_exec() { # HOST [extra args]
  local h=$1
  shift
  hosts_exec "$h" env UCX_NET_DEVICES="$(hosts_dev "$h")" "$bin/sluice-executor" \
    --name="exec-$h" "${exec_args[@]}" "$@" 2>"$run/exec-$h.log" &
}
# e1 holds the weights and serves them; e2..e4 run without
start_exec e1 --weights="$run/model.bin" --weights-from=file
for h in e2 e3 e4; do start_exec "$h"; done

joined() {
  hosts_exec client "$bin/sluice" status --endpoint="$cep" 2>/dev/null |
    grep -c '^ *exec-' || true
}
n=0
for _ in $(seq 300); do
  n=$(joined)
  [ "$n" -ge 4 ] && break
  sleep 0.1
done
[ "$n" -ge 4 ] || fail "only $n of 4 executors joined"

# tc's per-class byte counters of every host's egress, twice a second,
# each stamped with the middle of the clock readings around its read (on a
# loaded machine starting tc takes a while, and a stamp taken only before
# it made one-second windows look shorter than the bytes they held)
(
  while :; do
    for h in sched client $execs; do
      t0=$(date +%s.%N)
      stats=$(hosts_tc_stats "$h" 2>/dev/null)
      t1=$(date +%s.%N)
      [ -n "$stats" ] && awk -v t0="$t0" -v t1="$t1" -v h="$h" '{ printf "%.6f %s %s %s\n", (t0 + t1) / 2, h, $1, $2 }' <<<"$stats"
    done
    sleep 0.5
  done
) >"$run/tc.samples" &
sampler=$!

duration=24
hosts_exec client "$bin/sluice-bench" loadgen --endpoint="$cep" --trace=mooncake-conversation \
  --trace-dir="$root/data/traces" --duration-s=$((duration * 4)) --speedup=4 --busy=drop \
  --slo-speed=4 --progress-ms=5000 --label=bed >"$run/loadgen.out" 2>&1 &
lg=$!
sleep 5
# the joiner: asks the scheduler who holds model.bin and pulls it from e1
start_exec e5 --weights="$run/model.bin" --weights-from=peer
wait "$lg" || fail "the load generator failed: $(tail -n 5 "$run/loadgen.out")"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
tail -n 8 "$run/loadgen.out"

# the pull, by the transport's figures
line=$(grep -m1 "weights: pulled" "$run/exec-e5.log" || true)
[ -n "$line" ] || fail "the joiner did not pull its weights from a peer"
echo "joiner: ${line#*weights: }"
pulled=$(sed -n 's/.*pulled \([0-9]*\) bytes.*/\1/p' <<<"$line")
us=$(sed -n 's/.* in \([0-9]*\) us.*/\1/p' <<<"$line")
[ "$pulled" = "$wbytes" ] || fail "pulled $pulled bytes, the file has $wbytes"
share=$(awk -v b="$pulled" -v us="$us" -v l="$link_Bps" 'BEGIN { printf "%.3f", b / (us / 1e6) / l }')
echo "joiner: the pull ran at $share of the link (transport's bytes over the pull's time)"
awk -v s="$share" 'BEGIN { exit !(s <= 0.20) }' || fail "the pull took $share of the link"

# tc: per host, per one-second window, background bytes over the link's rate
report=$(awk -v l="$link_Bps" '
  { t = $1; h = $2; c = $3; b = $4
    if (c == "1:30") { bg[h, ++n[h]] = b; ts[h, n[h]] = t }
    if (c == "1:20") { cr[h, n[h] + 0] = b } }
  END {
    worst = 0
    for (key in n) {
      h = key; m = n[h]; hmax = 0
      for (i = 1; i <= m; i++)
        for (j = i + 1; j <= m; j++)
          if (ts[h, j] - ts[h, i] >= 1.0) {
            s = (bg[h, j] - bg[h, i]) / ((ts[h, j] - ts[h, i]) * l)
            if (s > hmax) hmax = s
            break
          }
      printf "%s background_max_1s=%.3f background_bytes=%d\n", h, hmax, bg[h, m] - bg[h, 1]
      if (hmax > worst) worst = hmax
    }
    printf "worst %.3f\n", worst
  }' "$run/tc.samples")
echo "$report" | sort
worst=$(awk '$1 == "worst" { print $2 }' <<<"$report")
awk -v w="$worst" 'BEGIN { exit !(w <= 0.20) }' || fail "a link carried $worst of its rate in background"
e1bg=$(awk '$1 == "e1" { sub("background_bytes=", "", $3); print $3 }' <<<"$report")
[ "${e1bg:-0}" -ge "$wbytes" ] || fail "the holder's link carried ${e1bg:-0} background bytes, under the pull's $wbytes"

# the collector at the scheduler
for h in e1 e2 e3 e4; do
  [ -s "$run/collect/exec-$h.log" ] || fail "no shipped log of exec-$h"
  [ -s "$run/collect/exec-$h.trace" ] || fail "no shipped traces of exec-$h"
done
done_jobs=$(sed -n 's/^RESULT .* done=\([0-9]*\).*/\1/p' "$run/loadgen.out" | tail -n 1)
[ "${done_jobs:-0}" -gt 0 ] || fail "no job answered: $(grep '^RESULT' "$run/loadgen.out")"
echo "test_bed_cluster: ok (worst background share of a link in a second: $worst)"
