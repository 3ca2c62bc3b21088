"""Reproducibility under variation: with a repository's `vary: true`, each node builds under a
variation of its own of what a build should not depend on (Debian's reprotest varies these and
more): the time zone, the locale, the umask, the clock, the host name and the build path.

A node's variation is a function of its id and the build's id (the agreed request's client and
timestamp) alone, so every node, and any client, knows every other node's: when f+1 nodes that
built under different variations sign the same artifacts, the build is shown reproducible
under those, and when one side differs the variation that differs is named. Consecutive nodes
take consecutive entries of each list, so up to len(list) nodes never share a value.

The time zone and the locale replace the fixed ones every build gets
(builder/plan/civars.py); a spec's own `environment:` still sets them over the node's choice.
The umask is applied on the first line of each script (builder/engine/gate.py `exported`).
The clock is moved forward by whole days with libfaketime, where the image has it (Debian's
`libfaketime`; LD_PRELOAD on the same first line): dynamically linked programs see the later
date, statically linked ones (busybox) and images without it the real clock. Monotonic clocks
are left alone, so timeouts and sleeps are not. The host name is the build containers' (every
build's is BUILD_HOSTNAME otherwise, the same on every node); a varied build never takes a
container started ahead, which has the common one. The build path is where the build runs: its
workspace is mounted there as well as at /workspace (which paths of the spec and CI_WORKSPACE
keep naming), and its scripts start there.

When the nodes' artifacts differ, `traces` says what each varied part leaves in bytes that
differ (a time zone's name, a umask's file mode, the later year), so that the part whose
traces each side's differing bytes hold is named the cause (client/divergence.py).
"""

from __future__ import annotations

import re
import time

from pbft.ci.variations import (  # noqa: F401 (the builder's names for them)
    BUILD_HOSTNAME, BUILD_PATHS, CLOCK_DAYS, CLOCK_VARIABLE, DAY_S, HOSTNAMES, LOCALES, UMASK_VARIABLE, UMASKS, ZONES,
    Variation, variation,
)

PARTS = ("time zone", "locale", "umask", "clock", "host name", "build path")


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


def _values(varied: Variation) -> tuple:
    return varied.time_zone, varied.locale, varied.umask, varied.clock_days, varied.hostname, varied.build_path


# What `date +%Z` prints under each POSIX TZ string: its name, or the offset in <>.
_ZONE_NAME = re.compile(r"<([^>]+)>|([A-Za-z]{3,})")


def traces(varied: Variation, built_at_s: float) -> dict[str, tuple[re.Pattern, ...]]:
    """What each part of `varied` leaves in bytes a build wrote, for a build that ran about
    `built_at_s` (the request's time: within a day of the build's). The locale leaves none this
    can tell from the rest (month names, number formats) and is not traced."""
    zone = _ZONE_NAME.match(varied.time_zone)
    name = zone.group(1) or zone.group(2) if zone else varied.time_zone
    umask = int(varied.umask, 8)
    mode = "".join(letter if 0o666 & ~umask & bit else "-"
                   for letter, bit in zip("rwxrwxrwx", (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1)))
    moved = built_at_s + varied.clock_days * DAY_S
    years = sorted({time.gmtime(moved + shift).tm_year for shift in (-DAY_S, 0, DAY_S)})
    return {
        "time zone": (_token(name),),
        "umask": (re.compile(rf"(?<![\w-])-{re.escape(mode)}(?![\w-])"),),
        "clock": tuple(_token(str(year)) for year in years),
        "host name": (re.compile(rf"(?<![\w.-]){re.escape(varied.hostname)}(?![\w-])"),),
        "build path": (re.compile(rf"(?<![\w.-]){re.escape(varied.build_path)}(?![\w-])"),),
    }


def _token(text: str) -> re.Pattern:
    return re.compile(rf"(?<![\w+-]){re.escape(text)}(?![\w])")


def traced(part_traces: tuple[tuple[re.Pattern, ...], tuple[re.Pattern, ...]], lines: tuple[str, str]) -> bool:
    """Whether each side's differing bytes (`lines`) hold a trace of its own value of the part and
    none of the other side's: the part is then named a cause, not merely a suspect."""
    own = [any(pattern.search(text) for pattern in patterns) for patterns, text in zip(part_traces, lines)]
    other = [any(pattern.search(text) for pattern in patterns) for patterns, text in zip(part_traces[::-1], lines)]
    return all(own) and not any(other)
