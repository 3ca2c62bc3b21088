"""What the tests and the benches share to start real pbft-ci networks and read them: fresh
keys and free loopback ports for a network's file (`network.py`), the README's scripts and the
client run as processes (`scripts.py`), webhooks and their certificates (`verdicts.py`),
repositories to build and what builds leave behind (`builds.py`), and real public projects as
build targets (`real_project.py`, `postgres_project.py`).

scripts/bench.py measures with it (bench/) and the tests check with it (tests/); it imports
nothing of either, and no pytest, so that a bench runs without the test suite's code."""
