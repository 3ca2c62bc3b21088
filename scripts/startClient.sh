#!/usr/bin/env bash
# Run the pbft-ci client in the foreground: scripts/startClient.sh [CONFIG]
# The client's key pair is generated first if it is missing (keygen keeps
# existing keys). Logs go to the configuration's log_dir (log/client.log).
set -euo pipefail

config="${1:-example-config/network.yaml}"
# A path given relative to the caller's directory must survive the cd below.
if [[ $# -ge 1 && "$config" != /* ]]; then
    config="$(pwd)/$config"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 scripts/keygen.py "$config"
exec python3 client/index.py --config "$config"
