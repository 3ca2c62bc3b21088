#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [PYTEST ARGS...]
#
# Sets the machine up first (scripts/setup.sh: packages, Docker engine, build
# images including the Debian one only the tests use, keys, example
# repository), then runs pytest from the repository root in .venv. The exit
# code is pytest's. Arguments go to pytest, e.g. `scripts/test.sh -m core` (a
# layer: core simulation shared node client runner e2e project; docs/testing.md) or
# `scripts/test.sh tests/e2e/test_end_to_end.py`; pytest's help follows this.
# It runs on a worker per core (pytest-xdist, docs/testing.md); `-n 0` runs it in one process.
set -euo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PBFT_CI_TEST_IMAGES=1 ./scripts/setup.sh
exec .venv/bin/python -m pytest -q -n auto --dist loadgroup "$@"
