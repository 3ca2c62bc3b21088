"""The codec's work for one request at n = 4, replayed from recorded frames.

The frames of tests/core/data/recorded_frames.json (votes all-to-all) stand
for one request's traffic at n = 4: each frame a node sends is signed
(`payload`) and written (`encode`, `json.dumps`); each frame a node takes in
is parsed (`json.loads`, `decode`) and verified (`payload`). Signatures
themselves are left out: they are the same work whatever the codec.

The replay runs in a child process with `--tree DIR` first on its path, so
the same frames measure another checkout's codec (any commit with
`pbft.messages.encode` and `decode`): alternating rounds give the CPU per
request of each. With valgrind installed, `--instructions` also counts the
instructions of the replay (callgrind), which, unlike CPU time, do not
depend on what else the machine is doing.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FRAMES = REPO_ROOT / "tests" / "core" / "data" / "recorded_frames.json"

# Frames one request makes at n = 4 with votes all-to-all: (sent, taken in), over all nodes.
PER_REQUEST = {"request": (1, 1), "preprepare": (1, 3), "prepare": (3, 9), "commit": (4, 12),
               "result": (4, 12), "reply": (4, 4)}

_REPLAY = r"""
import json, sys, time
frames_path, count, per_request = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
from pbft.messages import decode, encode
run = next(run for run in json.load(open(frames_path))["runs"] if not run["relay_votes"])
frames = {kind: [f for f in run["frames"] if json.loads(f)["type"] == kind] for kind in per_request}
work = []
for kind, (sent, taken) in per_request.items():
    messages = [decode(json.loads(f)) for f in frames[kind]]
    work += [("send", messages[i % len(messages)]) for i in range(sent)]
    work += [("take", frames[kind][i % len(frames[kind])]) for i in range(taken)]
def one_request():
    for what, item in work:
        if what == "send":
            item.payload(); json.dumps(encode(item))
        else:
            decode(json.loads(item)).payload()
one_request()
started = time.process_time()
for _ in range(count):
    one_request()
print((time.process_time() - started) * 1e6 / max(count, 1))
"""


def _replay(tree: Path, count: int, wrapper: list[str] = ()) -> subprocess.CompletedProcess:
    import json

    # One hash seed: string hashing and set order otherwise move the instruction count run to run.
    environment = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [*wrapper, sys.executable, "-c", _REPLAY, str(FRAMES), str(count), json.dumps(PER_REQUEST)],
        cwd=tree, env=environment, capture_output=True, text=True, check=True,
    )


def _instructions_per_request(tree: Path, count: int) -> float:
    """Callgrind's instruction count of `count` requests less that of none, per request."""
    totals = []
    with tempfile.TemporaryDirectory(prefix="pbft-ci-codec-") as scratch:
        for requests in (0, count):
            out = Path(scratch) / f"callgrind.{requests}"
            result = _replay(tree, requests, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
            totals.append(int(re.search(r"Collected : (\d+)", result.stderr).group(1)))
    return (totals[1] - totals[0]) / count


def codec(args) -> dict:
    trees = [REPO_ROOT, *(Path(tree).resolve() for tree in args.tree)]
    for tree in trees[1:]:
        if not (tree / "pbft" / "messages.py").is_file():
            raise SystemExit(f"--tree {tree}: no pbft/messages.py there")
    rounds = 1 if args.quick else args.rounds
    count = 200 if args.quick else 2000
    cpu_us: dict[str, list[float]] = {str(tree): [] for tree in trees}
    for round_index in range(rounds):
        for tree in trees if round_index % 2 == 0 else reversed(trees):
            cpu_us[str(tree)].append(float(_replay(tree, count).stdout))
    results = {}
    for tree, values in cpu_us.items():
        results[tree] = {"cpu_us_per_request": round(statistics.median(values), 1),
                         "min_us": round(min(values), 1), "max_us": round(max(values), 1)}
        if args.instructions:
            if shutil.which("valgrind") is None:
                raise SystemExit("--instructions needs valgrind (Debian's valgrind package)")
            # Counted, not timed: a few requests give the same count per request, and each runs
            # about fifty times slower under callgrind.
            counted = 20 if args.quick else 200
            results[tree]["instructions_per_request"] = round(_instructions_per_request(Path(tree), counted))
    return {"scenario": "codec", "rounds": rounds, "requests": count, "frames": str(FRAMES.relative_to(REPO_ROOT)),
            "results": results}


def codec_table(report: dict) -> str:
    rows = [
        f"codec: one request's frames at n = 4 (votes all-to-all) signed, written, parsed and verified, "
        f"{report['requests']} requests per round, {report['rounds']} rounds alternating",
        "",
        "| checkout | CPU µs per request (median) | min | max | instructions per request |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for tree, result in report["results"].items():
        instructions = result.get("instructions_per_request")
        rows.append(f"| {tree} | {result['cpu_us_per_request']:.1f} | {result['min_us']:.1f} | {result['max_us']:.1f} "
                    f"| {'—' if instructions is None else f'{instructions:,}'} |")
    return "\n".join(rows)
