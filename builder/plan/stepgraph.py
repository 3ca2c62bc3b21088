"""When a pipeline's steps may run: the graph `depends_on` makes, and a schedule over it.

Steps whose dependencies have all ended run at once, so a build is as long as its longest
chain, not the sum of its steps. What a step sees is a function of the graph alone, never
of which step ended first, so every honest node runs the same steps and reports the same
results whatever its timing:

- a step's *status so far* is `failure` once a step it follows, directly or through
  others, failed without `failure: ignore` (its `when: status` is asked of that), and
  `success` otherwise; a step declared after a failed one that does not follow it runs;
- the results are listed in the run order (builder/plan/pipeline.run_order), and the
  build's exit code is that of the first failed step in that order.

How many steps may run at once is the graph's width (the most steps none of which follows
another, Dilworth's theorem): the build's CPUs, memory and processes are divided by it, so
the steps running at once never hold more than the build's totals (builder/plan/resources.share).
Pure: the engine (builder/engine/steps.py) asks it what to start and tells it what ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

FAILED = ("failure", "timeout")


@dataclass(frozen=True)
class StepGraph:
    """Step names in the run order and the steps each one follows directly."""

    names: tuple[str, ...]
    follows: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        position = {name: index for index, name in enumerate(self.names)}
        assert all(position[other] < position[name] for name in self.names for other in self.follows[name]), \
            "names are in an order that honours depends_on"

    @cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        """Each step's name: the steps it follows, directly or through others (those come
        before it in `names`, so theirs are known by then)."""
        ancestors: dict[str, frozenset[str]] = {}
        for name in self.names:
            ancestors[name] = frozenset(self.follows[name]).union(*(ancestors[other] for other in self.follows[name]))
        return ancestors

    @cached_property
    def width(self) -> int:
        """The most steps that can run at once: the largest set of steps none of which follows
        another, which is the number of steps less a maximum matching of "a before b"."""
        before = self.ancestors
        matched: dict[str, str] = {}  # later step -> the earlier step it is matched with

        def augment(earlier: str, tried: set[str]) -> bool:
            for later in self.names:
                if earlier in before[later] and later not in tried:
                    tried.add(later)
                    if later not in matched or augment(matched[later], tried):
                        matched[later] = earlier
                        return True
            return False

        matching = sum(augment(name, set()) for name in self.names)
        return len(self.names) - matching


@dataclass
class Schedule:
    """Which steps may start: those not started whose every dependency ended, in the run order,
    while fewer than the graph's width run."""

    graph: StepGraph
    running: set[str] = field(default_factory=set)
    # name -> its status (StepResult's) and whether its failure fails the build
    ended: dict[str, tuple[str, bool]] = field(default_factory=dict)

    def free(self) -> list[str]:
        """The steps not started whose every dependency ended, in the run order."""
        return [
            name for name in self.graph.names
            if name not in self.running and name not in self.ended
            and all(other in self.ended for other in self.graph.follows[name])
        ]

    def startable(self) -> list[str]:
        """The free steps there is room for."""
        return self.free()[:max(self.graph.width - len(self.running), 0)]

    def start(self, name: str) -> None:
        assert name in self.startable(), f"step {name} may not start yet"
        self.running.add(name)

    def end(self, name: str, status: str, counts: bool = True) -> None:
        """`name` ended with `status` (a free step may end unstarted: skipped); `counts`: a
        failure of it fails the build (no `failure: ignore`)."""
        assert name in self.running or name in self.free(), f"step {name} is neither running nor free"
        self.running.discard(name)
        self.ended[name] = (status, counts)

    def status_before(self, name: str) -> str:
        """The status so far a step sees: that of the steps it follows."""
        failed = any(
            self.ended[other][0] in FAILED and self.ended[other][1] for other in self.graph.ancestors[name]
        )
        return "failure" if failed else "success"

    @property
    def done(self) -> bool:
        return len(self.ended) == len(self.graph.names)
