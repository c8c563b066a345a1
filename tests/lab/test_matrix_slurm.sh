#!/usr/bin/env bash
# sluice-sim matrix --launcher slurm through a real, private Slurm: MUNGE,
# slurmctld and slurmd started from a generated slurm.conf in a temporary
# folder (non-default ports, state and spool there, this host's CPUs and
# memory as slurmd -C reports them), a --quick matrix submitted as a job
# array, its table, matrix.csv and RESULT line checked. The daemons are
# killed at exit. Exit 77 (skipped) where Slurm or MUNGE is not installed
# (scripts/setup installs them).
#   test_matrix_slurm.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
export PATH=$PATH:/usr/sbin:/sbin
for p in slurmctld slurmd munged mungekey sbatch sinfo; do
  command -v "$p" >/dev/null || { echo "test_matrix_slurm: SKIP: $p is not installed"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "test_matrix_slurm: SKIP: needs root (SlurmUser=root)"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_matrix_slurm-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "test_matrix_slurm: FAIL: $*" >&2
  for f in "$tmp"/*.log "$tmp"/munge/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool"
chmod 700 "$tmp/munge"
mungekey --create --keyfile="$tmp/munge/munge.key" >/dev/null 2>&1 \
  || { dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 2>/dev/null; }
chmod 400 "$tmp/munge/munge.key"
sock=$tmp/munge/munge.socket
munged --foreground --force --key-file="$tmp/munge/munge.key" --socket="$sock" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
  --seed-file="$tmp/munge/munged.seed" >"$tmp/munge/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "munged did not start"

# this host as slurmd sees it (a node whose CPUs or memory differ is drained)
node=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/')
ctld_port=$(free_port); slurmd_port=$(free_port)
conf=$tmp/slurm.conf
cat >"$conf" <<CONF
ClusterName=sluicetest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
$node
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf
slurmctld -D -i -f "$conf" >"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost -f "$conf" >"$tmp/slurmd.out" 2>&1 &
pids+=($!)
state=
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || fail "the node is not idle after 30 s (state '$state')"

out=$tmp/mx
log=$tmp/matrix.txt
rc=0
timeout 150 "$build/bin/sluice-sim" matrix --quick --launcher slurm --jobs 2 --plot false \
  --out "$out" >"$log" 2>&1 || rc=$?
cat "$log"
[ $rc -eq 0 ] || fail "sluice-sim matrix --launcher slurm exited $rc"
grep -q '^submitting: sbatch --wait --array=0-7%2 ' "$log" || fail "no array of 8 cells submitted"
grep -q 'best_baseline' "$log" || fail "no table"
grep -q '^RESULT .* cells=8 failed=0 ' "$log" || fail "the RESULT line is not 8 cells, none failed"
[ "$(wc -l <"$out/matrix.csv")" -eq 9 ] || fail "matrix.csv is not a header and 8 rows"
[ "$(grep -c ',ok,' "$out/matrix.csv")" -eq 8 ] || fail "a cell is not ok in matrix.csv"
ls "$out"/cells/slurm-*.log >/dev/null 2>&1 || fail "no Slurm task log in $out/cells"
echo "test_matrix_slurm: PASS"
