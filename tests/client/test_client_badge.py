"""GET /badge/<repository>/<branch>.svg: the branch's latest verdict as a status badge."""

import asyncio
import dataclasses
import re
import time
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from client.badge import svg
from client.dashboard import SECURITY_HEADERS
from client.keys import RECORDS_KEY
from pbft.build import Operation, Result
from pbft.messages import Request
from shared.config import ConfigError, load_config
from tests.client.client_token import BEARER, TOKEN
from tests.client.fake_nodes import CLIENT, F, post, start_client
from tests.client.forge_deliveries import settled

SVG = "{http://www.w3.org/2000/svg}"


async def badge(client, repository: str, branch: str, headers=None) -> tuple[int, str]:
    response = await client.get(f"/badge/{repository}/{branch}.svg", headers=headers)
    return response.status, await response.text()


def said(image: str) -> str:
    """The badge's second text: what it says of the branch."""
    texts = [element.text for element in ElementTree.fromstring(image).iter(f"{SVG}text")]
    assert texts[0] == "pbft-ci"
    return texts[1]


def recorded(client, operation: Operation) -> int:
    """A build of `operation` in the client's records, without a verdict yet."""
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, operation), submitted_at=time.time())
    return timestamp


@pytest.mark.parametrize("branch, word", [
    ("main", "passing"), ("fail-tests", "failing"), ("missing", "error"), ("never-built", "unknown"),
])
async def test_the_badge_says_the_branch_s_latest_verdict(client, branch, word):
    if branch != "never-built":
        await post(client, {"branch": branch})
    status, image = await badge(client, "example", branch)
    assert status == 200 and said(image) == word


async def test_headers_are_an_svg_s_never_cached_and_never_sniffed(client):
    response = await client.get("/badge/example/main.svg")
    assert response.content_type == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]


async def test_the_newest_verdict_wins_and_builds_that_say_nothing_of_the_branch_are_passed_over(client):
    await post(client, {"branch": "fail"})
    assert said((await badge(client, "example", "fail"))[1]) == "failing"
    records = client.app[RECORDS_KEY]
    good = Result("success", 0, "a" * 40)
    # Newer, but not the branch's own: a pull request into it, a combination, a skipped build, a
    # cancelled one, a cancel, and one still without a verdict.
    for operation, result in [
        (Operation("example", "fail", "a" * 40, pull_ref="refs/pull/3/head", event="pull_request"), good),
        (Operation("example", "fail", "a" * 40, combination=(("PYTHON", "3.12"),)), good),
        (Operation("example", "fail"), Result("skipped", None, "a" * 40, "when: says no")),
        (Operation("example", "fail"), Result("cancelled", None, None, "cancelled")),
        (Operation("example", "fail", cancels=1), good),
    ]:
        records.verdicts.accept(recorded(client, operation), result, [0, 1], 10, [])
    recorded(client, Operation("example", "fail"))
    records.store.commit()
    assert said((await badge(client, "example", "fail"))[1]) == "failing"

    disputed = recorded(client, Operation("example", "fail"))
    records.verdicts.dispute(disputed, {0: good, 1: Result("failure", 1, "a" * 40)}, F, 10, [])
    assert said((await badge(client, "example", "fail"))[1]) == "disputed"
    records.verdicts.time_out(recorded(client, Operation("example", "fail", event="cron")), 10, [])
    assert said((await badge(client, "example", "fail"))[1]) == "error"
    records.verdicts.accept(recorded(client, Operation("example", "fail", event="manual")), good, [0, 1], 10, [])
    assert said((await badge(client, "example", "fail"))[1]) == "passing"


async def test_a_matrix_says_its_worst_combination_once_all_have_their_verdict(client):
    _, answer = await post(client, {"branch": "matrix/ci"})
    assert answer["status"] == "matrix"
    for started in answer["matrix"]:
        await settled(client, started["build_id"])
    # One of the fake nodes' combinations fails.
    assert said((await badge(client, "example", "matrix/ci"))[1]) == "failing"


async def test_repository_and_branch_are_checked(client):
    status, answer = await badge(client, "nowhere", "main")
    assert status == 404 and "no such repository" in answer
    for branch in ("-x", "a..b", "feature%2F..%2Fx", "%3Cscript%3E"):
        status, answer = await badge(client, "example", branch)
        assert status == 400, branch
        assert "branch name" in answer
    # A branch with slashes in its name is one branch.
    await post(client, {"branch": "release/1.0"})
    assert said((await badge(client, "example", "release/1.0"))[1]) == "passing"


def test_every_text_is_escaped():
    image = svg("pbft-ci", "<b>&\"'", "<script>alert(1)</script> \"quoted\"").decode()
    tree = ElementTree.fromstring(image)
    assert "<script>" not in image and "<b>" not in image
    assert tree.find(f"{SVG}title").text == "<script>alert(1)</script> \"quoted\": <b>&\"'"
    assert tree.get("aria-label") == tree.find(f"{SVG}title").text
    assert said(image) == "<b>&\"'"


# --- Who may see a badge --------------------------------------------------------------------------


def with_token(cluster, **settings):
    client = dataclasses.replace(cluster.config.clients[0], token=TOKEN, **settings)
    cluster.config = dataclasses.replace(cluster.config, clients=(client,))
    return cluster


async def test_with_a_token_a_badge_needs_it_like_the_build_records(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, with_token(cluster))
    status, answer = await badge(client, "example", "main")
    assert status == 401 and "Bearer" in answer
    assert (await badge(client, "nowhere", "main"))[0] == 401  # which repositories exist is not told either
    status, image = await badge(client, "example", "main", headers=BEARER)
    assert status == 200 and said(image) == "unknown"


async def test_public_badges_need_no_token_and_open_nothing_else(cluster, aiohttp_client):
    client = await start_client(aiohttp_client, with_token(cluster, public_badges=True))
    await client.post("/webHook", json={"branch": "main"}, headers=BEARER)
    async with asyncio.timeout(5):
        while said((await badge(client, "example", "main"))[1]) != "passing":
            await asyncio.sleep(0.02)
    assert (await badge(client, "nowhere", "main"))[0] == 404
    assert (await client.get("/builds")).status == 401


@pytest.mark.parametrize("value, error", [(True, None), (False, None), ("yes", "clients[0].public_badges")])
def test_public_badges_is_a_yes_or_no_of_the_client_s_configuration(cluster, tmp_path, value, error):
    path = tmp_path / "network.yaml"
    data = yaml.safe_load(path.read_text())
    data["clients"][0]["public_badges"] = value
    path.write_text(yaml.safe_dump(data))
    if error is None:
        assert load_config(path).clients[0].public_badges is value
    else:
        with pytest.raises(ConfigError, match=re.escape(error)):
            load_config(path)
