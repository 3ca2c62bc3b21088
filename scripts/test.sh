#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [PYTEST ARGS...]
#
# Sets the machine up first (scripts/setup.sh: packages, Docker engine, build
# images including the Debian one only the tests use, keys, example
# repository), then runs pytest from the repository root in .venv. The exit code is pytest's. Arguments go to pytest, e.g.
# `scripts/test.sh -m "not e2e"` or `scripts/test.sh tests/test_end_to_end.py`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PBFT_CI_TEST_IMAGES=1 ./scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
