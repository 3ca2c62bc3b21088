#!/usr/bin/env bash
# Run the pbft-ci client: scripts/startClient.sh [CONFIG] [--name NAME] [--background]
#
# CONFIG defaults to example-config/network.yaml. NAME picks which of its
# clients this is (default: the first one): a network may have several, each
# on its own host (docs/operations.md, "Several clients"), each logging to
# client-NAME.log. The machine is set up first
# (scripts/setup.sh, quick when already done: the Python packages in .venv and
# the client's key pair among them). The client logs to the configuration's
# log_dir (log/client.log).
#
# In the foreground it runs until Ctrl-C. With --background it is started
# with nohup (stdout and stderr in <log_dir>/client.stdout), its pid is kept in
# run/client.pid (PBFT_CI_RUN_DIR names another folder, as for
# ./startNetwork.sh), the script returns once that process answers GET /client, and
# ./stopNetwork.sh stops it along with the nodes (./stopNetwork.sh --client
# stops only the client, to restart it).
#
# Plain webhook calls ({"branch": ...}) need a bearer token unless the client
# listens on loopback and its entry says `plain_without_token: true`, as the
# example's does. To set one (example-config/keys/ is not committed):
#   openssl rand -hex 32 > example-config/keys/client.token
#   # in the client's entry of network.yaml: token_file: keys/client.token
#   curl -H "Authorization: Bearer $(cat example-config/keys/client.token)" \
#        -d '{"branch":"master"}' localhost:8080/webHook
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

usage() {
    echo "usage: $0 [CONFIG] [--name NAME] [--background]" >&2
    exit 2
}

config=""
name=""
background=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --background) background=true ;;
        --name) [[ $# -ge 2 ]] || usage; name="$2"; shift ;;
        -h|--help) help; exit 0 ;;
        -*) usage ;;
        *) [[ -z "$config" ]] || usage; config="$1" ;;
    esac
    shift
done
config="${config:-example-config/network.yaml}"
# A path given relative to the caller's directory must survive the cd below.
if [[ "$config" != /* ]]; then
    config="$(pwd)/$config"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# client_pid_file, and `runs PID client/index.py`: true while PID still runs the client (pids get reused).
source scripts/lib/processes.sh
read_start_wait
pid_file=$client_pid_file

if [[ -f $pid_file ]]; then
    read -r pid _ <"$pid_file" || true
    if [[ -n "${pid:-}" ]] && runs "$pid" client/index.py; then
        echo "a client is already running (pid $pid, from $pid_file): stop it first with ./stopNetwork.sh --client" >&2
        exit 1
    fi
    rm -f "$pid_file"
fi

./scripts/setup.sh "$config"

# Where the client listens and logs, read by the project's own loader so that
# every error is reported as the client would report it.
if ! where=$(.venv/bin/python -c '
import sys
from shared.config import ConfigError, load_config
try:
    config = load_config(sys.argv[1])
except ConfigError as error:
    sys.exit(str(error))
if not config.clients:
    sys.exit(f"{sys.argv[1]}: no client in this configuration")
names = [client.name for client in config.clients]
if sys.argv[2] and sys.argv[2] not in names:
    listed = ", ".join(names)
    sys.exit(f"{sys.argv[1]}: no client named {sys.argv[2]!r}; its clients are {listed}")
client = config.client(sys.argv[2]) if sys.argv[2] else config.clients[0]
host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(client.host, client.host)
print(f"[{host}]" if ":" in host else host, client.port, config.log_dir)
' "$config" "$name"); then
    exit 1
fi
read -r host port log_dir <<<"$where"
url="http://$host:$port"
run_args=(--config "$config")
log_name=client
if [[ -n "$name" ]]; then
    run_args+=(--name "$name" --log-file "$log_dir/client-$name.log")
    log_name="client-$name"
fi

if ! $background; then
    echo "client of $config on $url (webhook: $url/webHook), logging to $log_dir/$log_name.log; Ctrl-C stops it"
    exec .venv/bin/python client/index.py "${run_args[@]}"
fi

mkdir -p "$run_dir" "$log_dir"
nohup .venv/bin/python client/index.py "${run_args[@]}" </dev/null >"$log_dir/$log_name.stdout" 2>&1 &
pid=$!
# Only the pid, so that `kill $(cat run/client.pid)` works; files of older versions
# ("pid config") are still read, as their first word.
echo "$pid" >"$pid_file"

# Ready means that the process started above answers GET /client: any other
# program holding the port would answer HTTP too, while this client dies.
state=$(.venv/bin/python scripts/lib/awaitstart.py --seconds "$start_wait_s" --wait client "$url/client" "$pid")
case $state in
    "exited client")
        # Its last words say why: a busy port names the process holding it.
        last=$(grep -v '^[[:space:]]*$' "$log_dir/$log_name.stdout" | tail -n 1 || true)
        echo "the client (pid $pid) exited during start-up: ${last:-no output} ($log_dir/$log_name.stdout)" >&2
        rm -f "$pid_file"
        exit 1 ;;
    "up client") ;;
    *)
        echo "the client (pid $pid) did not answer GET $url/client within $start_wait_s s, so it was stopped; see $log_dir/$log_name.stdout" >&2
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$pid_file"
        exit 1 ;;
esac

echo "client up: pid $pid, $config"
echo "  webhook: $url/webHook   builds: $url/builds"
echo "logs: $log_dir/$log_name.log, $log_dir/$log_name.stdout"
echo "stop: ./stopNetwork.sh"
