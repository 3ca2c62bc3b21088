"""Flaky steps: a step that passed on some nodes and failed on others, or passed only on a
retry, is named with the nodes on each side, in a build's record and in a dispute's reason."""

import asyncio

from client.outcome import disputed_reason
from pbft.build import Result, StepResult, flaky_steps
from tests.client.fake_nodes import N, post


def pipeline(node_test_status: str, exit_code: int, attempts=()) -> Result:
    test = StepResult("test", node_test_status, exit_code, 10, attempts=attempts)
    status = "success" if node_test_status == "success" else "failure"
    return Result(status, exit_code, "c" * 40, steps=(StepResult("lint", "success", 0, 5), test))


def test_a_step_that_passed_on_some_nodes_and_failed_on_others_is_flaky_with_the_nodes_named():
    results = {0: pipeline("success", 0), 1: pipeline("success", 0, attempts=(2,)), 2: pipeline("failure", 2),
               3: pipeline("timeout", None)}
    (step,) = flaky_steps(results)
    assert (step.name, step.passed_on, step.failed_on, step.retried_on) == ("test", (0, 1), (2, 3), (1,))
    assert step.describe() == "step 'test' flaky: failed on nodes 2, 3, passed on nodes 0, 1, retried on node 1"
    # The dispute's reason says it after who said what.
    assert disputed_reason(results) == (
        "nodes 0, 1: success (exit 0); node 2: failure (exit 2); node 3: failure; " + step.describe())


def test_agreeing_nodes_are_not_flaky_unless_one_needed_a_retry():
    assert flaky_steps({node: pipeline("failure", 1) for node in range(4)}) == ()
    (retried,) = flaky_steps({0: pipeline("success", 0), 1: pipeline("success", 0, attempts=(1, 1))})
    assert (retried.failed_on, retried.retried_on) == ((), (1,))


async def test_a_build_whose_step_failed_on_one_node_only_shows_the_step_as_flaky_with_that_node(client):
    _, verdict = await post(client, {"branch": "flaky-pipeline"})
    assert verdict["status"] == "success"
    async with asyncio.timeout(5):
        while True:  # node 3's dissenting reply may come after the verdict
            build = await (await client.get(f"/builds/{verdict['build_id']}")).json()
            if len(build["replied_by"]) == N:
                break
            await asyncio.sleep(0.02)
    assert build["flaky"] == [{"step": "test", "passed_on": [0, 1, 2], "failed_on": [3], "retried_on": [1, 3]}]
    assert [entry["node"] for entry in build["dissent"]] == [3]
