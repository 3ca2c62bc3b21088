#!/usr/bin/env bash
# Stop what ./startNetwork.sh and ./scripts/startClient.sh --background started:
#
#   ./stopNetwork.sh                  the client, then every node
#   ./stopNetwork.sh --client         only the client
#   ./stopNetwork.sh --node ID ...    only these nodes (--node is repeatable)
#
# --client and --node may be combined. Only the processes listed in
# run/client.pid and run/network.pids (or in PBFT_CI_RUN_DIR, the folder
# ./startNetwork.sh was given) are signalled, and each only if it still
# runs client/index.py or node/index.py (a pid may have been reused since).
# The client goes first, so that it does not retry nodes that are going away.
# Each gets SIGTERM and up to 10 s to shut down, then SIGKILL. A node found
# dead (killed with kill -9, say) or SIGKILLed could not remove its build
# containers and volumes: those labelled with its data directory are removed,
# unless another process listens on its port. Running it when nothing is
# running is harmless. To restart one node, stop it with --node ID
# and run ./startNetwork.sh again: it starts only the nodes that are not
# running. To restart the client, stop it with --client and run
# ./scripts/startClient.sh again.
set -euo pipefail

usage() {
    echo "usage: $0 [--client] [--node ID]...  (--help says more)" >&2
    exit 2
}

# runs, chosen, parse_choice and the pid files (relative to the repository root): shared
# with scripts/reload.sh.
source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib/processes.sh"
parse_choice "$@"
# Without a choice, everything goes.
stop_client=$asked_client stop_nodes=true
if ! $asked_client && [[ ${#chosen_nodes[@]} -eq 0 ]]; then
    stop_client=true
elif [[ ${#chosen_nodes[@]} -eq 0 ]]; then
    stop_nodes=false
fi
cd "$(dirname "${BASH_SOURCE[0]}")"

grace_s=10

# stop SCRIPT: SIGTERM the pids in the array `targets` (labelled by
# the associative array `labels`), wait up to grace_s, then SIGKILL. Leaves in
# `targets` the pids that had to be killed.
stop() {
    local script=$1 pid list shown=() signalled=("${targets[@]}")
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
    # A command line reads empty a little before the kernel has closed the process's files,
    # its port among them: wait for that too (briefly: the pid may be reused), so that a node
    # or client started right after finds its port free.
    local give_up=$((SECONDS + 5))
    for pid in "${signalled[@]}"; do
        until gone "$pid" || [[ $SECONDS -ge $give_up ]]; do
            sleep 0.05
        done
    done
}

# True once PID has exited: no such process, or a zombie. Its command line reads
# empty a little earlier, while the kernel still closes its files (its port among them).
gone() {
    local state
    state=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z "$state" || "$state" == Z ]]
}

# remove_leftovers ID CONFIG [ID CONFIG]...: a node killed with kill -9 (or
# SIGKILLed above) never removed its build containers and volumes (an idle
# prepared container among them), and nothing removes them until it starts
# again. Remove those labelled with its data directory, unless something
# listens on its port: that may be the same node, started some other way.
remove_leftovers() {
    [[ -x .venv/bin/python ]] || return 0
    .venv/bin/python -c '
import shutil
import sys

import docker.errors

from builder.engine.host import connect
from builder.engine.host import remove_labelled_builds
from builder.workspace.checkouts import checkouts_root
from shared.config import ConfigError, load_config
from shared.ports import listen_problem

args = sys.argv[1:]
for node_id, path in zip(args[::2], args[1::2]):
    who = f"node {node_id}"
    try:
        config = load_config(path, require_keys=False, read_secrets=False)
        node = config.node(int(node_id))
    except (ConfigError, KeyError) as error:
        print(f"{who}: its leftover builds stay until it starts again: {str(error).splitlines()[0]}")
        continue
    busy = listen_problem(node.host, node.port)
    if busy:
        print(f"{who}: its leftover builds stay, since another process may be node {node_id}: {busy}")
        continue
    data_dir = (config.data_dir / f"node-{node_id}").resolve()
    try:
        engine = connect(node.docker)
        try:
            removed = remove_labelled_builds(engine, data_dir)
        finally:
            engine.close()
    except docker.errors.DockerException as error:
        print(f"{who}: its leftover builds stay until it starts again: {error}")
        continue
    shutil.rmtree(checkouts_root(data_dir), ignore_errors=True)
    if removed:
        print(f"{who}: removed the {removed} build containers and volumes it left ({data_dir})")
' "$@"
}

stopped_any=false
declare -A labels=()

if $stop_client; then
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
    elif $asked_client; then
        echo "no client to stop: there is no $client_pid_file"
    fi
fi

if $stop_nodes && [[ -f $pid_file ]]; then
    targets=()
    declare -A listed=() config_of=()
    dead=()
    # The nodes this run does not stop stay in the pid file.
    : >"$pid_file.new"
    while read -r pid id rest; do
        [[ -n "${pid:-}" ]] || continue
        if ! chosen "$id"; then
            echo "$pid $id $rest" >>"$pid_file.new"
            continue
        fi
        listed[$id]=1
        config_of[$id]=$rest
        if runs "$pid" node/index.py; then
            targets+=("$pid")
            labels[$pid]="node $id"
        else
            echo "node ${id:-?} (pid $pid) was not running"
            dead+=("$id")
        fi
    done <"$pid_file"
    for id in "${!chosen_nodes[@]}"; do
        [[ -n "${listed[$id]:-}" ]] || echo "node $id is not in $pid_file: nothing to stop"
    done
    if [[ ${#targets[@]} -gt 0 ]]; then
        stopping=("${targets[@]}")
        stop node/index.py
        for pid in "${targets[@]+"${targets[@]}"}"; do
            dead+=("${labels[$pid]#node }")
        done
        if [[ ${#chosen_nodes[@]} -eq 0 ]]; then
            echo "network stopped"
        else
            for pid in "${stopping[@]}"; do
                echo "${labels[$pid]} stopped"
            done
        fi
        stopped_any=true
    fi
    if [[ -s $pid_file.new ]]; then
        mv "$pid_file.new" "$pid_file"
    else
        rm -f "$pid_file.new" "$pid_file"
    fi
    if [[ ${#dead[@]} -gt 0 ]]; then
        leftovers=()
        for id in "${dead[@]}"; do
            leftovers+=("$id" "${config_of[$id]}")
        done
        # The nodes are stopped whatever happens here: their next start sweeps what is left.
        remove_leftovers "${leftovers[@]}" ||
            echo "could not remove the leftover builds of node(s) ${dead[*]}; each start of a node removes its own"
    fi
elif $stop_nodes && [[ ${#chosen_nodes[@]} -gt 0 ]]; then
    echo "no node to stop: there is no $pid_file"
fi

# With --client or --node, the lines above said what there was.
if ! $stopped_any && ! $asked_client && [[ ${#chosen_nodes[@]} -eq 0 ]]; then
    echo "nothing to stop (no running client in $client_pid_file, no running node in $pid_file)"
fi
