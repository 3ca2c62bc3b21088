#!/usr/bin/env bash
# Make what ./startNetwork.sh and ./scripts/startClient.sh --background started re-read
# their configuration file, without a restart:
#
#   ./scripts/reload.sh                  every node, then the client
#   ./scripts/reload.sh --node ID ...    only these nodes (--node is repeatable)
#   ./scripts/reload.sh --client         only the client
#
# --client and --node may be combined. Each process gets SIGHUP (as `kill -HUP PID`
# would send) and reads the file it was started with again. It applies the file only
# if the file loads and changes only what may change live (repositories, their
# secrets and forge settings, the client's token); otherwise it keeps running with
# the configuration it had and says why in its log (log/node-<id>.log,
# log/client.log: a line with "reload refused", or "reload:" and what changed).
# The nodes are signalled first: a webhook for a repository just added is accepted
# only once the client knows it, and by then every node should. Only the processes
# listed in run/network.pids and run/client.pid are signalled, each only if it still
# runs node/index.py or client/index.py. Exits 1 when none of them runs.
# docs/operations.md, "Reloading the configuration", says more.
set -euo pipefail

usage() {
    echo "usage: $0 [--client] [--node ID]...  (--help says more)" >&2
    exit 2
}

# runs, chosen, parse_choice and the pid files: shared with ./stopNetwork.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib/processes.sh"
parse_choice "$@"
reload_client=true reload_nodes=true
if $asked_client && [[ ${#chosen_nodes[@]} -eq 0 ]]; then
    reload_nodes=false
elif ! $asked_client && [[ ${#chosen_nodes[@]} -gt 0 ]]; then
    reload_client=false
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

signalled=()
if $reload_nodes && [[ -f $pid_file ]]; then
    declare -A listed=()
    while read -r pid id _; do
        [[ -n "${pid:-}" ]] && chosen "$id" || continue
        listed[$id]=1
        if runs "$pid" node/index.py; then
            kill -HUP "$pid"
            signalled+=("node $id (pid $pid)")
        else
            echo "node $id (pid $pid) is not running"
        fi
    done <"$pid_file"
    for id in "${!chosen_nodes[@]}"; do
        [[ -n "${listed[$id]:-}" ]] || echo "node $id is not in $pid_file: nothing to reload"
    done
elif $reload_nodes; then
    echo "no node to reload: there is no $pid_file"
fi
if $reload_client; then
    pid=""
    [[ -f $client_pid_file ]] && { read -r pid _ <"$client_pid_file" || true; }
    if [[ -n "$pid" ]] && runs "$pid" client/index.py; then
        kill -HUP "$pid"
        signalled+=("client (pid $pid)")
    else
        echo "no client to reload: none running in $client_pid_file"
    fi
fi

if [[ ${#signalled[@]} -eq 0 ]]; then
    echo "nothing reloaded"
    exit 1
fi
printf -v list '%s, ' "${signalled[@]}"
echo "sent SIGHUP to ${list%, }; each says in its log whether it applied the file or refused it"
