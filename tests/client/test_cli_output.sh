#!/usr/bin/env bash
# What `sluice` prints, through a real scheduler and sim executors: a
# streamed job shows at most --print-tokens tokens; a job that produced no
# token shows no time to first token; `sluice status --help` lists only the
# options a status call uses; a client key on the executor port is refused. Usage: test_cli_output.sh BIN_DIR
set -euo pipefail
bin=$1
. "$(dirname "$0")/../support/daemons.sh"
sl_daemons_init sluice-cli-out

# status --help: its own options, none of submit's retry and batching knobs
help=$("$bin/sluice" status --help)
grep -q -- "--endpoint" <<<"$help" || fail "status --help lacks --endpoint"
for o in --retries --submit-batch --backoff-base-ms --max-inflight; do
  if grep -q -- "$o" <<<"$help"; then fail "status --help lists $o"; fi
done

"$bin/sluice-scheduler" --client-endpoint="$cep" --executor-endpoint="$eep" --quarantine-failures=0 \
  --log-level=error 2>"$run/sched.log" &
pids+=($!)
"$bin/sluice-executor" --scheduler="$eep" --name=good --sim-speed=100 --log-level=error \
  2>"$run/good.log" &
pids+=($!)
sl_wait_executors "$bin" good

# a client on the executor port: its key is no executor's, so the handshake
# is refused and counted, and the client gives up (the plain-text answer
# naming the client endpoint is test_conn's test_wrong_port)
set +e
out=$(timeout 10 "$bin/sluice" submit --endpoint="$eep" --max-new-tokens=4 --ack-timeout-ms=300 \
  --ack-retries=0 2>&1)
st=$?
set -e
[ $st -eq 1 ] || fail "submit on the executor port exited $st (want 1): $out"
status=$("$bin/sluice" status --endpoint="$cep")
grep -Eq "auth_denied_wrong_role +[1-9]" <<<"$status" ||
  fail "a client key on the executor port was not refused as the wrong role: $status"

# streaming honours --print-tokens: 3 of 10 tokens, then "..."
out=$("$bin/sluice" submit --endpoint="$cep" --stream --print-tokens=3 --max-new-tokens=10)
line=$(grep '^stream:' <<<"$out") || fail "no stream line: $out"
[ "$(wc -w <<<"${line#stream:}")" -eq 4 ] || fail "stream line '$line' is not 3 tokens and ..."
grep -q '\.\.\.$' <<<"$line" || fail "stream line '$line' does not end with ..."

# a job that fails with no token: its time to first token is '-', not 0
kill -TERM "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
"$bin/sluice-executor" --scheduler="$eep" --name=bad --sim-fail-share=1 --log-level=error \
  2>"$run/bad.log" &
pids+=($!)
sl_wait_executors "$bin" bad
set +e
out=$("$bin/sluice" submit --endpoint="$cep" --max-new-tokens=10 --retries=0)
st=$?
set -e
[ $st -ne 0 ] || fail "a failed job exited 0: $out"
grep -q 'ttft -, end' <<<"$out" || fail "a failed job shows a ttft: $out"
grep -q 'first token after -' <<<"$out" || fail "a failed job shows a first token time: $out"
echo "1 passed, 0 failed"
