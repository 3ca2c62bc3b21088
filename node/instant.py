"""A build executor that answers at once, for tests and benchmarks of the protocol alone.

`node/index.py --instant-builds` swaps it in for Docker; like the Byzantine
switches, nodes refuse it unless the configuration sets `allow_byzantine:
true`, so no normal network can run it. Every honest node returns the same
result for the same request, as a real pinned build would.
"""

from __future__ import annotations

import hashlib

from pbft.build import Result


async def instant_build(*, build_id: str, repository_name: str, repository_url: str, branch: str,
                        commit: str | None, **trigger) -> Result:
    if commit is None:
        commit = hashlib.sha1(f"{repository_name}\0{branch}".encode()).hexdigest()
    return Result("success", 0, commit, "instant build: nothing ran")
