"""Reproducibility under variation: with a repository's `vary: true`, each node builds under a
variation of its own of what a build should not depend on (Debian's reprotest varies these and
more): the time zone, the locale and the umask.

A node's variation is a function of its id and the build's id (the agreed request's client and
timestamp) alone, so every node, and any client, knows every other node's: when f+1 nodes that
built under different variations sign the same artifacts, the build is shown reproducible
under those, and when one side differs the variation that differs is named. Consecutive nodes
take consecutive entries of each list, so up to len(list) nodes never share a value.

The time zone and the locale replace the fixed ones every build gets
(builder/plan/civars.py); a spec's own `environment:` still sets them over the node's choice.
The umask is applied on the first line of each script (builder/engine/gate.py `exported`).
What is not varied yet: the host name, the build path (/workspace) and the clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

UMASK_VARIABLE = "PBFT_CI_UMASK"
# POSIX TZ strings, not zoneinfo names: an image without /usr/share/zoneinfo (busybox) reads
# them too, so every image sees its offset. Offsets of quarter and half hours included.
ZONES = ("UTC0", "NST3:30", "<+0545>-5:45", "<+1245>-12:45", "<-12>12", "CET-1", "JST-9")
LOCALES = ("C.UTF-8", "fr_CH.UTF-8", "tr_TR.UTF-8", "ja_JP.UTF-8", "de_DE.UTF-8", "es_ES.UTF-8", "ru_RU.UTF-8")
UMASKS = ("0022", "0002", "0077", "0027", "0007", "0022", "0002")


@dataclass(frozen=True)
class Variation:
    time_zone: str
    locale: str
    umask: str

    def environment(self) -> dict[str, str]:
        return {"TZ": self.time_zone, "LC_ALL": self.locale, "LANG": self.locale, UMASK_VARIABLE: self.umask}

    def described(self) -> str:
        return f"TZ={self.time_zone}, LC_ALL={self.locale}, umask {self.umask}"

    def as_dict(self) -> dict[str, str]:
        return {"time_zone": self.time_zone, "locale": self.locale, "umask": self.umask}


def variation(node_id: int, build_id: str) -> Variation:
    """Node `node_id`'s variation for the build `build_id`: the build picks a starting point,
    the node its place from there."""
    start = int.from_bytes(hashlib.sha256(build_id.encode()).digest()[:4], "big")
    pick = start + node_id
    return Variation(ZONES[pick % len(ZONES)], LOCALES[pick % len(LOCALES)], UMASKS[pick % len(UMASKS)])


PARTS = ("time zone", "locale", "umask")


def suspects(sides: list[tuple[int, ...]], build_id: str) -> list[str]:
    """The varied parts that may explain why the build's `sides` (the nodes that built the same
    bytes, side by side) differ. A part is cleared by any side with two nodes that built under
    different values of it and still agree; one all nodes share explains nothing. What is left
    may: with the sides of one node each, every part that differs."""
    left = []
    for index, part in enumerate(PARTS):
        values = [[_values(variation(node, build_id))[index] for node in side] for side in sides]
        cleared = any(len(set(side)) > 1 for side in values)
        shared = len({value for side in values for value in side}) <= 1
        if not cleared and not shared:
            left.append(part)
    return left


def _values(varied: Variation) -> tuple[str, str, str]:
    return varied.time_zone, varied.locale, varied.umask
