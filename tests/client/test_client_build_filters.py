"""GET /builds: filtered by repository, branch, verdict and number, a page at a time."""

import time

import pytest

from client.keys import RECORDS_KEY
from client.tables.summaries import VERDICTS
from pbft.build import Operation, Result
from pbft.messages import Request
from tests.client.fake_nodes import CLIENT, F, post


async def listing(client, **query) -> dict:
    response = await client.get("/builds", params={key: str(value) for key, value in query.items()})
    assert response.status == 200, await response.text()
    return await response.json()


async def ids(client, **query) -> list[str]:
    return [build["build_id"] for build in (await listing(client, **query))["builds"]]


def without_verdict(client, branch: str, repository: str = "example") -> str:
    """A build recorded as sent and never answered, straight into the client's records."""
    records = client.app[RECORDS_KEY]
    timestamp = records.store.next_timestamp(time.time_ns() // 1000)
    records.builds.add_pending(Request(CLIENT, timestamp, Operation(repository, branch)), submitted_at=time.time())
    records.store.commit()
    return str(timestamp)


@pytest.fixture
async def builds(client) -> dict[str, str]:
    """One build of each kind, by name."""
    made = {}
    for name, body in [("success", {"branch": "main"}), ("failure", {"branch": "fail-1"}),
                       ("error", {"branch": "missing"}), ("skipped", {"branch": "skip-ci"}),
                       ("other", {"branch": "main", "repository": "other"})]:
        status, verdict = await post(client, body)
        assert status == 200
        made[name] = verdict["build_id"]
    made["pending"] = without_verdict(client, "main")
    made["timeout"] = without_verdict(client, "main")
    made["disputed"] = without_verdict(client, "feature")
    records = client.app[RECORDS_KEY]
    records.verdicts.time_out(int(made["timeout"]), 10, [])
    split = {0: Result("success", 0, "a" * 40), 1: Result("failure", 1, "a" * 40)}
    records.verdicts.dispute(int(made["disputed"]), split, F, 10, [])
    records.store.commit()
    return made


async def test_each_verdict_finds_its_builds_and_only_them(client, builds):
    for verdict in ("success", "failure", "error", "skipped", "pending", "timeout", "disputed"):
        expected = [builds[verdict]] + ([builds["other"]] if verdict == "success" else [])
        assert sorted(await ids(client, verdict=verdict)) == sorted(expected), verdict
    for verdict in ("cancelled", "divergent", "matrix"):
        assert await ids(client, verdict=verdict) == []
    # Every build says its verdict in the same word the filter takes.
    assert {build["build_id"]: build["verdict"] for build in (await listing(client))["builds"]} == {
        build_id: "success" if name == "other" else name for name, build_id in builds.items()}
    assert set(VERDICTS) >= {"success", "failure", "error", "timeout", "cancelled", "skipped", "disputed",
                             "divergent", "pending"}


async def test_repository_branch_and_number_narrow_the_list(client, builds):
    assert await ids(client, repository="other") == [builds["other"]]
    assert await ids(client, repository="no-such-repository") == []
    assert sorted(await ids(client, branch="main")) == sorted(
        [builds["success"], builds["other"], builds["pending"], builds["timeout"]])
    assert sorted(await ids(client, repository="example", branch="main")) == sorted(
        [builds["success"], builds["pending"], builds["timeout"]])
    assert await ids(client, repository="example", branch="main", verdict="pending") == [builds["pending"]]
    assert await ids(client, repository="example", number=1) == [builds["success"]]
    assert await ids(client, repository="other", number=1) == [builds["other"]]
    assert await ids(client, repository="example", number=99) == []


async def walk(client, **query) -> tuple[list[str], int]:
    """Every build id the pages of `query` list, following `next`, and how many pages there were.
    A build arrives after each page: a client paging on must see none of them."""
    seen, cursor, pages = [], None, 0
    while True:
        page = await listing(client, **query, **({} if cursor is None else {"before": cursor}))
        seen += [build["build_id"] for build in page["builds"]]
        pages += 1
        without_verdict(client, "main")
        cursor = page["next"]
        if cursor is None:
            return seen, pages
        assert isinstance(cursor, str) and cursor == page["builds"][-1]["build_id"]


async def test_the_next_cursor_walks_every_build_once_newest_first(client):
    made = [without_verdict(client, "main" if i % 3 else "feature") for i in range(23)]
    assert await walk(client, limit=5) == (list(reversed(made)), 5)
    feature = [build_id for i, build_id in enumerate(made) if i % 3 == 0]
    assert await walk(client, limit=2, branch="feature") == (list(reversed(feature)), 4)


async def test_a_page_that_ends_exactly_at_the_last_build_has_no_next(client):
    made = [without_verdict(client, "main") for _ in range(4)]
    first = await listing(client, limit=2)
    second = await listing(client, limit=2, before=first["next"])
    assert [build["build_id"] for build in second["builds"]] == list(reversed(made[:2]))
    assert second["next"] is None
    assert (await listing(client, limit=4))["next"] is None


@pytest.mark.parametrize("query, reason", [
    ({"verdict": "passing"}, "verdict must be one of"),
    ({"verdict": ""}, "verdict must be one of"),
    ({"before": "-1"}, "before must be a decimal number"),
    ({"before": "12abc"}, "before must be a decimal number"),
    ({"before": "9" * 30}, "before must be a decimal number"),
    ({"number": "0"}, "number must be a decimal number"),
    ({"number": "1.5"}, "number must be a decimal number"),
    ({"limit": "0"}, "limit must be an integer"),
    ({"branch": "-x"}, "branch name starts with '-'"),
    ({"branch": "a..b"}, "branch name contains '..'"),
    ({"branch": ""}, "branch name is empty"),
    ({"repository": "../etc"}, "repository is not well formed"),
    ({"repository": "x" * 100}, "repository"),
    ({"repository": "a' OR '1'='1"}, "repository is not well formed"),
])
async def test_bad_filters_are_400_with_the_reason(client, query, reason):
    response = await client.get("/builds", params=query)
    assert response.status == 400
    assert reason in (await response.json())["error"]

