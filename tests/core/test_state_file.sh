#!/usr/bin/env bash
# The scheduler's --state-file, through the real daemon: the core saves its
# learned state into a buffer and the daemon writes it to the file at a
# clean exit, reads it back at the next start and hands it to the core; a
# file that is not a state stops the scheduler with the reason (exit 1).
# The same knob as SLUICE_STATE_FILE. Usage: test_state_file.sh BIN_DIR
set -euo pipefail
bin=$1
. "$(dirname "$0")/../support/daemons.sh"
sl_daemons_init sluice-state
fail() { echo "FAIL: $*"; tail -20 "$run"/*.log 2>/dev/null; exit 1; }
state=$run/scheduler.state

start_scheduler() { # LOG [extra flags]: the scheduler in the background, pid in $sched
  local log=$1
  shift
  "$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" --policy=learned \
    --log-level=info "$@" 2>"$run/$log" &
  sched=$!
  pids+=($sched)
}
stop_scheduler() { # SIGTERM, then wait for the clean exit that writes the state
  kill -TERM "$sched"
  wait "$sched" || fail "the scheduler exited with $? at SIGTERM"
}

# 1. Learn from a few jobs, then stop: the state file is written.
start_scheduler sched1.log --state-file="$state"
"$bin/sluice-executor" --scheduler="$eep" --name=e1 --sim-speed=50 --log-level=error \
  2>"$run/e1.log" &
pids+=($!)
sl_wait_executors "$bin" e1
for i in 1 2 3 4 5; do
  "$bin/sluice" submit --endpoint="$cep" --prompt-tokens=$((200 * i)) --max-new-tokens=4 \
    >"$run/submit$i.out" 2>&1 || fail "job $i failed: $(cat "$run/submit$i.out")"
done
stop_scheduler
[ -s "$state" ] || fail "no state file written at exit"
[ ! -e "$state.tmp" ] || fail "the temporary file was left behind"
head -1 "$state" | grep -qx 'sluice-scheduler-state 1' || fail "bad header: $(head -1 "$state")"
scored=$(sed -n 's/^scored \([0-9]*\) .*/\1/p' "$state")
[ -n "$scored" ] && [ "$scored" -ge 5 ] || fail "the state holds $scored scored jobs, want >= 5"

# 2. The next start reads it (given as SLUICE_STATE_FILE this time) and
#    writes back what it read plus nothing new.
cp "$state" "$run/first.state"
SLUICE_STATE_FILE=$state start_scheduler sched2.log
for _ in $(seq 100); do
  grep -q "learned state restored from $state" "$run/sched2.log" && break
  sleep 0.1
done
grep -q "learned state restored from $state" "$run/sched2.log" ||
  fail "the state was not restored: $(cat "$run/sched2.log")"
stop_scheduler
cmp -s "$state" "$run/first.state" || fail "a restart without jobs changed the learned state"

# 3. A file that is not a state: the scheduler refuses to start, says why.
echo "not a state" >"$state"
set +e
"$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" \
  --state-file="$state" 2>"$run/sched3.log"
st=$?
set -e
[ $st -eq 1 ] || fail "a bad state file gave exit status $st, want 1"
grep -q "learned state: not a scheduler state (bad header)" "$run/sched3.log" ||
  fail "no reason logged: $(cat "$run/sched3.log")"
grep -q "state file $state is unusable" "$run/sched3.log" || fail "no file named: $(cat "$run/sched3.log")"

# 4. A missing file is a first start.
rm -f "$state"
start_scheduler sched4.log --state-file="$state"
for _ in $(seq 100); do
  grep -q "scheduler up" "$run/sched4.log" && break
  sleep 0.1
done
kill -0 "$sched" 2>/dev/null || fail "no start without a state file: $(cat "$run/sched4.log")"
grep -q "scheduler up" "$run/sched4.log" || fail "the scheduler did not come up: $(cat "$run/sched4.log")"
stop_scheduler
[ -s "$state" ] || fail "no state file written after a first start"
echo "PASS: state file written, restored, refused when bad"
