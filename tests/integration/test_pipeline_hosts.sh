#!/usr/bin/env bash
# Pipeline stages on two hosts of the multi-host bed (tests/hosts/hosts.sh):
# test_pipeline with its first stage in host s0 and its later stages in host
# s1, each host's link shaped to 1 Gbit/s, so every step's activations and
# tokens cross the bridge over TCP (UCX pinned to the host's interface).
# The scheduler, the whole-model executor and the client stay on this host
# (their ipc endpoints are files, which every namespace sees).
# Usage: test_pipeline_hosts.sh BIN_DIR. Exit 77 (skipped) without the bed
# library or where it cannot make hosts (not root, no namespaces).
set -euo pipefail
bin=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
lib=${SLUICE_HOSTS_LIB:-$here/../hosts/hosts.sh}
if [ ! -f "$lib" ]; then
    echo "skipped: the multi-host bed library ($lib) is not there"
    exit 77
fi
# shellcheck source=/dev/null
. "$lib"
hosts_init # exits 77, saying why, where hosts cannot be made
hosts_add s0 1gbit
hosts_add s1 1gbit
work=$(mktemp -d /tmp/sluice-pipe-hosts.XXXXXX)
for h in s0 s1; do
    mkdir -p "$work/$h"
    cat >"$work/$h/sluice-executor" <<WRAP
#!/bin/sh
exec ip netns exec $(hosts_ns "$h") env UCX_NET_DEVICES=$(hosts_dev "$h") "$bin/sluice-executor" "\$@"
WRAP
    chmod +x "$work/$h/sluice-executor"
done
echo "stage 0 in host s0 ($(hosts_addr s0)), later stages in host s1 ($(hosts_addr s1))"
rc=0
SLUICE_BIN=$bin SLUICE_PIPE_BIN_STAGE0=$work/s0 SLUICE_PIPE_BIN_STAGE1=$work/s1 \
    "$bin/test_pipeline" || rc=$?
# the bytes each host sent on its shaped link (the activations went there)
for h in s0 s1; do
    echo "host $h egress classes (class bytes):"
    hosts_tc_stats "$h" || true
done
rm -rf "$work"
exit "$rc" # the bed's trap removes the hosts
