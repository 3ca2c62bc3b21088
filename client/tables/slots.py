"""The slot each schedule fired for last (client.schedules), kept with the builds it started."""

from __future__ import annotations

from client.tables.store import RecordStore


class ScheduleSlots:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def get(self) -> dict[tuple[str, str, str, str], float]:
        """The last slot each schedule fired for (or started from), by (repository, name, cron, branch)."""
        rows = self._store.read("SELECT repository, name, cron, branch, last_slot FROM schedules").fetchall()
        return {(row["repository"], row["name"], row["cron"], row["branch"]): row["last_slot"] for row in rows}

    def keep(self, slots: dict[tuple[str, str, str, str], float], build_ids: dict) -> None:
        """Keep exactly these schedules' slots, with the builds they started (`build_ids`, by the
        same keys), in one commit with those builds' own records: a crash leaves both or neither."""
        self._store.write("DELETE FROM schedules", ())
        for (repository, name, cron, branch), slot in slots.items():
            self._store.write(
                "INSERT INTO schedules (repository, name, cron, branch, last_slot, build_id) VALUES (?, ?, ?, ?, ?, ?)",
                (repository, name, cron, branch, slot, build_ids.get((repository, name, cron, branch))),
            )
        self._store.commit()
