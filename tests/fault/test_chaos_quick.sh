#!/usr/bin/env bash
# sluice-bench chaos, short: 10 executor SIGKILLs and 10 SIGSTOPs under load,
# then 3 scheduler SIGKILLs with restarts from its journal, then 2 takeovers
# by a standby,
# through the real scheduler and sim executors; the history check must hold
# (lost=0 duplicated=0 wrong_client=0 backwards=0, no streamed token twice,
# no gap). Detection is not asserted (on a loaded host a stopped executor
# may be restarted before its loss is seen); the bench's full runs are in
# docs/BENCHMARKS.md. Usage: test_chaos_quick.sh BIN_DIR
set -euo pipefail
bin=$1
fail() { echo "FAIL: $*"; exit 1; }
for fault in kill stop; do
  set +e
  out=$(timeout 240 "$bin/sluice-bench" chaos --kills=10 --fault=$fault --rate=100 2>&1)
  st=$?
  set -e
  echo "$out"
  [ $st -eq 0 ] || fail "--fault=$fault: chaos exited $st"
  line=$(grep '^RESULT ' <<<"$out") || fail "--fault=$fault: no RESULT line"
  for kv in lost=0 duplicated=0 wrong_client=0 backwards=0 unaccepted_results=0 \
            stream_dup_tokens=0 stream_gaps=0 kills=10; do
    grep -q " $kv " <<<"$line " || fail "--fault=$fault: want $kv in: $line"
  done
done
# the scheduler SIGKILLed 3 times, each time started again on its journal.
# unaccepted_results is reported, not asserted, here: a scheduler killed
# after its journal batch was durable and before that batch's Accepted went
# out runs the job after its restart, and the Result comes with no Accepted
# before it (libsluice completes a job on its Result in any state). The
# bench fails on it only in the executor scenarios, where no scheduler died.
set +e
out=$(timeout 240 "$bin/sluice-bench" chaos --scheduler-kills=3 --kill-interval-ms=1000 --rate=100 2>&1)
st=$?
set -e
echo "$out"
[ $st -eq 0 ] || fail "--scheduler-kills: chaos exited $st"
line=$(grep '^RESULT ' <<<"$out") || fail "--scheduler-kills: no RESULT line"
for kv in scenario=scheduler-kills kills=3 lost=0 duplicated=0 wrong_client=0 backwards=0 \
          stream_gaps=0; do
  grep -q " $kv " <<<"$line " || fail "--scheduler-kills: want $kv in: $line"
done
# a standby taking over from a SIGKILLed leader twice (etcd lease, same
# journal and endpoints), when etcd-server is installed
if command -v etcd >/dev/null; then
  set +e
  out=$(timeout 240 "$bin/sluice-bench" chaos --takeovers=2 --kill-interval-ms=1500 --rate=100 2>&1)
  st=$?
  set -e
  echo "$out"
  [ $st -eq 0 ] || fail "--takeovers: chaos exited $st"
  line=$(grep '^RESULT ' <<<"$out") || fail "--takeovers: no RESULT line"
  for kv in scenario=takeovers takeovers=2 taken_over=2 lost=0 duplicated=0 wrong_client=0 \
            backwards=0 stream_gaps=0; do
    grep -q " $kv " <<<"$line " || fail "--takeovers: want $kv in: $line"
  done
else
  echo "takeovers skipped: etcd-server is not installed (scripts/setup)"
fi
echo "PASS"
