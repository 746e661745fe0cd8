#!/usr/bin/env bash
# Stop what deploy/local/start-cluster.sh started.   deploy/local/stop-cluster.sh [STATE_DIR]
set -uo pipefail
state=${1:-${TMPDIR:-/tmp}/streamem-cluster}
if [ -f "$state/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null; done <"$state/pids"
    sleep 1
    while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$state/pids"
    rm -f "$state/pids"
fi
