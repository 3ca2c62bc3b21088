#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [PYTEST ARGS...]
#
# Sets the machine up first (scripts/setup.sh: packages, Docker engine, build
# images including the Debian one only the tests use, keys, example
# repository), then runs pytest from the repository root in .venv. The exit
# code is pytest's. Arguments go to pytest, e.g. `scripts/test.sh -m core` (a
# layer: core simulation shared builder node client runner e2e project; docs/testing.md) or
# `scripts/test.sh tests/e2e/test_end_to_end.py`; pytest's help follows this.
# It runs on a worker per core and one more (pytest-xdist, docs/testing.md); `-n 0` runs it in one process.
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in
    -h|--help)
        help
        # pytest's own options follow, without setting the machine up for a help text.
        if [[ -x .venv/bin/python ]]; then
            echo
            .venv/bin/python -m pytest --help
        else
            echo "(pytest's own options: run ./scripts/setup.sh, then .venv/bin/python -m pytest --help)"
        fi
        exit 0
        ;;
esac

PBFT_CI_TEST_IMAGES=1 ./scripts/setup.sh
# One worker more than the cores: the machine's group, on one worker, waits for builds and
# timeouts much of its time, which two workers of the other tests fill.
workers=$(( $(nproc) + 1 ))
# The slowest tests are listed at the end, so that a run that took long says where its time went.
# pytest keeps its assertion-rewritten test modules in __pycache__ only where Python may write
# bytecode: with PYTHONDONTWRITEBYTECODE set, each worker rewrote all 300-odd of them (24 s of CPU
# to collect the suite, 7.5 s from the cache), so the suite's own run writes them.
PYTHONDONTWRITEBYTECODE="" exec .venv/bin/python -m pytest -q -n "$workers" --dist loadgroup --durations=30 "$@"
