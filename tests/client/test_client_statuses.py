"""Commit statuses, posted to a local aiohttp server that records every call.

The poster is tested on its own with short backoffs; the whole path (webhook
→ service → statuses) runs against the fake nodes of test_client_app.
"""

import asyncio
import logging
import time
import types

import aiohttp
import pytest

from client.events import Finished
from client.outcome import Accepted, Verdict
from client.statuses import CommitStatuses
from pbft.build import Operation, Result
from pbft.deliveries import duplicate_result
from shared import statuses
from shared.statuses import CommitStatus, StatusPoster
from tests.client.fake_nodes import CLIENT, N, honest_result, post, start_client
from tests.client.status_api import PUBLIC_URL, TOKEN, StatusServer, with_statuses


PINNED = "a" * 40


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


def status(server: StatusServer, sha: str, state: str = "success") -> CommitStatus:
    return CommitStatus(
        url=f"{server.base_url}/repos/octo/example/statuses/{sha}",
        token=TOKEN,
        state=state,
        context="pbft-ci",
        description=f"build {state}",
        target_url="http://127.0.0.1:1/builds/1",
        build_id="1",
    )


def fast_poster(session, **kwargs) -> StatusPoster:
    options = {"first_backoff_s": 0.05, "max_attempts": 5, "call_timeout_s": 2.0} | kwargs
    poster = StatusPoster(session, **options)
    poster.start()
    return poster


async def test_retries_after_server_errors_with_growing_backoff(status_server, session, caplog):
    caplog.set_level(logging.DEBUG)
    status_server.script[PINNED] = [500, 502, 201]
    poster = fast_poster(session)

    assert poster.post(status(status_server, PINNED))
    await status_server.wait_for_calls(3)
    await poster.close(1.0)

    calls = status_server.calls
    assert len(calls) == 3
    assert calls[1].at_s - calls[0].at_s >= 0.05 and calls[2].at_s - calls[1].at_s >= 0.1
    assert "posted status success" in caplog.text
    assert TOKEN not in caplog.text


async def test_429_and_timeouts_are_retried(status_server, session):
    status_server.script[PINNED] = [429, 201]
    poster = fast_poster(session, call_timeout_s=0.2)

    poster.post(status(status_server, PINNED))
    await status_server.wait_for_calls(2)
    status_server.delay_s = 1.0  # every call from now on times out
    poster.post(status(status_server, "b" * 40))
    await status_server.wait_for_calls(4)
    await poster.close(0.1)

    assert len(status_server.calls_for(PINNED)) == 2
    assert len(status_server.calls_for("b" * 40)) >= 2


async def test_client_errors_other_than_429_are_not_retried(status_server, session, caplog):
    status_server.script[PINNED] = [403]
    poster = fast_poster(session)

    poster.post(status(status_server, PINNED))
    await status_server.wait_for_calls(1)
    await asyncio.sleep(0.3)  # longer than the first three backoffs together
    await poster.close(1.0)

    assert len(status_server.calls) == 1
    assert "HTTP 403 (not retried)" in caplog.text
    assert TOKEN not in caplog.text


async def test_gives_up_after_max_attempts_without_holding_up_other_statuses(status_server, session, caplog):
    broken, healthy = "b" * 40, "c" * 40
    status_server.script[broken] = [500]
    poster = fast_poster(session, max_attempts=3, workers=2, first_backoff_s=0.2)

    poster.post(status(status_server, broken))
    await status_server.wait_for_calls(1)
    poster.post(status(status_server, healthy))
    await poster.close(2.0)

    broken_calls = status_server.calls_for(broken)
    [healthy_call] = status_server.calls_for(healthy)
    assert len(broken_calls) == 3
    # The healthy status went out while the broken one was still backing off.
    assert healthy_call.at_s < broken_calls[-1].at_s
    assert "gave up on status success" in caplog.text


async def test_a_newer_state_replaces_one_still_being_retried(status_server, session):
    # Otherwise a retried `pending` could land after the `success` and stick.
    status_server.script[PINNED] = [500, 201]
    poster = fast_poster(session, first_backoff_s=0.2)

    poster.post(status(status_server, PINNED, "pending"))
    await status_server.wait_for_calls(1)
    poster.post(status(status_server, PINNED, "success"))
    await poster.close(2.0)

    assert [call.body["state"] for call in status_server.calls] == ["pending", "success"]


async def test_a_full_queue_drops_instead_of_waiting(status_server, session):
    poster = StatusPoster(session, max_queued=2)  # not started: nothing drains the queue

    accepted = [poster.post(status(status_server, sha)) for sha in ("a" * 40, "b" * 40, "c" * 40)]
    assert accepted == [True, True, False]
    await poster.close(0.01)


async def test_pending_then_success_for_a_pinned_commit(cluster, status_server, aiohttp_client):
    with_statuses(cluster, status_server)
    cluster.delay_s.update({i: 0.5 for i in range(N)})  # the build takes a while
    client = await start_client(aiohttp_client, cluster)

    status, verdict = await post(client, {"branch": "main", "commit": PINNED})
    assert status == 200
    await status_server.wait_for_calls(2)

    pending, success = status_server.calls
    for call in (pending, success):
        assert call.path == f"/repos/octo/example/statuses/{PINNED}"
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["Accept"] == "application/vnd.github+json"
        assert set(call.body) == {"state", "context", "description", "target_url"}
        assert call.body["context"] == "pbft-ci"
    # Pending links the build's page; the accepted verdict its certificate, which anyone can check.
    assert pending.body["target_url"] == f"{PUBLIC_URL}/builds/{verdict['build_id']}"
    assert success.body["target_url"] == f"{PUBLIC_URL}/builds/{verdict['build_id']}/certificate"
    assert pending.body["state"] == "pending"
    assert pending.body["description"] == f"ordering and building on {N} nodes; 2 must agree"
    assert success.body["state"] == "success"
    agreed = ", ".join(map(str, verdict["agreed_by"]))
    assert success.body["description"] == f"build passed (exit 0); agreed by nodes {agreed}"


async def test_failure_verdict_without_a_pinned_commit(cluster, status_server, aiohttp_client, caplog):
    caplog.set_level(logging.INFO)
    with_statuses(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)

    status, _ = await post(client, {"branch": "fail/tests"})
    assert status == 200
    await status_server.wait_for_calls(1)
    # Neither a branch that does not exist nor an unconfigured repository gets a status.
    assert (await post(client, {"branch": "missing"}))[0] == 200
    assert (await post(client, {"branch": "main", "repository": "other"}))[0] == 200
    await asyncio.sleep(0.1)

    [call] = status_server.calls  # no pending: the commit was known only from the verdict
    assert call.path == f"/repos/octo/example/statuses/{honest_result('fail/tests').commit}"
    assert call.body["state"] == "failure"
    assert call.body["description"].startswith("build failed (exit 1); agreed by nodes ")
    assert "neither the request nor the verdict names a commit" in caplog.text


async def test_a_failing_pipelines_status_names_the_step_that_failed(cluster, status_server, aiohttp_client):
    with_statuses(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)
    assert (await post(client, {"branch": "fail-pipeline"}))[0] == 200
    await status_server.wait_for_calls(1)
    final = status_server.calls[-1]
    assert final.body["state"] == "failure"
    assert final.body["description"].startswith(
        "build failed (exit 3): step 'test' failed with exit code 3; agreed by nodes ")


@pytest.mark.parametrize("settings, state", [
    # GitHub and Gitea have no skipped state: `success` would pass a required check for a commit
    # nothing built, so the check stays expected, as a run GitHub Actions skips leaves it.
    ({}, "pending"),
    ({"skipped_passes": True}, "success"),  # the repository's choice: a skip passes
])
async def test_a_skipped_build_says_why_and_passes_a_check_only_where_the_repository_says(
    cluster, status_server, aiohttp_client, settings, state
):
    with_statuses(cluster, status_server, **settings)
    client = await start_client(aiohttp_client, cluster)

    status, verdict = await post(client, {"branch": "skip/docs", "commit": PINNED})
    assert status == 200
    assert (verdict["status"], verdict["reason"]) == ("skipped", "when: event manual is not push")
    await status_server.wait_for_calls(2)

    pending, skipped = status_server.calls
    assert pending.body["state"] == "pending"
    assert skipped.body["state"] == state
    assert skipped.body["description"].startswith(
        "build skipped, nothing built: when: event manual is not push; agreed by nodes ")
    assert skipped.body["target_url"] == f"{PUBLIC_URL}/builds/{verdict['build_id']}/certificate"


@pytest.mark.parametrize("skipped_passes", [False, True])
async def test_gitlab_gets_its_own_skipped_state_whatever_the_setting(
    cluster, status_server, aiohttp_client, skipped_passes
):
    with_statuses(cluster, status_server, status_style="gitlab", skipped_passes=skipped_passes)
    client = await start_client(aiohttp_client, cluster)

    assert (await post(client, {"branch": "skip/docs", "commit": PINNED}))[0] == 200
    await status_server.wait_for_calls(2)

    assert [call.body["state"] for call in status_server.calls] == ["pending", "skipped"]
    assert status_server.calls[1].path == f"/projects/octo%2Fexample/statuses/{PINNED}"


async def test_a_slow_status_server_does_not_delay_the_verdict(
    monkeypatch, cluster, status_server, aiohttp_client
):
    # Requested first so that it is undone last, after the app's shutdown.
    monkeypatch.setattr(statuses, "CLOSE_GRACE_S", 0.1)
    status_server.delay_s = 3.0
    with_statuses(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)

    started_s = time.monotonic()
    status, verdict = await post(client, {"branch": "main", "commit": PINNED})

    assert status == 200 and verdict["status"] == "success"
    assert time.monotonic() - started_s < 1.0
    await status_server.wait_for_calls(1)  # the pending status is in flight meanwhile


async def test_a_divergent_build_is_an_error_that_says_so(cluster, status_server, aiohttp_client):
    with_statuses(cluster, status_server)
    client = await start_client(aiohttp_client, cluster)

    status, verdict = await post(client, {"branch": "artifacts-random", "commit": PINNED})
    assert status == 200 and verdict["status"] == "divergent"
    await status_server.wait_for_calls(2)

    pending, final = status_server.calls
    assert final.path == f"/repos/octo/example/statuses/{PINNED}"
    assert final.body["state"] == "error"
    # No f+1 nodes vouch for one set of bytes, so there is no certificate to link.
    assert final.body["target_url"] == f"{PUBLIC_URL}/builds/{verdict['build_id']}"
    assert final.body["description"] == (
        f"build divergent: its artifacts differ between nodes ({N} digests among {N} nodes); "
        "not reproducible, or a node lies"
    )


async def test_a_verdict_out_of_time_links_the_build_page_not_a_certificate(cluster, status_server, aiohttp_client):
    with_statuses(cluster, status_server)
    for node_id in (1, 2, 3):
        cluster.behaviour[node_id] = "silent"
    client = await start_client(aiohttp_client, cluster, deadline_s=1.0)

    response = await client.post("/webHook", json={"branch": "main", "commit": PINNED})
    assert response.status == 504
    build_id = (await response.json())["build_id"]
    await status_server.wait_for_calls(2)

    pending, final = status_server.calls
    assert (final.body["state"], final.body["description"]) == (
        "error", "no 2 nodes agreed on a result before the deadline")
    assert [pending.body["target_url"], final.body["target_url"]] == [f"{PUBLIC_URL}/builds/{build_id}"] * 2
    assert (await client.get(f"/builds/{build_id}/certificate")).status == 409  # there is none to link


def test_a_request_the_order_answered_as_a_duplicate_of_a_delivery_posts_no_final_status(cluster, status_server):
    """Two clients took one delivery: the order built it once (pbft.deliveries), and the build
    that was built reports; the other's `skipped` would say nothing was built."""
    with_statuses(cluster, status_server)
    posted: list[CommitStatus] = []
    observer = CommitStatuses(cluster.config, CLIENT, types.SimpleNamespace(post=posted.append))
    delivery = "github:72d3162e"
    operation = Operation("example", "main", PINNED, delivery=delivery)
    for result in (duplicate_result(delivery), Result("skipped", None, PINNED, "when: event manual is not push")):
        observer.observe(Finished(operation, Verdict("1776", Accepted(result, [0, 1], 10.0), [], 12)))
    [status] = posted  # the genuine skip only
    assert "when: event manual is not push" in status.description


async def test_close_ends_a_worker_whose_cancel_was_taken_for_a_timeout(status_server, session):
    """aiohttp may report a cancel that lands as a call's own timeout fires as that timeout:
    the worker then sleeps and posts again instead of ending, and close() must still end it."""
    poster = fast_poster(session)
    swallowed = []

    async def post_once(status, attempt):
        try:
            await asyncio.sleep(3600)  # a call that never answers
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(attempt)
            return True  # as aiohttp's TimeoutError would: worth trying again
        return False

    poster._post_once = post_once
    poster.post(status(status_server, PINNED))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await poster.close(0.1)

    assert swallowed == [1] and all(worker.done() for worker in poster._workers)
