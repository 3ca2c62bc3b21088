#!/usr/bin/env bash
# Start every node of a network configuration that is not running yet, in the
# background.
#
#   ./startNetwork.sh [CONFIG] [--byzantine ID:MODE[:ARG]]...
#
# CONFIG defaults to example-config/network.yaml. The machine is set up first
# (scripts/setup.sh: packages, Docker engine, build image, keys, example
# repository). Each node's stdout and stderr go to <log_dir>/node-<id>.stdout
# and its log to <log_dir>/node-<id>.log (log/ for the example); the process
# ids are kept in run/network.pids for ./stopNetwork.sh (PBFT_CI_RUN_DIR names
# another folder, for a second network of the same checkout). The script
# returns once every node it started answers GET /status. A node that does
# not start is reported with the last line it wrote, and the script exits 1
# leaving the others running.
# Nodes that run are kept, so running it again starts only the missing ones:
# to restart node 3, ./stopNetwork.sh --node 3 and then this script.
#
# --byzantine ID:MODE[:ARG] starts node ID misbehaving on purpose: lie, silent,
# cancel, equivocate, forge, withhold-relay, crash-after:N (frames), delay:MS
# (e.g. 2:delay:200), or flaky (honest, but its builds see PBFT_CI_FLAKY=1: a
# disputed verdict). docs/faults.md says what each does; censor, whose
# argument is a client's name, is run with node/index.py (see its --help). For
# demos and tests only: refused unless the configuration sets
# allow_byzantine: true, and for a node that is running (a running node keeps
# the behaviour it was started with; stop it first with ./stopNetwork.sh
# --node ID).
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

usage() {
    echo "usage: $0 [CONFIG] [--byzantine ID:MODE[:ARG]]..." >&2
    exit 2
}

config=""
declare -A byzantine=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --byzantine=*) spec="${1#--byzantine=}"; shift ;;
        --byzantine) [[ $# -ge 2 ]] || usage; spec="$2"; shift 2 ;;
        -h|--help) help; exit 0 ;;
        -*) usage ;;
        *) [[ -z "$config" ]] || usage; config="$1"; shift; continue ;;
    esac
    [[ "$spec" =~ ^([0-9]+):([a-z-]+)(:([0-9]+))?$ ]] ||
        { echo "--byzantine wants ID:MODE[:ARG], e.g. 3:lie or 2:delay:200; got '$spec'" >&2; exit 2; }
    # Stored as the words node/index.py takes after --byzantine: MODE [ARG].
    byzantine[${BASH_REMATCH[1]}]="${BASH_REMATCH[2]}${BASH_REMATCH[4]:+ ${BASH_REMATCH[4]}}"
done
config="${config:-example-config/network.yaml}"
# A path given relative to the caller's directory must survive the cd below.
if [[ "$config" != /* ]]; then
    config="$(pwd)/$config"
fi
cd "$(dirname "${BASH_SOURCE[0]}")"

# pid_file, and `runs PID node/index.py`: true while PID still runs a node (pids get reused).
source scripts/lib/processes.sh
read_start_wait

# The --byzantine words (MODE [ARG]) node PID was started with; nothing for an honest node.
# Read from the process itself, so that what the script reports is what the node runs.
byzantine_of() {
    local -a words=()
    mapfile -d '' -t words 2>/dev/null <"/proc/$1/cmdline" || return 0
    local i
    for ((i = 0; i < ${#words[@]}; i++)); do
        [[ "${words[i]}" == --byzantine ]] || continue
        local mode="${words[i + 1]:-}" arg="${words[i + 2]:-}"
        [[ -n "$arg" && "$arg" != -* ]] && mode+=" $arg"
        echo "$mode"
    done
}

# Nodes of this configuration that still run are kept: running the script
# again restarts only the nodes that died (a node killed with kill -9 rejoins
# from its own data directory and catches up).
declare -A running=()
if [[ -f $pid_file ]]; then
    while read -r pid id started_config; do
        runs "$pid" node/index.py || continue
        if [[ "$started_config" != "$config" ]]; then
            echo "nodes of $started_config are running (node $id is pid $pid): run ./stopNetwork.sh first" >&2
            exit 1
        fi
        running[$id]=$pid
    done <"$pid_file"
fi

./scripts/setup.sh "$config"

# Node ids and addresses come from the configuration, read by the project's own
# loader so that every error is reported as the nodes would report it.
if ! nodes=$(.venv/bin/python -c '
import sys
from shared.config import ConfigError, load_config
try:
    config = load_config(sys.argv[1])
except ConfigError as error:
    sys.exit(str(error))
print("log_dir", config.log_dir)
print("ca_file", config.tls.ca_file if config.tls else "")
print("allow_byzantine", "yes" if config.allow_byzantine else "no")
for node in config.nodes:
    print(node.id, node.host, node.port, node.scheme)
' "$config"); then
    exit 1
fi
log_dir=$(awk '$1 == "log_dir" { sub(/^log_dir /, ""); print }' <<<"$nodes")
# With `tls:`, a node's status is read over HTTPS, checked against the network's CA.
ca_file=$(awk '$1 == "ca_file" { sub(/^ca_file ?/, ""); print }' <<<"$nodes")
allow_byzantine=$(awk '$1 == "allow_byzantine" { print $2 }' <<<"$nodes")
nodes=$(grep -v '^log_dir \|^ca_file\|^allow_byzantine ' <<<"$nodes")

# Flags are refused before anything starts. A running node keeps the behaviour it was
# started with: a flag for it would be reported but never take effect.
for id in "${!byzantine[@]}"; do
    flag="--byzantine $id:${byzantine[$id]// /:}"
    grep -q "^$id " <<<"$nodes" || { echo "$flag: no node $id in $config" >&2; exit 2; }
    refused=""
    [[ $allow_byzantine == yes ]] || refused="$config does not set allow_byzantine: true"
    if [[ -n "${running[$id]:-}" ]]; then
        now=$(byzantine_of "${running[$id]}")
        [[ "$now" == "${byzantine[$id]}" ]] && continue
        echo "$flag: node $id is running (pid ${running[$id]}, ${now:+byzantine: }${now:-honest}) and would" \
             "stay so; stop it first with ./stopNetwork.sh --node $id, then run this again${refused:+ (and $refused, which the flag needs)}" >&2
        exit 2
    fi
    [[ -z "$refused" ]] || { echo "$flag is refused: $refused" >&2; exit 2; }
done

mkdir -p "$run_dir" "$log_dir"
: >"$pid_file.new"
declare -A pids=() urls=() modes=()
while read -r id host port scheme; do
    # A node listening on every address is asked for its status on loopback.
    case "$host" in
        0.0.0.0) host=127.0.0.1 ;;
        ::) host="[::1]" ;;
        *:*) host="[$host]" ;;
    esac
    if [[ -n "${running[$id]:-}" ]]; then
        echo "${running[$id]} $id $config" >>"$pid_file.new"
        urls[$id]="$scheme://$host:$port/status"
        modes[$id]=$(byzantine_of "${running[$id]}")
        continue
    fi
    extra=()
    modes[$id]="${byzantine[$id]:-}"
    if [[ -n "${byzantine[$id]:-}" ]]; then
        read -ra words <<<"${byzantine[$id]}"
        extra=(--byzantine "${words[@]}")
    fi
    nohup .venv/bin/python node/index.py --config "$config" --id "$id" "${extra[@]}" \
        </dev/null >"$log_dir/node-$id.stdout" 2>&1 &
    pids[$id]=$!
    urls[$id]="$scheme://$host:$port/status"
    echo "${pids[$id]} $id $config" >>"$pid_file.new"
done <<<"$nodes"
mv "$pid_file.new" "$pid_file"

last_words() {
    { grep -v '^[[:space:]]*$' "$log_dir/node-$1.stdout" || true; } | tail -n 1
}

# Each node started now is up once GET /status answers with its id and process id: the pid
# matters, another process on the port (a node of another network, or of this one started
# elsewhere) may answer with the same id while the node started here died. One process polls
# them all (scripts/lib/awaitstart.py).
exited=() silent=()
waits=()
for id in "${!pids[@]}"; do
    waits+=(--wait "$id" "${urls[$id]}" "${pids[$id]}")
done
if [[ ${#waits[@]} -gt 0 ]]; then
    while read -r state id; do
        words=$(last_words "$id")
        case $state in
            exited)
                echo "node $id (pid ${pids[$id]}) exited during start-up: ${words:-no output} ($log_dir/node-$id.stdout)" >&2
                exited+=("$id") ;;
            silent)
                echo "node $id (pid ${pids[$id]}) did not answer GET ${urls[$id]} within $start_wait_s s and is left running" \
                     "(./stopNetwork.sh --node $id stops it): ${words:-no output} ($log_dir/node-$id.stdout)" >&2
                silent+=("$id") ;;
        esac
    done < <(.venv/bin/python scripts/lib/awaitstart.py --seconds "$start_wait_s" --match-id --cafile "$ca_file" "${waits[@]}")
fi

if [[ ${#exited[@]} -gt 0 ]]; then
    : >"$pid_file.new"
    while read -r pid id rest; do
        [[ " ${exited[*]} " == *" $id "* ]] || echo "$pid $id $rest" >>"$pid_file.new"
    done <"$pid_file"
    mv "$pid_file.new" "$pid_file"
fi

nodes_total=$(wc -l <<<"$nodes")
nodes_up=$(( $(wc -l <"$pid_file") - ${#silent[@]} ))
if [[ ${#exited[@]} -eq 0 && ${#silent[@]} -eq 0 ]]; then
    echo "network up: $nodes_total nodes of $config (${#pids[@]} started now)"
else
    failed=("${exited[@]+"${exited[@]}"}" "${silent[@]+"${silent[@]}"}")
    echo "network partly up: $nodes_up of $nodes_total nodes of $config answer; node(s) ${failed[*]} did not start (see above)"
fi
while read -r pid id _; do
    [[ " ${silent[*]+"${silent[*]}"} " == *" $id "* ]] && continue
    echo "  node $id  pid $pid  ${urls[$id]}${modes[$id]:+  (byzantine: ${modes[$id]})}"
done <"$pid_file"
echo "logs: $log_dir/node-<id>.log (protocol and builds), $log_dir/build-*.log (build output), $log_dir/node-<id>.stdout"
echo "stop: ./stopNetwork.sh"
[[ ${#exited[@]} -eq 0 && ${#silent[@]} -eq 0 ]] || exit 1
