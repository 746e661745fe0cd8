#!/usr/bin/env bash
# Start a dask scheduler and N worker processes on this machine, listening on 127.0.0.1 only.
#   deploy/local/start-cluster.sh [N_WORKERS] [PORT] [STATE_DIR]
# Prints the scheduler address; deploy/local/stop-cluster.sh STATE_DIR stops them.
set -euo pipefail
n_workers=${1:-2}
port=${2:-8786}
state=${3:-${TMPDIR:-/tmp}/streamem-cluster}
mkdir -p "$state"
address="tcp://127.0.0.1:${port}"
dask scheduler --host 127.0.0.1 --port "$port" --dashboard-address "127.0.0.1:0" \
    >"$state/scheduler.log" 2>&1 &
echo $! >"$state/pids"
for _ in $(seq 1 100); do  # wait until the scheduler accepts connections
    if grep -q "Scheduler at" "$state/scheduler.log" 2>/dev/null; then break; fi
    sleep 0.1
done
# glibc's mmap threshold back to 32 MiB for the workers (see streamem/engine/cluster.py): the E-step
# runs about twice as fast per chunk as under the nanny's default MALLOC_TRIM_THRESHOLD_.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-67108864}
dask worker "$address" --host 127.0.0.1 --nworkers "$n_workers" --nthreads 1 --memory-limit auto \
    --dashboard-address "127.0.0.1:0" >"$state/workers.log" 2>&1 &
echo $! >>"$state/pids"
echo "$address"
