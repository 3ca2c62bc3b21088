"""Fixtures of the node tests: they start real node processes and aiohttp applications with
the helpers of tests/support/ and tests/node/real_nodes.py; the build side's fixtures (a Docker
engine, images, executors) are in tests/builder/conftest.py."""
