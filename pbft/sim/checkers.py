"""Safety and liveness checkers, fed by the cluster as events happen.

They see only what honest nodes do: Byzantine nodes may do anything, and
the protocol's promise is about the rest. Crashed, isolated or lossy nodes
are faulty for liveness but still honest here, since they never lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable

RequestKey = tuple[str, int]  # (client, timestamp)


@dataclass(frozen=True)
class Violation:
    kind: str  # "safety" or "liveness"
    time_s: float
    text: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.time_s:.3f}s: {self.text}"


class SafetyChecker:
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._executed_at: dict[int, tuple[int, Hashable]] = {}  # seq -> (first node, its batch)
        self._executed_by: dict[int, set[RequestKey]] = {}  # node -> requests it started builds for
        self._produced: dict[RequestKey, set[Hashable]] = {}  # request -> verdicts honest nodes replied

    def executed(self, time_s: float, node: int, seq: int, batch: Hashable, builds: tuple[RequestKey, ...]) -> None:
        """An honest node committed `batch` at `seq` and started the `builds` in it that were new to it.

        `batch` identifies what was ordered: its digest where the Execute
        effect carries one, else the list of builds started, which is a
        function of the committed history too, so honest nodes that agree on
        every batch agree on it as well.
        """
        first = self._executed_at.setdefault(seq, (node, batch))
        if first[1] != batch:
            self._violate(time_s, f"seq {seq}: node {first[0]} executed {_short(first[1])} but node {node} executed {_short(batch)}")
        started = self._executed_by.setdefault(node, set())
        for key in builds:
            if key in started:
                self._violate(time_s, f"node {node} executed request {key} twice (again at seq {seq})")
            started.add(key)

    def produced(self, key: RequestKey, verdict: Hashable) -> None:
        """An honest node replied `verdict` for request `key`."""
        self._produced.setdefault(key, set()).add(verdict)

    def accepted(self, time_s: float, key: RequestKey, verdict: Hashable) -> None:
        """A client accepted `verdict` for its request `key`."""
        if verdict not in self._produced.get(key, ()):
            self._violate(time_s, f"client accepted {dict(verdict)} for {key}, which no honest node produced")

    def _violate(self, time_s: float, text: str) -> None:
        self.violations.append(Violation("safety", time_s, text))


def liveness_failures(time_s: float, submitted: Iterable[RequestKey], accepted: Iterable[RequestKey]) -> list[Violation]:
    """After the network healed and the bound passed, every submitted request must have a verdict."""
    missing = sorted(set(submitted) - set(accepted))
    if not missing:
        return []
    shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
    return [Violation("liveness", time_s, f"{len(missing)} request(s) without a verdict: {shown}")]


def _short(batch: Hashable) -> str:
    return batch[:8] if isinstance(batch, str) else str(list(batch))
