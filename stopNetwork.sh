#!/usr/bin/env bash
# Stop what ./startNetwork.sh and ./scripts/startClient.sh --background started:
# ./stopNetwork.sh
#
# Only the processes listed in run/client.pid and run/network.pids are
# signalled, and each only if it still runs client/index.py or node/index.py
# (a pid may have been reused since). The client goes first, so that it does
# not retry nodes that are going away. Each gets SIGTERM and up to 10 s to
# shut down, then SIGKILL. Running it when nothing is running is harmless.
set -euo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "usage: $0" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")"

grace_s=10

# True when PID is alive and its command line holds SCRIPT (node/index.py or
# client/index.py). A zombie has an empty command line, so it counts as stopped.
runs() {
    local cmdline
    cmdline=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]]
}

# stop SCRIPT: SIGTERM the pids in the array `targets` (labelled by
# the associative array `labels`), wait up to grace_s, then SIGKILL.
stop() {
    local script=$1 pid list shown=()
    for pid in "${targets[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        shown+=("${labels[$pid]} (pid $pid)")
    done
    printf -v list '%s, ' "${shown[@]}"
    echo "sent SIGTERM to ${list%, }"
    local deadline=$((SECONDS + grace_s)) left
    while :; do
        left=()
        for pid in "${targets[@]}"; do
            runs "$pid" "$script" && left+=("$pid")
        done
        targets=("${left[@]+"${left[@]}"}")
        [[ ${#targets[@]} -gt 0 && $SECONDS -lt $deadline ]] || break
        sleep 0.1
    done
    for pid in "${targets[@]+"${targets[@]}"}"; do
        echo "${labels[$pid]} (pid $pid) still running after ${grace_s} s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

stopped_any=false
declare -A labels=()

client_pid_file=run/client.pid
if [[ -f $client_pid_file ]]; then
    read -r pid _ <"$client_pid_file" || true
    if [[ -n "${pid:-}" ]] && runs "$pid" client/index.py; then
        targets=("$pid")
        labels[$pid]="client"
        stop client/index.py
        echo "client stopped"
        stopped_any=true
    else
        echo "the client (pid ${pid:-?}) was not running"
    fi
    rm -f "$client_pid_file"
fi

pid_file=run/network.pids
if [[ -f $pid_file ]]; then
    targets=()
    while read -r pid id _; do
        [[ -n "${pid:-}" ]] || continue
        if runs "$pid" node/index.py; then
            targets+=("$pid")
            labels[$pid]="node $id"
        else
            echo "node ${id:-?} (pid $pid) was not running"
        fi
    done <"$pid_file"
    if [[ ${#targets[@]} -gt 0 ]]; then
        stop node/index.py
        echo "network stopped"
        stopped_any=true
    fi
    rm -f "$pid_file"
fi

$stopped_any || echo "nothing to stop (no running client in $client_pid_file, no running node in $pid_file)"
