"""`pbft-ci`'s commands (cli/__init__.py): each reads or asks the client, prints what it said in
lines a person reads and a script can split, and exits 0 when done (for `run --wait`, when the
build passed), 1 when the build did not pass or the client refused, 2 on a usage error or when
the client did not answer."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from cli.api import Api, ApiError

DEFAULT_URL = "http://localhost:8080"
# How long the client may take to answer a run: it answers with the verdict (client_deadline_s).
RUN_TIMEOUT_S = 900.0
POLL_S = 1.0
PASSED = ("success", "skipped")


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:
        # Offline, with the network's public keys alone: the same check as `client/index.py verify`,
        # whose options it takes as they are.
        from client.verify import verify

        return verify(argv[1:], prog="pbft-ci verify")
    if argv[:1] == ["log-monitor"]:
        from client.logmonitor import main as log_monitor  # the nodes' heads, with the public keys alone

        return log_monitor(argv[1:], prog="pbft-ci log-monitor")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "lint":
        from scripts.lint import main as lint  # the nodes' own reading, PyYAML and nothing more

        return lint([*map(str, args.paths), *(["--matrix"] if args.matrix else [])])
    api = Api(args.url or os.environ.get("PBFT_CI_URL") or DEFAULT_URL,
              args.token or os.environ.get("PBFT_CI_TOKEN") or None)
    try:
        return COMMANDS[args.command](api, args, out)
    except ApiError as error:
        print(f"pbft-ci {args.command}: {error}", file=sys.stderr)
        return 2 if error.status == 0 else 1


def run(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    body = {"repository": args.repository, "branch": args.branch, **({"commit": args.commit} if args.commit else {})}
    if args.input:
        body["inputs"] = dict(args.input)
    verdict = api.post("/webHook", body, timeout_s=RUN_TIMEOUT_S)
    out(_verdict_line(verdict))
    builds = verdict.get("matrix") or []
    for build in builds:
        out(f"build {build['build_id']} {build['combination']}: started")
    if not args.wait:
        return 0
    if not builds:
        return 0 if verdict.get("status") in PASSED else 1
    return _follow_matrix(api, verdict["build_id"], [build["build_id"] for build in builds], out)


def _follow_matrix(api: Api, matrix_id: str, started: list[str], out: Callable[[str], None]) -> int:
    """Each combination's build to its verdict, those the client starts later too (the spec's
    max_parallel), until none is left to start (every combination started, or fail_fast
    stopped the matrix): 0 if every one passed."""
    said: set[str] = set()
    while True:
        for build_id in started:
            if build_id not in said:
                record = _settled(api, build_id)
                out(_record_line(record))
                said.add(build_id)
        matrix = api.get(f"/builds/{matrix_id}")
        built, result = matrix["matrix_builds"], matrix["result"] or {}
        failed = any(build["state"] != "pending" and build["status"] not in PASSED for build in built)
        if {build["build_id"] for build in built} <= said and (
                len(built) >= len(result.get("combinations", ())) or (result.get("fail_fast") and failed)):
            return 1 if failed or len(built) < len(result.get("combinations", ())) else 0
        started = [build["build_id"] for build in built]
        if not set(started) - said:
            time.sleep(POLL_S)  # the next combination is yet to start


def status(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    record = api.get(f"/builds/{args.build}")
    out(_record_line(record))
    for build in record.get("matrix_builds") or []:
        out(f"  build {build['build_id']} {build['combination']}: {build['status'] or build['state']}")
    return 0


def logs(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    path = f"/builds/{args.build}/log"
    if not args.follow:
        out(api.text(path, node=str(args.node)).rstrip("\n"))
        return 0
    for event in api.events(path, node=str(args.node)):
        if event.name == "output":
            out(event.data)
        elif event.name in ("end", "limit", "error"):
            if event.name != "end":
                out(f"== {event.name}: {event.data}")
            return 0 if event.name == "end" else 1
    return 1


def tests(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Each node's test outcomes (GET /builds/{id}/tests): a tab-separated row per test, a column
    per node, those whose outcome differs between nodes first and marked; exit 1 if any differs.
    `--evidence FILE` writes the whole table, each node's signed statement included (JSON)."""
    table = api.get(f"/builds/{args.build}/tests")
    if args.evidence:
        Path(args.evidence).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    nodes = list(table["nodes"])
    out("\t".join(["test", *(f"node {node}" for node in nodes)]))
    for row in table["tests"]:
        mark = "  (differs between nodes)" if row["differs"] else ""
        if row.get("flaky") == "proven":
            mark = (f"  (proven flaky: passed on node {', '.join(row['passed_on'])}, failed on node "
                    f"{', '.join(row['failed_on'])}; each signed)")
        out("\t".join([row["test"], *(row["outcomes"].get(node, "-") for node in nodes)]) + mark)
    for node in nodes:
        said = table["nodes"][node]
        if said.get("skipped") or said.get("problems"):
            out(f"node {node}: {said.get('skipped') or '; '.join(said['problems'])}")
    return 1 if table["differing"] else 0


def flaky(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """A repository's tests proven flaky in its branch builds (GET /repositories/{name}/flaky),
    most often first: a tab-separated row each."""
    answer = api.get(f"/repositories/{quote(args.repository, safe='')}/flaky")
    out("test\tbuilds\tlast build\tfailed on")
    for test in answer["tests"]:
        nodes = ", ".join(f"node {node} ×{count}" for node, count in sorted(test["failed_on"].items(),
                                                                          key=lambda item: int(item[0])))
        out(f"{test['test']}\t{test['builds']}\t{test['last_build']}\t{nodes}")
    return 0


def cancel(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    answer = api.post(f"/builds/{args.build}/cancel")
    out(f"build {answer['build_id']}: cancel asked (request {answer['cancel_id']})")
    return 0


def rerun(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.failed:
        answer = api.post(f"/builds/{args.build}/rerun-failed")
        for build in answer["reruns"]:
            out(f"build {build['build_id']} {build['combination']}: runs build {build['rerun_of']} again")
        return 0
    answer = api.post(f"/builds/{args.build}/rerun")
    out(f"build {answer['build_id']}: runs build {args.build} again")
    return 0


def approve(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.action is not None:  # a deploy that waits: ARG is its build
        answer = api.post(f"/builds/{args.approval}/actions/{quote(args.action, safe='')}/approve")
        again = " (approved before)" if answer["already_approved"] else ""
        out(f"build {args.approval}: action {args.action} approved by approval {answer['approval_id']}{again}")
        return 0
    answer = api.post(f"/approvals/{args.approval}/approve")
    out(f"approval {args.approval}: approved, build {answer['build_id']}")
    return 0


COMMANDS = {"run": run, "status": status, "logs": logs, "tests": tests, "flaky": flaky, "cancel": cancel,
            "rerun": rerun, "approve": approve}


def _settled(api: Api, build_id: str) -> dict:
    while True:
        record = api.get(f"/builds/{build_id}")
        if record["state"] != "pending":
            return record
        time.sleep(POLL_S)


def _passed(record: dict) -> bool:
    return record["state"] == "accepted" and (record.get("result") or {}).get("status") in PASSED


def _verdict_line(verdict: dict) -> str:
    said = f"build {verdict['build_id']}: {verdict.get('status')}"
    if verdict.get("reason"):
        said += f" ({verdict['reason']})"
    return said + (f", commit {verdict['commit']}" if verdict.get("commit") else "")


def _record_line(record: dict) -> str:
    result = record.get("result") or {}
    label = f" {record['combination']}" if record.get("combination") else ""
    said = f"build {record['build_id']}{label}: {record['state']}"
    if result.get("status"):
        said += f" {result['status']}"
    if result.get("reason"):
        said += f" ({result['reason']})"
    return said + (f", commit {result['commit']}" if result.get("commit") else "")


def _input(text: str) -> tuple[str, str]:
    """`target=production`: the client and then every node check the name and the value."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbft-ci", description="Ask a pbft-ci client for builds and read them.")
    parser.add_argument("--url", help=f"the client's URL ($PBFT_CI_URL, else {DEFAULT_URL})")
    parser.add_argument("--token", help="a bearer token of the client's ($PBFT_CI_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="build a branch (or a commit of it) and print the verdict")
    run_parser.add_argument("repository")
    run_parser.add_argument("branch")
    run_parser.add_argument("--commit", help="a commit of the branch, pinned")
    run_parser.add_argument("--input", action="append", type=_input, default=[], metavar="NAME=VALUE",
                            help="a value of the spec's inputs: (repeatable); the build sees CI_INPUT_<NAME>")
    run_parser.add_argument("--wait", action="store_true",
                            help="exit 0 only if the build passed (a matrix: once each combination has)")
    for name, text in (("status", "a build's verdict so far"), ("cancel", "stop a build without a verdict")):
        commands.add_parser(name, help=text).add_argument("build")
    tests_parser = commands.add_parser("tests", help="each node's test outcomes, those that differ between nodes first")
    tests_parser.add_argument("build")
    tests_parser.add_argument("--evidence", metavar="FILE", help="write the table with each node's signed statement")
    commands.add_parser("flaky", help="a repository's tests proven flaky, most often first").add_argument("repository")
    logs_parser = commands.add_parser("logs", help="one node's output for a build")
    logs_parser.add_argument("build")
    logs_parser.add_argument("--node", type=int, default=0, help="whose output (default 0): never merged")
    logs_parser.add_argument("--follow", action="store_true", help="as it is written, to the build's end")
    rerun_parser = commands.add_parser("rerun", help="build again what a build built")
    rerun_parser.add_argument("build")
    rerun_parser.add_argument("--failed", action="store_true", help="a matrix's combinations that did not pass")
    approve_parser = commands.add_parser("approve", help="let a fork's pull request build, or a deploy run")
    approve_parser.add_argument("approval", help="a pull request's approval id; with --action, a build's id")
    approve_parser.add_argument("--action", help="the build's deploy that waits for an approval, by its name")
    # Listed for --help only: main() hands `verify` and its options to client/index.py's check.
    commands.add_parser("verify", help="check a certificate, attestation, provenance or log head offline (see verify -h)")
    commands.add_parser("log-monitor", help="watch every node's verdict log heads (see log-monitor -h)")
    lint_parser = commands.add_parser("lint", help="check specs with the nodes' own rules, offline")
    lint_parser.add_argument("paths", nargs="*", default=[".pbft-ci.yml"])
    lint_parser.add_argument("--matrix", action="store_true", help="each combination of a matrix too")
    return parser
