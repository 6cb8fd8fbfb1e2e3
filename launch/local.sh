#!/usr/bin/env bash
# Start N processes on this machine as the N hosts of one JAX distributed job — the
# multi-host code path without a cluster (coordinator on 127.0.0.1, CPU collectives over gloo).
#
#   launch/local.sh N [--devices_per_process=D] -- python -m icl_jax.train --config=... --workdir=DIR
#
# Every process runs the same command with --multihost; each gets D fake CPU devices
# (default 1) through XLA_FLAGS. Output lines are prefixed with [process i]. SIGTERM and
# Ctrl-C reach every process as SIGTERM: they agree on a step, save it and exit (143). Exits with
# the first non-zero status of any process, in process order (75: a process lost its peer).
# Environment: ICL_JAX_PORT picks the coordinator port (default: a free one).
set -euo pipefail

usage() { sed -n '2,11p' "$0" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
num_processes=$1; shift
[[ "$num_processes" =~ ^[1-9][0-9]*$ ]] || { echo "error: N must be a positive integer, got '$num_processes'" >&2; exit 2; }
devices=1
if [[ "$1" == --devices_per_process=* ]]; then devices=${1#*=}; shift; fi
[[ "$1" == "--" ]] || usage
shift
port=${ICL_JAX_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

pids=()
forward() { for pid in "${pids[@]}"; do kill -s "$1" "$pid" 2>/dev/null || true; done; }
trap 'forward TERM' TERM
trap 'forward TERM' INT  # processes agree on a stop step only through SIGTERM (see training/loop.py)

for ((i = 0; i < num_processes; i++)); do
  (
    export ICL_JAX_COORDINATOR="127.0.0.1:$port" ICL_JAX_NUM_PROCESSES="$num_processes" ICL_JAX_PROCESS_ID="$i"
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
    export JAX_PLATFORMS=cpu
    exec "$@" --multihost > >(sed -u "s/^/[process $i] /") 2> >(sed -u "s/^/[process $i] /" >&2)
  ) &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  while true; do
    wait "$pid" && break || rc=$?
    # wait returns >128 when interrupted by a trapped signal: the process still runs.
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    [[ $status -eq 0 ]] && status=$rc
    break
  done
done
exit $status
