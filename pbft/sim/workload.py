"""What clients ask for and what builds return in the simulation.

A build's agreed outcome is a pure function of its operation, as with a real
pinned commit, so honest nodes agree; the free-text reason carries the
build time and so differs between nodes, as real logs would.

A seed's workload has a shape: `steady` (requests spread over a few
seconds), `burst` (a few bursts, each many requests within 50 ms), `idle`
(groups of requests separated by idle gaps of seconds to minutes, where
timers and fetch intervals elapse with nothing to order) or `greedy` (steady,
and a client of timestamps 1, 2, 3, ... sending hundreds of requests at once). Long runs
(`long_workload`) are a steady stream of thousands of requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pbft.encoding import digest
from pbft.build import Operation, Result

REPOSITORY = "example"
SHAPES = ("steady", "burst", "idle", "greedy")
# A `greedy` workload adds a client that numbers its requests 1, 2, 3, ... and sends them
# all within 50 ms, more of them than a node keeps per client, open or executed (the
# simulator's max_open_per_client and max_requests_per_client), each naming a branch that
# does not exist (a build that costs nothing).
GREEDY_CLIENT = "greedy"
GREEDY_REQUESTS = 200


@dataclass(frozen=True)
class Submission:
    time_s: float
    client: str
    operation: Operation


@dataclass(frozen=True)
class Workload:
    shape: str
    submissions: tuple[Submission, ...]  # in time order

    @property
    def span_s(self) -> float:
        return self.submissions[-1].time_s if self.submissions else 0.0

    def idle_gaps(self, at_least_s: float = 1.5) -> list[tuple[float, float]]:
        """(last request before, first request after) of each gap of at least `at_least_s` with nothing asked."""
        times = [submission.time_s for submission in self.submissions]
        return [(earlier, later) for earlier, later in zip(times, times[1:]) if later - earlier >= at_least_s]

    @property
    def longest_idle_s(self) -> float:
        times = [submission.time_s for submission in self.submissions]
        return max((later - earlier for earlier, later in zip(times, times[1:])), default=0.0)


def build_result(operation: Operation, build_s: float, node: int) -> Result:
    """`pass-*` succeeds, `fail-<code>-*` fails with that exit code, anything else is an error.

    `art-*` succeeds with artifacts whose bytes are the same on every node;
    `noisy-*` with artifacts that are not reproducible: each node makes its
    own bytes. (Were two honest nodes to make the same bytes, a client could
    not tell them from a reproducible build with a node yet to reply, and with
    a node down it would wait out its deadline: pbft.replies.)
    """
    commit = digest(operation.branch)[:40]
    reason = f"built in {build_s:.3f}s"
    if operation.branch.startswith("pass-"):
        return Result("success", 0, commit, reason)
    if operation.branch.startswith("art-"):
        return Result("success", 0, commit, reason, artifacts="sha256:" + digest(operation.branch))
    if operation.branch.startswith("noisy-"):
        return Result("success", 0, commit, reason, artifacts="sha256:" + digest([operation.branch, node]))
    if operation.branch.startswith("fail-"):
        return Result("failure", int(operation.branch.split("-")[1]), commit, reason)
    return Result("error", None, None, f"no such branch; {reason}")


def _operation(rng: random.Random, index: int) -> Operation:
    branch = rng.choice((f"pass-{index}", f"fail-{rng.randint(1, 125)}-{index}", f"missing-{index}"))
    if branch.startswith("pass-") and index % 4:
        # Chosen by the index, not drawn, so that a seed's other draws (its faults) stay what they were.
        branch = f"{'art' if index % 4 == 1 else 'noisy' if index % 4 == 2 else 'pass'}-{index}"
    return Operation(REPOSITORY, branch)


def _times(rng: random.Random, shape: str, requests: int, submit_window_s: float) -> list[float]:
    if shape == "steady":
        return [rng.uniform(0.0, submit_window_s) for _ in range(requests)]
    if shape == "burst":
        span_s = rng.uniform(submit_window_s, 60.0)
        starts = [rng.uniform(0.0, span_s) for _ in range(rng.randint(1, 4))]
        return [rng.choice(starts) + rng.uniform(0.0, 0.05) for _ in range(requests)]
    # idle: groups of requests, each followed by seconds or minutes in which nothing is asked.
    times, start_s = [], 0.0
    sizes = [0] * rng.randint(2, 5)
    for _ in range(requests):
        sizes[rng.randrange(len(sizes))] += 1
    for size in sizes:
        spread_s = rng.uniform(0.0, 1.0)
        times += [start_s + rng.uniform(0.0, spread_s) for _ in range(size)]
        start_s += spread_s + (rng.uniform(1.5, 10.0) if rng.random() < 0.5 else rng.uniform(10.0, 150.0))
    return times


def make_workload(rng: random.Random, requests: int, clients: list[str], submit_window_s: float) -> Workload:
    """`requests` submissions of a shape drawn from the seed; close times make concurrent requests and batches."""
    shape = rng.choice(SHAPES)
    submissions = [
        Submission(time_s, rng.choice(clients), _operation(rng, index))
        for index, time_s in enumerate(_times(rng, "steady" if shape == "greedy" else shape, requests, submit_window_s))
    ]
    if shape == "greedy":
        start_s = rng.uniform(0.0, submit_window_s)  # all of them within 50 ms
        submissions += [
            Submission(start_s + rng.uniform(0.0, 0.05), GREEDY_CLIENT, Operation(REPOSITORY, f"missing-greedy-{index}"))
            for index in range(GREEDY_REQUESTS)
        ]
    return Workload(shape, tuple(sorted(submissions, key=lambda submission: submission.time_s)))


def long_workload(rng: random.Random, requests: int, clients: list[str], rate_per_s: float) -> Workload:
    """A steady stream at about `rate_per_s` requests a second, for runs that cross many checkpoints."""
    time_s, submissions = 0.0, []
    for index in range(requests):
        time_s += rng.expovariate(rate_per_s)
        submissions.append(Submission(time_s, rng.choice(clients), _operation(rng, index)))
    return Workload("steady", tuple(submissions))
