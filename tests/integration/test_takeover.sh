#!/usr/bin/env bash
# A standby scheduler takes over through the etcd lease (a real etcd this
# test starts): the leader serves and the standby does not even bind its
# ports; the leader is paused with SIGSTOP; the standby leads within 2 s
# and serves a job through an executor; the old leader, resumed, finds its
# lease lost, serves nothing and exits 3. Then an executor and a client given
# both schedulers' endpoints follow the leader when the new one is SIGKILLed
# and the first, restarted as the standby, takes over. Skipped (77) without
# etcd-server.
# Usage: test_takeover.sh BIN_DIR
set -euo pipefail
bin=$1
. "$(dirname "$0")/../support/daemons.sh"
command -v etcd >/dev/null || { echo "skipped: etcd-server is not installed (scripts/setup)"; exit 77; }
sl_daemons_init sluice-takeover

# two free loopback ports for etcd
read -r cport pport < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
etcd_url=http://127.0.0.1:$cport
etcd --name t --data-dir "$run/etcd" --listen-client-urls "$etcd_url" \
  --advertise-client-urls "$etcd_url" --listen-peer-urls "http://127.0.0.1:$pport" \
  --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "t=http://127.0.0.1:$pport" --heartbeat-interval 50 --election-timeout 250 \
  >"$run/etcd.log" 2>&1 &
pids+=($!)

a_c="ipc://$run/a-c" a_e="ipc://$run/a-e" b_c="ipc://$run/b-c" b_e="ipc://$run/b-e"
lease=(--etcd="$etcd_url" --leader-key=/sluice/test --lease-ttl-ms=1000)

status_ok() { timeout 5 "$bin/sluice" status --endpoint="$1" --wait-timeout-ms=300 >/dev/null 2>&1; }

# A starts first and leads (etcd may take a moment to come up: A retries)
"$bin/sluice-scheduler" --client-endpoint="$a_c" --executor-endpoint="$a_e" "${lease[@]}" \
  --log-level=info 2>"$run/a.log" &
a=$!
pids+=($a)
for _ in $(seq 100); do grep -q "leading: the lease is ours" "$run/a.log" && break; sleep 0.1; done
grep -q "leading: the lease is ours" "$run/a.log" || { cat "$run/a.log" "$run/etcd.log"; fail "A never led"; }
status_ok "$a_c" || fail "the leader does not answer a status request"

"$bin/sluice-scheduler" --client-endpoint="$b_c" --executor-endpoint="$b_e" "${lease[@]}" \
  --log-level=info 2>"$run/b.log" &
b=$!
pids+=($b)
sleep 1
grep -q "standby: waiting for the leader lease" "$run/b.log" || fail "B is not a standby: $(cat "$run/b.log")"
if grep -q "leading" "$run/b.log"; then fail "B leads while A holds the lease"; fi
if status_ok "$b_c"; then fail "the standby answered on its client port"; fi

# pause the leader: the standby takes over within 2 s
kill -STOP "$a"
t0=$(date +%s%N)
for _ in $(seq 100); do grep -q "leading: the lease is ours" "$run/b.log" && break; sleep 0.02; done
t1=$(date +%s%N)
took_ms=$(((t1 - t0) / 1000000))
grep -q "leading: the lease is ours" "$run/b.log" || fail "B did not take over: $(cat "$run/b.log")"
echo "takeover after SIGSTOP of the leader: $took_ms ms"
[ "$took_ms" -le 2000 ] || fail "takeover took $took_ms ms (over 2000)"

# the new leader serves a job through an executor
"$bin/sluice-executor" --scheduler="$b_e" --name=x1 --sim-speed=100 --log-level=warn \
  2>"$run/x1.log" &
pids+=($!)
cep=$b_c sl_wait_executors "$bin" x1
out=$(timeout 20 "$bin/sluice" submit --endpoint="$b_c" --max-new-tokens=4) ||
  fail "a job on the new leader failed: $out"

# the old leader resumed: lease lost, exits 3 without serving
kill -CONT "$a"
set +e
for _ in $(seq 100); do kill -0 "$a" 2>/dev/null || break; sleep 0.05; done
wait "$a"
st=$?
set -e
[ "$st" -eq 3 ] || fail "the old leader exited $st (want 3: lease lost): $(tail -5 "$run/a.log")"
grep -q "the leader lease is lost" "$run/a.log" || fail "the old leader did not say it lost the lease"

# Phase 2: executors and clients given both schedulers follow the leader.
# A starts again as the standby; x2 and the client know both endpoints.
"$bin/sluice-scheduler" --client-endpoint="$a_c" --executor-endpoint="$a_e" "${lease[@]}" \
  --log-level=info 2>"$run/a2.log" &
a=$!
pids+=($a)
for _ in $(seq 100); do grep -q "standby: waiting" "$run/a2.log" && break; sleep 0.05; done
"$bin/sluice-executor" --scheduler="$b_e,$a_e" --name=x2 --sim-speed=100 --log-level=info \
  2>"$run/x2.log" &
pids+=($!)
cep=$b_c sl_wait_executors "$bin" x2
out=$(timeout 20 "$bin/sluice" submit --endpoint="$b_c,$a_c" --max-new-tokens=4) ||
  fail "a job through the endpoint list (B leading) failed: $out"

# B dies (SIGKILL): A takes over; x2 registers with A by itself; the
# client's list reaches A
kill -KILL "$b"
t0=$(date +%s%N)
for _ in $(seq 150); do grep -q "leading: the lease is ours" "$run/a2.log" && break; sleep 0.02; done
grep -q "leading: the lease is ours" "$run/a2.log" || fail "A did not take over from B: $(cat "$run/a2.log")"
t1=$(date +%s%N)
took2_ms=$(((t1 - t0) / 1000000))
echo "takeover after SIGKILL of the leader: $took2_ms ms"
[ "$took2_ms" -le 2000 ] || fail "the second takeover took $took2_ms ms (over 2000)"
cep=$a_c sl_wait_executors "$bin" x2
out=$(timeout 20 "$bin/sluice" submit --endpoint="$b_c,$a_c" --max-new-tokens=4) ||
  fail "a job through the endpoint list (A leading) failed: $out"
echo "PASS: takeovers in $took_ms ms (SIGSTOP) and $took2_ms ms (SIGKILL); the resumed leader stopped (exit 3); an executor and a client given both endpoints followed the leader"
