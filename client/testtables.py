"""A build's tests, node by node: `GET /builds/{id}/tests`.

Each node that ran a build whose spec names `reports: {junit: [...]}` keeps the
outcomes it read (builder/workspace/testreports.py) and serves them to this
client's signed request (`GET /tests/{client}/{timestamp}`, node/artifactroute.py).
The table has a row per test and a column per node. A test with different outcomes
on different nodes in the same build (passed on one, failed on another) is marked
`differs`, listed first: the same commit and the same spec, so flaky, or made to
vary on one node.

What a node serves is its own word, signed (shared/testrecord.py): ids and outcomes as
the nodes' parser makes them, a digest that is the digest of those outcomes, and the
node's signature over that digest, this build and the commit the network agreed it
built. A node whose record fails any of these is set aside with the reason, not shown.
The table carries each node's statement and signature, so it is evidence anyone with
the network's public keys can check offline.

Each node's signed reply to the build (its result, `Result.tests`) names the digest of the
outcomes it read, so the reply the client keeps with the build's record holds the node to them
too: a node that serves outcomes other than those its reply named is set aside, and each node's
column says whether its reply vouches for it (`in_reply`).

A test that passed on some nodes and failed (or erred) on others is marked `flaky:
"proven"`, with the nodes on each side: each side's outcome is signed by its nodes,
so either the test's outcome depends on where it ran or a node signed an outcome it
did not read, and its signature names it. A node that lies about its tests shows in
its own column only; the verdict is the agreed one, whatever the table says.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from builder.reports.junit import MAX_NAME_CHARS, MAX_TESTS, OUTCOMES, outcomes_digest
from client.artifacts import ArtifactSource, NodeSkipped, artifact_source, node_json
from client.keys import RECORDS_KEY
from client.records import BuildRecords
from shared.crypto import PublicKey, parse_public_key
from shared.testrecord import verify_statement

MAX_RECORD_BYTES = 8 * 1024 * 1024  # MAX_TESTS ids of MAX_NAME_CHARS, and room to spare
MAX_PROBLEMS = 64
MAX_PROBLEM_CHARS = 2048
FAILED = ("failed", "error")


class Expected:
    """What a node's signed statement must name: itself, the build and the agreed commit; and
    the outcomes' digest its signed reply named (`replied`), if it named one."""

    def __init__(self, node: int, key: PublicKey, build: str, commit: str | None, replied: str | None = None):
        self.node, self.key, self.build, self.commit, self.replied = node, key, build, commit, replied


def checked(answer: dict, expected: Expected) -> dict:
    """A node's test record, if it is one and the node signed it: its tests, summary, digest,
    problems, statement and signature; NodeSkipped with why not."""
    tests = answer.get("tests")
    if not isinstance(tests, dict) or len(tests) > MAX_TESTS:
        raise NodeSkipped(f"sent no test outcomes, or more than {MAX_TESTS}")
    for test, outcome in tests.items():
        if not (test and len(test) <= MAX_NAME_CHARS and test.isprintable()) or outcome not in OUTCOMES:
            raise NodeSkipped("sent a test id or an outcome its reports cannot hold")
    if answer.get("digest") != outcomes_digest(tests):
        raise NodeSkipped("sent outcomes whose digest is not the one it names")
    problems = answer.get("problems")
    if not isinstance(problems, list) or len(problems) > MAX_PROBLEMS or not all(
            isinstance(problem, str) and len(problem) <= MAX_PROBLEM_CHARS for problem in problems):
        raise NodeSkipped("sent problems that are not a short list of lines")
    said = answer.get("statement")
    if not verify_statement(expected.key, said, answer.get("signature")):
        raise NodeSkipped("sent outcomes its key did not sign")
    if (said["node"], said["build"], said["digest"]) != (expected.node, expected.build, answer["digest"]) or (
            expected.commit is not None and said["commit"] != expected.commit):
        raise NodeSkipped("signed outcomes of another node, build, commit or digest")
    if expected.replied is not None and expected.replied != answer["digest"]:
        raise NodeSkipped(f"serves outcomes other than those its signed reply named ({expected.replied})")
    return {"tests": tests, "digest": answer["digest"], "problems": problems, "in_reply": expected.replied is not None,
            "statement": said, "signature": answer["signature"],
            "summary": {outcome: sum(1 for each in tests.values() if each == outcome) for outcome in OUTCOMES}}


async def _of_node(source: ArtifactSource, record: dict, node: int) -> dict:
    build = f"{record['client']}-{record['build_id']}"
    try:
        expected = Expected(node, parse_public_key(source.nodes[node].public_key), build,
                            (record.get("result") or {}).get("commit"), _replied(record, node))
        answer = await node_json(source, node, f"/tests/{record['client']}/{record['build_id']}", MAX_RECORD_BYTES)
        return checked(answer, expected)
    except NodeSkipped as skipped:
        return {"skipped": str(skipped)}


def _replied(record: dict, node: int) -> str | None:
    """The outcomes' digest node `node`'s reply to the build named, as the record keeps its
    replies (each one's signature checked as it came); None if it sent none that names one."""
    for reply in record.get("replies") or ():
        if reply.get("sender") == node and isinstance(reply.get("result"), dict):
            tests = reply["result"].get("tests")
            return tests if isinstance(tests, str) else None
    return None


def _row(test: str, outcomes: dict[str, str]) -> dict:
    row = {"test": test, "outcomes": outcomes, "differs": len(set(outcomes.values())) > 1}
    passed = sorted((node for node, outcome in outcomes.items() if outcome == "passed"), key=int)
    failed = sorted((node for node, outcome in outcomes.items() if outcome in FAILED), key=int)
    if passed and failed:
        row.update(flaky="proven", passed_on=passed, failed_on=failed)
    return row


async def tests_table(source: ArtifactSource, record: dict) -> dict:
    """Every node's outcomes of the build `record`, as one table (see the module's docstring)."""
    nodes = sorted(source.nodes)
    answers = dict(zip(nodes, await asyncio.gather(*(_of_node(source, record, node) for node in nodes))))
    by_test: dict[str, dict[str, str]] = {}
    for node, answer in answers.items():
        for test, outcome in (answer.get("tests") or {}).items():
            by_test.setdefault(test, {})[str(node)] = outcome
    rows = [_row(test, outcomes) for test, outcomes in by_test.items()]
    rows.sort(key=lambda row: (not row["differs"], row["test"]))
    return {
        "build_id": record["build_id"],
        "nodes": {str(node): {key: value for key, value in answer.items() if key != "tests"}
                  for node, answer in answers.items()},
        "tests": rows,
        "differing": [row["test"] for row in rows if row["differs"]],
    }


def keep_flaky(records: BuildRecords, record: dict, table: dict) -> None:
    """Keep the table's proven flaky tests for the repository's page (client.tables.flaky), if
    the build is a branch's: a pull request's author may write tests that flake on purpose."""
    if (record.get("request") or {}).get("operation", {}).get("pull_ref") is None:
        records.flaky.keep(record["repository"], int(record["build_id"]),
                           [row for row in table["tests"] if row.get("flaky") == "proven"])


async def serve_tests(request: web.Request, record: dict) -> web.Response:
    table = await tests_table(artifact_source(request.app), record)
    keep_flaky(request.app[RECORDS_KEY], record, table)
    return web.json_response(table)
