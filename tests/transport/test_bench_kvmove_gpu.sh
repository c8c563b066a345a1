#!/usr/bin/env bash
# sluice-bench kvmove-gpu as a test: on a GPU it must move a 4,096-token
# prompt's KV both ways (CUDA IPC lane and device staging), check the bytes
# on both sides and end with a RESULT line carrying both ratios and checked=1
# (no speed is asserted); without a GPU it must say why and end with
# `RESULT skipped=1 reason=no-gpu`, exit status 0, and the test is reported
# as skipped (exit 77).
#   test_bench_kvmove_gpu.sh BIN_DIR
set -uo pipefail
bin=$1
out=$("$bin/sluice-bench" kvmove-gpu --prompts=4096 --reps=3 --check-blocks=16 2>&1)
rc=$?
printf '%s\n' "$out"
last=$(printf '%s\n' "$out" | tail -n 1)
if [ $rc -ne 0 ]; then
  echo "test_bench_kvmove_gpu: exit status $rc" >&2
  exit 1
fi
case "$last" in
  "RESULT skipped=1 reason=no-gpu")
    echo "test_bench_kvmove_gpu: skipped: no GPU"
    exit 77 ;;
  RESULT\ ipc_ratio=*\ staged_ratio=*\ gpu=*\ checked=1)
    exit 0 ;;
  *)
    echo "test_bench_kvmove_gpu: unexpected last line: $last" >&2
    exit 1 ;;
esac
