"""A build's tests, node by node: `GET /builds/{id}/tests`.

Each node that ran a build whose spec names `reports: {junit: [...]}` keeps the
outcomes it read (builder/workspace/testreports.py) and serves them to this
client's signed request (`GET /tests/{client}/{timestamp}`, node/artifactroute.py).
The table has a row per test and a column per node. A test with different outcomes
on different nodes in the same build (passed on one, failed on another) is marked
`differs`, listed first: the same commit and the same spec, so flaky, or made to
vary on one node.

What a node serves is its own word, checked only for shape: ids and outcomes as the
nodes' parser makes them, and a digest that is the digest of those outcomes (a node
whose digest does not match is set aside, not shown). A node that lies about its
tests shows in its own column only; the verdict is the agreed one, whatever the table
says.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from builder.reports.junit import MAX_NAME_CHARS, MAX_TESTS, OUTCOMES, outcomes_digest
from client.artifacts import ArtifactSource, NodeSkipped, artifact_source, node_json

MAX_RECORD_BYTES = 8 * 1024 * 1024  # MAX_TESTS ids of MAX_NAME_CHARS, and room to spare
MAX_PROBLEMS = 64
MAX_PROBLEM_CHARS = 2048


def checked(answer: dict) -> dict:
    """A node's test record, if it is one: its tests, summary, digest and problems; NodeSkipped
    with why not."""
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
    return {"tests": tests, "digest": answer["digest"], "problems": problems,
            "summary": {outcome: sum(1 for each in tests.values() if each == outcome) for outcome in OUTCOMES}}


async def _of_node(source: ArtifactSource, record: dict, node: int) -> dict:
    try:
        answer = await node_json(source, node, f"/tests/{record['client']}/{record['build_id']}", MAX_RECORD_BYTES)
        return checked(answer)
    except NodeSkipped as skipped:
        return {"skipped": str(skipped)}


async def tests_table(source: ArtifactSource, record: dict) -> dict:
    """Every node's outcomes of the build `record`, as one table (see the module's docstring)."""
    nodes = sorted(source.nodes)
    answers = dict(zip(nodes, await asyncio.gather(*(_of_node(source, record, node) for node in nodes))))
    by_test: dict[str, dict[str, str]] = {}
    for node, answer in answers.items():
        for test, outcome in (answer.get("tests") or {}).items():
            by_test.setdefault(test, {})[str(node)] = outcome
    rows = [{"test": test, "outcomes": outcomes, "differs": len(set(outcomes.values())) > 1}
            for test, outcomes in by_test.items()]
    rows.sort(key=lambda row: (not row["differs"], row["test"]))
    return {
        "build_id": record["build_id"],
        "nodes": {str(node): {key: value for key, value in answer.items() if key != "tests"}
                  for node, answer in answers.items()},
        "tests": rows,
        "differing": [row["test"] for row in rows if row["differs"]],
    }


async def serve_tests(request: web.Request, record: dict) -> web.Response:
    return web.json_response(await tests_table(artifact_source(request.app), record))
