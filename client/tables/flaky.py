"""The tests proven flaky in each repository's branch builds (client.testtables): a row per
test and build, with the nodes it passed and failed on, each side's outcome signed by its
nodes. Read by the repository's flaky-tests page only; no build reads it.

Only builds of a branch are kept: a pull request's build runs the code of whoever opened
it, whose tests may flake on purpose. Bounded: at most MAX_TESTS_PER_BUILD tests of a
build (the first by id; a node that signs every test failed cannot fill the table) and the
newest MAX_BUILDS builds with a flaky test of each repository.
"""

from __future__ import annotations

import json

from client.tables.store import RecordStore

MAX_TESTS_PER_BUILD = 100
MAX_BUILDS = 100


class FlakyTests:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def keep(self, repository: str, build_id: int, rows: list[dict]) -> None:
        """The proven flaky `rows` of a build's test table (client.testtables). A test an earlier
        look at the build proved flaky stays so (its signatures were seen, whatever nodes answer
        now); one seen again is replaced (more nodes may have answered since)."""
        kept = {row["test"] for row in self._store.read(
            "SELECT test FROM flaky_tests WHERE build_id = ?", (build_id,)).fetchall()}
        room = MAX_TESTS_PER_BUILD - len(kept)
        for row in sorted(rows, key=lambda row: row["test"]):
            if row["test"] not in kept:
                if room <= 0:
                    continue
                room -= 1
            self._store.write(
                "INSERT OR REPLACE INTO flaky_tests (repository, test, build_id, passed_on, failed_on)"
                " VALUES (?, ?, ?, ?, ?)",
                (repository, row["test"], build_id, json.dumps(row["passed_on"]), json.dumps(row["failed_on"])),
            )
        self._store.write(
            "DELETE FROM flaky_tests WHERE repository = ? AND build_id NOT IN (SELECT DISTINCT build_id FROM"
            " flaky_tests WHERE repository = ? ORDER BY build_id DESC LIMIT ?)", (repository, repository, MAX_BUILDS))
        self._store.commit()

    def of(self, repository: str) -> list[dict]:
        """The repository's flaky tests, most often flaky first: in how many builds, the last, and
        how often each node was on the failing side."""
        tests: dict[str, dict] = {}
        rows = self._store.read(
            "SELECT test, build_id, failed_on FROM flaky_tests WHERE repository = ? ORDER BY build_id",
            (repository,)).fetchall()
        for row in rows:
            test = tests.setdefault(row["test"], {"test": row["test"], "builds": 0, "failed_on": {}})
            test["builds"] += 1
            test["last_build"] = str(row["build_id"])
            for node in json.loads(row["failed_on"]):
                test["failed_on"][node] = test["failed_on"].get(node, 0) + 1
        return sorted(tests.values(), key=lambda test: (-test["builds"], test["test"]))
