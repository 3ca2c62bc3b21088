"""A matrix through the client, against fake nodes: a certified `matrix` verdict starts one
build per combination, each pinned to its commit and naming its combination; the records
group them under the build that expanded; each has a commit status of its own context."""

import asyncio
import json

import pytest

from client.events import Finished
from client.keys import SERVICE_KEY
from client.outcome import Accepted, Verdict
from client.verbs.rerun import NothingToRerun, failed_of
from pbft.build import Actor, Operation
from pbft.wire import decode_struct
from tests.client.fake_nodes import MATRIX, N, honest_result, post, start_client
from tests.client.forge_deliveries import settled
from tests.client.status_api import PUBLIC_URL, with_statuses

BRANCH = "matrix/ci"
COMMIT = honest_result(BRANCH).commit
LABELS = ["PYTHON=3.11,DB=sqlite", "PYTHON=3.12,DB=sqlite", "PYTHON=fail"]


def operations(cluster) -> list[Operation]:
    return [request.operation for _view, request in sorted(cluster.committed.values(), key=lambda v: v[1].timestamp)]


async def test_a_matrix_verdict_starts_one_build_per_combination_grouped_under_it(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    status, answer = await post(client, {"branch": BRANCH})

    assert status == 200
    assert (answer["status"], answer["commit"], answer["reason"]) == (
        "matrix", COMMIT, "the spec's matrix expands into 3 builds")
    assert [started["combination"] for started in answer["matrix"]] == LABELS
    ids = [started["build_id"] for started in answer["matrix"]]
    assert [started["status_url"] for started in answer["matrix"]] == [
        f"http://127.0.0.1:1/builds/{build_id}" for build_id in ids]
    children = [await settled(client, build_id) for build_id in ids]
    # The parent's request again, its commit pinned to what the expansion was certified for,
    # asked for by whoever asked for the parent.
    actor = Actor("machine", "ci")
    assert operations(cluster) == [Operation("example", BRANCH, event="manual", actor=actor)] + [
        Operation("example", BRANCH, COMMIT, event="manual", combination=combination, actor=actor)
        for combination in MATRIX]
    assert [decode_struct(Operation, child["request"]["operation"]).combination for child in children] == list(MATRIX)
    assert [(child["matrix_of"], child["combination"], child["state"], child["result"]["status"])
            for child in children] == [
        (answer["build_id"], LABELS[0], "accepted", "success"), (answer["build_id"], LABELS[1], "accepted", "success"),
        (answer["build_id"], LABELS[2], "accepted", "failure")]

    parent = await (await client.get(f"/builds/{answer['build_id']}")).json()
    assert (parent["result"]["status"], parent["matrix"], parent["matrix_of"]) == ("matrix", ids, None)
    assert parent["result"]["combinations"] == [[list(pair) for pair in combination] for combination in MATRIX]
    assert parent["matrix_builds"] == [
        {"build_id": ids[0], "combination": LABELS[0], "state": "accepted", "status": "success"},
        {"build_id": ids[1], "combination": LABELS[1], "state": "accepted", "status": "success"},
        {"build_id": ids[2], "combination": LABELS[2], "state": "accepted", "status": "failure"},
    ]
    listed = (await (await client.get("/builds")).json())["builds"]
    assert [(build["build_id"], build["matrix_of"], build["matrix"], build["combination"]) for build in listed] == [
        (ids[2], answer["build_id"], [], LABELS[2]), (ids[1], answer["build_id"], [], LABELS[1]),
        (ids[0], answer["build_id"], [], LABELS[0]), (answer["build_id"], None, ids, None)]


async def test_rerun_failed_runs_again_only_the_combinations_that_did_not_pass(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    _, answer = await post(client, {"branch": BRANCH})
    parent, ids = answer["build_id"], [started["build_id"] for started in answer["matrix"]]
    for build_id in ids:
        await settled(client, build_id)

    response = await client.post(f"/builds/{parent}/rerun-failed")

    assert response.status == 202
    started = await response.json()
    assert started["build_id"] == parent
    assert [(rerun["rerun_of"], rerun["combination"]) for rerun in started["reruns"]] == [(ids[2], LABELS[2])]
    rerun = await settled(client, started["reruns"][0]["build_id"])
    assert (rerun["combination"], rerun["result"]["status"]) == (LABELS[2], "failure")
    assert decode_struct(Operation, rerun["request"]["operation"]) == Operation(
        "example", BRANCH, COMMIT, event="manual", combination=MATRIX[2], actor=Actor("machine", "ci"))
    failed = await (await client.get(f"/builds/{ids[2]}")).json()
    assert failed["reruns"] == [started["reruns"][0]["build_id"]]

    # Nothing to run again: a build that is no matrix, or whose combinations all passed.
    single = (await post(client, {"branch": "main"}))[1]["build_id"]
    refused = await client.post(f"/builds/{single}/rerun-failed")
    assert (refused.status, (await refused.json())["error"]) == (
        409, f"build {single} expanded into no matrix: run it again whole (POST /builds/{single}/rerun)")
    passed = {"matrix_builds": [{"build_id": ids[0], "state": "accepted", "status": "success"}], "build_id": "9"}
    with pytest.raises(NothingToRerun, match="no combination of build 9 failed"):
        failed_of(passed, lambda build_id: None)
    # A combination whose last run again has no verdict yet is not started a third time.
    running = {"matrix_builds": [{"build_id": "5", "state": "accepted", "status": "failure"}], "build_id": "9"}
    records = {5: {"build_id": "5", "reruns": ["6"]}, 6: {"state": "pending"}}
    with pytest.raises(NothingToRerun, match="the failed combinations of build 9 are running again already"):
        failed_of(running, records.get)


async def test_a_build_that_is_not_a_matrix_starts_nothing_more(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    status, answer = await post(client, {"branch": "main"})
    await asyncio.sleep(0.2)

    assert (status, answer["status"], "matrix" in answer) == (200, "success", False)
    assert len(cluster.committed) == 1
    record = await (await client.get(f"/builds/{answer['build_id']}")).json()
    assert (record["matrix"], record["matrix_builds"], record["matrix_of"], record["combination"]) == ([], [], None, None)


async def test_each_combination_has_a_status_context_and_the_expansion_s_waits_for_them_all(
    cluster, status_server, aiohttp_client
):
    with_statuses(cluster, status_server)
    cluster.delay_s.update({i: 0.3 for i in range(N)})  # long enough for each pending to be posted
    client = await start_client(aiohttp_client, cluster)

    status, answer = await post(client, {"branch": BRANCH, "commit": COMMIT})
    assert status == 200
    contexts = ["pbft-ci"] + [f"pbft-ci/{label}" for label in LABELS]

    async with asyncio.timeout(10):
        while not all(_states(status_server, context)[-1:] not in ([], ["pending"]) for context in contexts):
            await asyncio.sleep(0.02)

    assert {call.path for call in status_server.calls} == {f"/repos/octo/example/statuses/{COMMIT}"}
    ids = [started["build_id"] for started in answer["matrix"]]
    for context, build_id, final in zip(contexts[1:], ids, ["success", "success", "failure"]):
        assert _states(status_server, context) == ["pending", final]
        # Pending links the build's page; the accepted verdict its certificate.
        assert [call.body["target_url"] for call in _calls(status_server, context)] == [
            f"{PUBLIC_URL}/builds/{build_id}", f"{PUBLIC_URL}/builds/{build_id}/certificate"]
    # Pending from the submission, then until each combination has its verdict; then theirs together.
    expansion = _calls(status_server, "pbft-ci")
    assert [call.body["state"] for call in expansion][0] == "pending" and expansion[-1].body["state"] == "failure"
    assert "matrix of 3 builds, each with a status of its own" in " ".join(call.body["description"] for call in expansion)
    assert expansion[-1].body["description"] == "matrix of 3 builds: 1 failure, 2 success"
    # The summary of several verdicts has no one certificate: it links the page that lists them.
    assert {call.body["target_url"] for call in expansion} == {f"{PUBLIC_URL}/builds/{answer['build_id']}"}


@pytest.mark.parametrize("settings, state", [({}, "pending"), ({"skipped_passes": True}, "success")])
async def test_a_matrix_whose_combinations_were_all_skipped_is_no_pass_of_its_own(
    cluster, status_server, aiohttp_client, settings, state
):
    with_statuses(cluster, status_server, **settings)
    client = await start_client(aiohttp_client, cluster)
    branch = "matrix-skip/ci"

    status, answer = await post(client, {"branch": branch, "commit": honest_result(branch).commit})
    assert status == 200
    # The poster's workers send statuses in no fixed order: wait for each one asserted below.
    async with asyncio.timeout(10):
        while not (any(call.body["description"] == "matrix of 3 builds: 3 skipped"
                       for call in _calls(status_server, "pbft-ci"))
                   and all(len(_states(status_server, f"pbft-ci/{label}")) >= 2 for label in LABELS)):
            await asyncio.sleep(0.02)

    # Nothing was built: the expansion's status is a skipped build's, as each combination's is.
    assert _calls(status_server, "pbft-ci")[-1].body["state"] == state
    for label in LABELS:
        assert _states(status_server, f"pbft-ci/{label}") == ["pending", state]


def _calls(server, context: str) -> list:
    return [call for call in server.calls if call.body["context"] == context]


def _states(server, context: str) -> list[str]:
    return [call.body["state"] for call in _calls(server, context)]


def test_the_records_file_keeps_the_grouping_across_a_restart(tmp_path):
    from client.records import BuildRecords
    from pbft.messages import Request

    records = BuildRecords(tmp_path / "builds.sqlite")
    parent = Request("ci", 10, Operation("example", BRANCH))
    child = Request("ci", 11, Operation("example", BRANCH, COMMIT, combination=MATRIX[0]))
    records.builds.add_pending(parent, submitted_at=0)
    records.builds.add_pending(child, submitted_at=0)
    records.builds.link_matrix(11, matrix_of=10)
    records.close()

    again = BuildRecords(tmp_path / "builds.sqlite")
    expansion, combination = again.builds.get(10), again.builds.get(11)
    assert (expansion["matrix"], combination["matrix_of"], combination["combination"]) == (["11"], "10", LABELS[0])
    assert json.loads(json.dumps(again.builds.get(10)["matrix_builds"])) == [
        {"build_id": "11", "combination": LABELS[0], "state": "pending", "status": None}]


async def matrix_builds_when(client, build_id: str, condition) -> list[dict]:
    """The matrix's builds, once `condition` holds of them."""
    async with asyncio.timeout(5):
        while True:
            built = (await (await client.get(f"/builds/{build_id}")).json())["matrix_builds"]
            if condition(built):
                return built
            await asyncio.sleep(0.02)


async def test_fail_fast_the_first_combination_that_fails_cancels_the_others_through_the_order(
        cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)

    status, answer = await post(client, {"branch": "hold-matrix-fail-fast"})
    assert status == 200 and [started["combination"] for started in answer["matrix"]] == LABELS
    ids = [int(started["build_id"]) for started in answer["matrix"]]
    cluster.release(ids[2])  # PYTHON=fail fails while the two others still build

    built = await matrix_builds_when(client, answer["build_id"], lambda built: all(
        build["state"] != "pending" for build in built))

    assert [(build["combination"], build["status"]) for build in built] == [
        (LABELS[0], "cancelled"), (LABELS[1], "cancelled"), (LABELS[2], "failure")]
    cancels = sorted(operation.cancels for operation in operations(cluster) if operation.cancels is not None)
    assert cancels == ids[:2]  # one cancel each, ordered: every node stops them at one point of the order


async def test_max_parallel_runs_one_combination_at_a_time_in_order_and_a_restart_goes_on(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    service = client.server.app[SERVICE_KEY]

    status, answer = await post(client, {"branch": "hold-matrix-parallel"})
    assert status == 200 and [started["combination"] for started in answer["matrix"]] == LABELS[:1]
    first = int(answer["matrix"][0]["build_id"])
    cluster.release(first)
    built = await matrix_builds_when(client, answer["build_id"], lambda built: len(built) == 2)
    assert [(build["combination"], build["state"]) for build in built] == [
        (LABELS[0], "accepted"), (LABELS[1], "pending")]

    # What a client that stopped between a combination's verdict and the next start finds: the
    # records say one is due, and its restart starts it.
    service.events._observers.remove((service.verbs.matrices.observe, False))
    cluster.release(int(built[1]["build_id"]))
    await settled(client, built[1]["build_id"])
    assert len((await (await client.get(f"/builds/{answer['build_id']}")).json())["matrix_builds"]) == 2
    service.verbs.resume.start()
    built = await matrix_builds_when(client, answer["build_id"], lambda built: len(built) == 3)
    assert [build["combination"] for build in built] == LABELS
    service.verbs.resume.start()  # nothing more is due: nothing starts twice
    cluster.release(int(built[2]["build_id"]))
    built = await matrix_builds_when(client, answer["build_id"], lambda built: all(
        build["state"] != "pending" for build in built))
    assert [build["status"] for build in built] == ["success", "success", "failure"]
    assert [operation.combination for operation in operations(cluster) if operation.combination] == list(MATRIX)


@pytest.mark.parametrize("branch, final", [
    ("hold-matrix-parallel", "matrix of 3 builds: 1 failure, 2 success"),
    ("hold-matrix-fail-fast", "matrix of 3 builds: 2 cancelled, 1 failure"),
])
async def test_the_expansions_status_waits_for_combinations_started_later_and_ends_when_fail_fast_stops(
    cluster, status_server, aiohttp_client, branch, final
):
    with_statuses(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)
    commit = honest_result(branch).commit

    status, answer = await post(client, {"branch": branch, "commit": commit})
    assert status == 200
    released: set[int] = set()
    async with asyncio.timeout(10):
        while not (_states(status_server, "pbft-ci")[-1:] not in ([], ["pending"])):
            # The failing combination first: a fail_fast matrix stops there, a max_parallel one goes on.
            built = (await (await client.get(f"/builds/{answer['build_id']}")).json())["matrix_builds"]
            for build in sorted(built, key=lambda build: build["combination"] != LABELS[2]):
                if build["state"] == "pending" and int(build["build_id"]) not in released:
                    released.add(int(build["build_id"]))
                    cluster.release(int(build["build_id"]))
                    break
            await asyncio.sleep(0.02)

    expansion = _calls(status_server, "pbft-ci")
    assert all(call.body["state"] == "pending" for call in expansion[:-1]), expansion
    assert expansion[-1].body["description"] == final


async def test_the_expansions_own_verdict_goes_on_with_a_combination_that_ended_before_it_was_recorded(
        cluster, aiohttp_client):
    client = await start_client(aiohttp_client, cluster)
    service = client.server.app[SERVICE_KEY]
    _, answer = await post(client, {"branch": "hold-matrix-parallel"})
    matrices = service.verbs.matrices
    service.events._observers.remove((matrices.observe, False))
    cluster.release(int(answer["matrix"][0]["build_id"]))
    await settled(client, answer["matrix"][0]["build_id"])  # its verdict went unobserved

    parent = decode_struct(Operation, (await (await client.get(f"/builds/{answer['build_id']}")).json())[
        "request"]["operation"])
    expansion = Accepted(honest_result("hold-matrix-parallel"), [0, 1])
    matrices.observe(Finished(parent, Verdict(answer["build_id"], expansion, [], 5)))

    built = await matrix_builds_when(client, answer["build_id"], lambda built: len(built) == 2)
    assert [build["combination"] for build in built] == LABELS[:2]
