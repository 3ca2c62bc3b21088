#!/usr/bin/env bash
# Stop the nodes that ./startNetwork.sh started: ./stopNetwork.sh
#
# Only the processes listed in run/network.pids are signalled, and each only
# if it still runs node/index.py (a pid may have been reused since). They get
# SIGTERM and up to 10 s to shut down, then SIGKILL. Running it when nothing
# is running is harmless.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

pid_file=run/network.pids
grace_s=10

# True when PID is alive and still runs a pbft-ci node. A zombie has an empty
# command line, so it counts as stopped.
is_node() {
    local cmdline
    cmdline=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
    [[ "$cmdline" == *node/index.py* ]]
}

if [[ ! -f $pid_file ]]; then
    echo "no network started by ./startNetwork.sh is running (no $pid_file)"
    exit 0
fi

running=()
declare -A ids=()
while read -r pid id _; do
    [[ -n "${pid:-}" ]] || continue
    if is_node "$pid"; then
        running+=("$pid")
        ids[$pid]=$id
    else
        echo "node ${id:-?} (pid $pid) was not running"
    fi
done <"$pid_file"

if [[ ${#running[@]} -eq 0 ]]; then
    rm -f "$pid_file"
    echo "nothing to stop"
    exit 0
fi

for pid in "${running[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
done
echo "sent SIGTERM to nodes $(for pid in "${running[@]}"; do printf '%s ' "${ids[$pid]}"; done)"

deadline=$((SECONDS + grace_s))
while :; do
    left=()
    for pid in "${running[@]}"; do
        is_node "$pid" && left+=("$pid")
    done
    running=("${left[@]+"${left[@]}"}")
    [[ ${#running[@]} -gt 0 && $SECONDS -lt $deadline ]] || break
    sleep 0.1
done

for pid in "${running[@]+"${running[@]}"}"; do
    echo "node ${ids[$pid]} (pid $pid) still running after ${grace_s} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
done
rm -f "$pid_file"
echo "network stopped"
