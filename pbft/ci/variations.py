"""Each node's variation of a build that its repository has varied (`vary: true`): a function of
the node's id and the build's id (the agreed request's client and timestamp) alone, so every
node, and any client, knows every other node's. The builder builds under it
(builder/plan/variations.py says what each part does to a build); the provenance of a varied
build's artifacts lists every member's (pbft.provenance), so f+1 matching signatures say under
which variations the bytes came out the same. Consecutive nodes take consecutive entries of
each list, so up to len(list) nodes never share a value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The variables a varied build's first script line reads (builder/engine/gate.py).
UMASK_VARIABLE = "PBFT_CI_UMASK"
CLOCK_VARIABLE = "PBFT_CI_FAKETIME"
# POSIX TZ strings, not zoneinfo names: an image without /usr/share/zoneinfo (busybox) reads
# them too, so every image sees its offset. Offsets of quarter and half hours included.
ZONES = ("UTC0", "NST3:30", "<+0545>-5:45", "<+1245>-12:45", "<-12>12", "CET-1", "JST-9")
LOCALES = ("C.UTF-8", "fr_CH.UTF-8", "tr_TR.UTF-8", "ja_JP.UTF-8", "de_DE.UTF-8", "es_ES.UTF-8", "ru_RU.UTF-8")
UMASKS = ("0022", "0002", "0077", "0027", "0007", "0022", "0002")
# Days the clock is moved forward: about a year apart (as reprotest's 373), so that each node's
# date, and its year, differ from every other's.
CLOCK_DAYS = (0, 373, 746, 1119, 1492, 1865, 2238)
DAY_S = 86_400
# Every build container's host name, on every node, unless the build is varied.
BUILD_HOSTNAME = "pbft-ci"
HOSTNAMES = ("build-alder", "build-birch", "build-cedar", "build-dogwood", "build-elm", "build-fir", "build-ginkgo")
# Under /build, a folder no image of a build is expected to have: the mount makes it.
BUILD_PATHS = tuple(f"/build/{name.removeprefix('build-')}/src" for name in HOSTNAMES)


@dataclass(frozen=True)
class Variation:
    time_zone: str
    locale: str
    umask: str
    clock_days: int = 0
    hostname: str = BUILD_HOSTNAME
    build_path: str = "/workspace"

    def environment(self) -> dict[str, str]:
        return {"TZ": self.time_zone, "LC_ALL": self.locale, "LANG": self.locale, UMASK_VARIABLE: self.umask,
                CLOCK_VARIABLE: f"+{self.clock_days}d"}

    def described(self) -> str:
        return (f"TZ={self.time_zone}, LC_ALL={self.locale}, umask {self.umask}, "
                f"clock +{self.clock_days} days (where the image has libfaketime), host name {self.hostname}, "
                f"build path {self.build_path}")

    def as_dict(self) -> dict:
        return {"time_zone": self.time_zone, "locale": self.locale, "umask": self.umask,
                "clock_days": self.clock_days, "hostname": self.hostname, "build_path": self.build_path}


def variation(node_id: int, build_id: str) -> Variation:
    """Node `node_id`'s variation for the build `build_id`: the build picks a starting point,
    the node its place from there."""
    start = int.from_bytes(hashlib.sha256(build_id.encode()).digest()[:4], "big")
    pick = start + node_id
    return Variation(ZONES[pick % len(ZONES)], LOCALES[pick % len(LOCALES)], UMASKS[pick % len(UMASKS)],
                     CLOCK_DAYS[pick % len(CLOCK_DAYS)], HOSTNAMES[pick % len(HOSTNAMES)],
                     BUILD_PATHS[pick % len(BUILD_PATHS)])


def vary_of(document: dict | None, repository: str) -> bool:
    """Whether the network document varies the repository's builds (its `vary: true`)."""
    for entry in (document or {}).get("repositories") or ():
        if isinstance(entry, dict) and entry.get("name") == repository:
            return entry.get("vary") is True
    return False


def variations_of(ids: tuple[int, ...], build_id: str) -> dict[str, dict]:
    """Every member's variation of the build, by node id (a string, as JSON keys are)."""
    return {str(node): variation(node, build_id).as_dict() for node in sorted(ids)}
