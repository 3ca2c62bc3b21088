"""The performance targets pbft-ci holds itself to, checked against a run's reports.

Nothing here fails a run: a machine shared with other work misses targets
that a quiet one meets, so the table says what was measured and lets the
reader judge (a --quick run's numbers mean nothing).
"""

from __future__ import annotations

from typing import Callable

# (scenario, target, goal, measured value from the report or None, whether it is met)
Target = tuple[str, str, str, Callable[[dict], float | None], Callable[[float], bool]]


def _best_throughput(report: dict) -> float:
    return max(result["median"] for result in report["results"].values())


def _overhead_s(report: dict) -> float | None:
    overhead = report.get("node_overhead_ms")
    return None if overhead is None else overhead["median"] / 1000


TARGETS: list[Target] = [
    ("consensus", "consensus overhead p50, n = 4", "<= 10 ms",
     lambda r: r["results"].get("4", {}).get("p50_ms"), lambda v: v <= 10),
    ("consensus", "consensus overhead p50, n = 16", "<= 40 ms",
     lambda r: r["results"].get("16", {}).get("p50_ms"), lambda v: v <= 40),
    ("throughput", "ordered requests/s, n = 4 (best in-flight count)", ">= 1000",
     _best_throughput, lambda v: v >= 1000),
    ("idle", "first request after idle / warm one", "<= 1.2x",
     lambda r: r["after_idle_over_warm"], lambda v: v <= 1.2),
    ("memory", "node RSS growth, 1,000 -> 10,000 requests", "<= 10 %",
     lambda r: r["max_growth"] * 100, lambda v: v <= 10),
    ("build", "webhook -> verdict / four plain runs at once", "<= 1.15x",
     lambda r: r["over_plain_x4"], lambda v: v <= 1.15),
    ("build", "node overhead per build, p50", "<= 0.25 s", _overhead_s, lambda v: v <= 0.25),
    ("build", "Dockerfile: webhook -> verdict / four plain builds and runs at once", "< 1x",
     lambda r: r.get("dockerfile", {}).get("over_plain_x4"), lambda v: v < 1),
    ("build", "Dockerfile: webhook -> verdict / one plain build and run", "<= 1.1x",
     lambda r: r.get("dockerfile", {}).get("over_plain"), lambda v: v <= 1.1),
    ("build", "Dockerfile, builders: f+1: webhook -> verdict / one plain build and run", "<= 1.1x",
     lambda r: r.get("dockerfile_f1", {}).get("over_plain"), lambda v: v <= 1.1),
    ("large-repo", "webhook -> verdict / four plain runs at once", "<= 0.5x",
     lambda r: r["over_plain_x4"], lambda v: v <= 0.5),
    ("large-repo", "node overhead per build, p50", "<= 5 s", _overhead_s, lambda v: v <= 5),
    ("concurrent", "20 webhooks at once / 20 in a row", "<= 0.6x",
     lambda r: r["concurrent_over_sequential"], lambda v: v <= 0.6),
]


def targets_table(reports: list[dict], quick: bool) -> str:
    """The table of the targets the run's scenarios measure; empty when they measure none."""
    by_scenario = {report["scenario"]: report for report in reports}
    if not any(scenario in by_scenario for scenario, *_ in TARGETS):
        return ""
    rows = [
        "targets" + (" (a --quick run: these numbers say nothing)" if quick else ""),
        "",
        "| target | goal | measured | met |",
        "| --- | --- | ---: | --- |",
    ]
    for scenario, name, goal, measure, met in TARGETS:
        if scenario not in by_scenario:
            continue
        value = measure(by_scenario[scenario])
        shown = "n/a" if value is None else f"{value:g}"
        verdict = "n/a" if value is None else ("yes" if met(value) else "no")
        rows.append(f"| {name} | {goal} | {shown} | {verdict} |")
    return "\n".join(rows)
