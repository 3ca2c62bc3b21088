"""Build numbers: 1, 2, 3… per repository in submission order, kept across versions of the records file."""

import sqlite3
import time

from client.records import BuildRecords
from client.tables.schema import ACTION_COLUMNS_OF_8, BUILD_COLUMNS_OF_7, SCHEMA_VERSION
from pbft.build import Operation
from pbft.messages import Request
from tests.client.fake_nodes import post


def add(records: BuildRecords, repository: str, timestamp: int) -> None:
    records.builds.add_pending(Request("ci", timestamp, Operation(repository, "main")), submitted_at=time.time())


def numbers(records: BuildRecords) -> dict[str, tuple[str, int]]:
    return {build["build_id"]: (build["repository"], build["number"]) for build in records.builds.recent(100)}


def as_version_6(path) -> None:
    """Take from a file what versions 7 and 8 added to it, as a client of version 6 left it."""
    with sqlite3.connect(path) as old:
        for column in ACTION_COLUMNS_OF_8:
            old.execute(f"ALTER TABLE actions DROP COLUMN {column}")
        old.execute("DROP INDEX builds_number")
        old.execute("DROP INDEX builds_ref")
        for column in BUILD_COLUMNS_OF_7:
            old.execute(f"ALTER TABLE builds DROP COLUMN {column}")
        old.execute("PRAGMA user_version = 6")


def test_each_repository_counts_its_own_builds_from_one(tmp_path):
    records = BuildRecords(tmp_path / "builds.sqlite")
    for timestamp, repository in enumerate(["example", "other", "example", "example", "other"], start=10):
        add(records, repository, timestamp)
    records.store.commit()
    assert numbers(records) == {"10": ("example", 1), "11": ("other", 1), "12": ("example", 2),
                                "13": ("example", 3), "14": ("other", 2)}
    assert records.builds.get(13)["number"] == 3
    records.close()


def test_a_file_of_version_6_numbers_its_builds_in_submission_order_and_goes_on_from_there(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    # Inserted out of order: the numbers follow the build ids, not the rows' order.
    for timestamp, repository in [(30, "example"), (10, "example"), (20, "other"), (25, "example")]:
        add(records, repository, timestamp)
    records.close()
    as_version_6(path)

    records = BuildRecords(path)
    assert numbers(records) == {"10": ("example", 1), "25": ("example", 2), "30": ("example", 3), "20": ("other", 1)}
    add(records, "example", 40)
    add(records, "other", 41)
    add(records, "third", 42)
    records.close()

    reopened = BuildRecords(path)
    assert numbers(reopened)["40"] == ("example", 4)
    assert numbers(reopened)["41"] == ("other", 2)
    assert numbers(reopened)["42"] == ("third", 1)
    reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 14
        columns = {row[1] for row in db.execute("PRAGMA table_info(builds)")}
        assert set(BUILD_COLUMNS_OF_7) <= columns
        indexes = {row[1] for row in db.execute("PRAGMA index_list(builds)")}
        assert {"builds_number", "builds_ref", "builds_pending"} <= indexes


def test_a_rebuilt_file_of_version_4_is_numbered_and_keeps_its_indexes(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    add(records, "example", 5)
    add(records, "example", 6)
    records.close()
    as_version_6(path)
    with sqlite3.connect(path) as old:
        old.execute("PRAGMA user_version = 4")

    records = BuildRecords(path)
    assert numbers(records) == {"5": ("example", 1), "6": ("example", 2)}
    records.close()
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(builds)")}
        assert {"builds_number", "builds_ref", "builds_pending"} <= indexes
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'builds_v0'").fetchone()[0] == 0


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    add(records, "example", 5)
    records.close()
    as_version_6(path)
    with sqlite3.connect(path) as old:
        # A name the migration's index needs, taken: the migration fails half-way.
        old.execute("CREATE TABLE builds_number (x)")

    try:
        BuildRecords(path)
    except sqlite3.Error:
        pass
    else:
        raise AssertionError("the migration should have failed")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 6
        assert "number" not in {row[1] for row in db.execute("PRAGMA table_info(builds)")}


async def test_the_routes_show_each_build_s_number(client):
    first = (await post(client, {"branch": "main"}))[1]["build_id"]
    other = (await post(client, {"branch": "main", "repository": "other"}))[1]["build_id"]
    second = (await post(client, {"branch": "fail"}))[1]["build_id"]

    listing = (await (await client.get("/builds")).json())["builds"]
    assert [(build["build_id"], build["number"]) for build in listing] == [(second, 2), (other, 1), (first, 1)]
    assert (await (await client.get(f"/builds/{second}")).json())["number"] == 2
