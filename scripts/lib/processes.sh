# The processes ./startNetwork.sh and ./scripts/startClient.sh --background started, as
# ./stopNetwork.sh (which stops them) and ./scripts/reload.sh (which makes them re-read their
# configuration) find them. Sourced, from the repository root, by those scripts; each defines
# `usage` first.
#
# run/client.pid holds the client's pid; run/network.pids a line per node: pid, id,
# configuration. A pid is only signalled while it still runs client/index.py or
# node/index.py: it may have been reused since. PBFT_CI_RUN_DIR names another folder
# for both files (relative to the repository root, or absolute), so that networks
# started with different folders are started, reloaded and stopped apart.

run_dir=${PBFT_CI_RUN_DIR:-run}
client_pid_file=$run_dir/client.pid
pid_file=$run_dir/network.pids

# read_start_wait: sets start_wait_s, how long the start scripts wait for a process they
# started to answer: 120 s unless PBFT_CI_START_WAIT_S says otherwise; exits 2 on anything
# but a whole number of seconds above 0. A node imports, opens its store and asks its engine
# before it listens; on a host busy with other work that takes many times what it does alone.
read_start_wait() {
    start_wait_s=${PBFT_CI_START_WAIT_S:-120}
    if [[ ! "$start_wait_s" =~ ^[0-9]+$ ]] || ((10#$start_wait_s == 0)); then
        echo "PBFT_CI_START_WAIT_S is a whole number of seconds above 0; got '$start_wait_s'" >&2
        exit 2
    fi
}

# True when PID is alive and its command line holds SCRIPT (node/index.py or
# client/index.py). A zombie has an empty command line, so it counts as stopped.
runs() {
    local cmdline
    cmdline=$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
    [[ "$cmdline" == *"$2"* ]]
}

# parse_choice ARGS: which processes a command is for. Sets `asked_client` (true with
# --client) and the associative array `chosen_nodes` (the ids of --node ID, repeatable);
# --help prints the calling script's header comment.
parse_choice() {
    asked_client=false
    declare -gA chosen_nodes=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -h|--help) help; exit 0 ;;
            --client) asked_client=true; shift ;;
            --node=*) set -- --node "${1#--node=}" "${@:2}" ;;
            --node)
                [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || { echo "--node wants a node id, e.g. --node 3" >&2; exit 2; }
                chosen_nodes[$2]=1
                shift 2
                ;;
            *) usage ;;
        esac
    done
}

# True when node ID is one the command is for: every node unless --node chose some.
chosen() {
    [[ ${#chosen_nodes[@]} -eq 0 || -n "${chosen_nodes[$1]:-}" ]]
}

help() {
    # The calling script's header comment, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}
