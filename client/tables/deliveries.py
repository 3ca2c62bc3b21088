"""Forge delivery ids the client has answered, so a redelivery after a restart finds the build it started."""

from __future__ import annotations

from client.tables.store import RecordStore

# Forges redeliver on request for a few days at most; older delivery ids are
# forgotten so the table does not grow for ever.
DELIVERY_RETENTION_S = 30 * 24 * 3600


class Deliveries:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def build_of(self, repository: str, delivery_id: str) -> int | None:
        """The build a forge delivery already started, if it was seen before."""
        row = self._store.read(
            "SELECT build_id FROM deliveries WHERE repository = ? AND delivery_id = ?", (repository, delivery_id)
        ).fetchone()
        return None if row is None else row[0]

    def add(self, repository: str, delivery_id: str, build_id: int, received_at: float) -> None:
        # Keyed by repository too, so that a delivery id claimed through an
        # unsigned repository cannot shadow a signed delivery to another.
        # Committed at once, with the build it started: the forge is answered
        # next, and a redelivery after a crash must find both.
        self._store.write("DELETE FROM deliveries WHERE received_at < ?", (received_at - DELIVERY_RETENTION_S,))
        self._store.write(
            "INSERT OR IGNORE INTO deliveries (repository, delivery_id, build_id, received_at) VALUES (?, ?, ?, ?)",
            (repository, delivery_id, build_id, received_at),
        )
        self._store.commit()
