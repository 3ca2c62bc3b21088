#!/usr/bin/env bash
# Run the pbft-ci client in the foreground: scripts/startClient.sh [CONFIG]
# The machine is set up first (scripts/setup.sh, quick when already done: the
# Python packages in .venv and the client's key pair among them). Logs go to
# the configuration's log_dir (log/client.log).
#
# Plain webhook calls ({"branch": ...}) need a bearer token unless the client
# listens on loopback and its entry says `plain_without_token: true`, as the
# example's does. To set one (example-config/keys/ is not committed):
#   openssl rand -hex 32 > example-config/keys/client.token
#   # in the client's entry of network.yaml: token_file: keys/client.token
#   curl -H "Authorization: Bearer $(cat example-config/keys/client.token)" \
#        -d '{"branch":"master"}' localhost:8080/webHook
set -euo pipefail

config="${1:-example-config/network.yaml}"
# A path given relative to the caller's directory must survive the cd below.
if [[ $# -ge 1 && "$config" != /* ]]; then
    config="$(pwd)/$config"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh "$config"
exec .venv/bin/python client/index.py --config "$config"
