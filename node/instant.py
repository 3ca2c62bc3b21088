"""A build executor that answers at once, for tests and benchmarks of the protocol alone.

`node/index.py --instant-builds` swaps it in for Docker; like the Byzantine
switches, nodes refuse it unless the configuration sets `allow_byzantine:
true`, so no normal network can run it. Every honest node returns the same
result for the same request, as a real pinned build would.
"""

from __future__ import annotations

import hashlib

from builder import BuildOrder, BuildResult


async def instant_build(order: BuildOrder) -> BuildResult:
    commit = order.commit
    if commit is None:
        commit = hashlib.sha1(f"{order.repository_name}\0{order.branch}".encode()).hexdigest()
    return BuildResult("success", 0, commit, "instant build: nothing ran")
