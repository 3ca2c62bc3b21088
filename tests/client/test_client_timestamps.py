"""The client's request timestamps: always increasing, across clean restarts, crashes and power cuts.

A node executes a client's request only if its timestamp is above the last it
saw from that client, and answers a repeated timestamp with the stored reply of
the old request. A client that handed out a used timestamp again would get
another build's verdict. Requests leave before their records are fsynced, so
what guards this is the ceiling `client.tables.store` keeps on disk.
"""

from __future__ import annotations

import shutil
import sqlite3

from client.records import BuildRecords
from client.tables.store import TIMESTAMP_RESERVE_US
from harness.network import write_network
from pbft.build import Operation
from pbft.messages import Request
from shared.config import load_config
from shared.config_principals import BUILD_ID_LANES

START_US = 1_700_000_000_000_000


def committed_ceiling(path) -> int | None:
    """The ceiling as another connection sees it: only what was committed."""
    with sqlite3.connect(path) as other:
        row = other.execute("SELECT value FROM client_state WHERE key = 'last_timestamp'").fetchone()
    return None if row is None else row[0]


def power_cut(path, tmp_path):
    """A copy of the file as a power cut would leave it: committed transactions only.

    The open connection's uncommitted writes are in its memory, or in WAL frames
    without a commit mark that a reader ignores; copying the files (WAL included,
    not the shared-memory index) leaves exactly what a cut would.
    """
    cut = tmp_path / "after-cut"
    cut.mkdir()
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            shutil.copy(source, cut / source.name)
    return cut / path.name


def test_timestamps_keep_increasing_across_restarts(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    assert records.store.next_timestamp(1_008) == 1_008
    assert records.store.next_timestamp(1_008) == 1_024  # the next of lane 0: 16 apart
    assert records.store.next_timestamp(5_000) == 5_008
    records.close()
    # The clock went backwards while the client was down; a clean close kept the last one used.
    records = BuildRecords(path)
    assert records.store.next_timestamp(10) == 5_024
    records.close()


def test_clients_of_one_network_take_build_ids_from_lanes_that_never_meet(tmp_path):
    names = ["zeta", "alpha", "mid"]
    config = load_config(write_network(tmp_path, clients=tuple(names)))
    assert [config.build_id_lane(name) for name in names] == [2, 0, 1]  # by name, not by place in the file
    issued = {}
    for name in names:
        records = BuildRecords(tmp_path / "records" / f"{name}.sqlite")
        issued[name] = {records.store.next_timestamp(START_US, config.build_id_lane(name)) for _ in range(50)}
        records.close()
        assert {timestamp % BUILD_ID_LANES for timestamp in issued[name]} == {config.build_id_lane(name)}
    assert not issued["zeta"] & issued["alpha"] and not issued["alpha"] & issued["mid"]


def test_a_timestamp_below_the_ceiling_on_disk_commits_nothing(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    first = records.store.next_timestamp(START_US)
    # The first timestamp passed the (empty) ceiling: a new one was committed before it was used.
    assert committed_ceiling(path) == first + TIMESTAMP_RESERVE_US

    second = records.store.next_timestamp(START_US + 1_000)
    records.builds.add_pending(Request("client", second, Operation("example", "master")), submitted_at=0.0)
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM builds").fetchone()[0] == 0, "the pending record was committed"
    records.store.commit()
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM builds").fetchone()[0] == 1
    records.close()


def test_no_timestamp_comes_back_after_a_power_cut(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    issued = [records.store.next_timestamp(START_US + step) for step in range(0, 5_000, 1_000)]
    for timestamp in issued[1:]:
        records.builds.add_pending(Request("client", timestamp, Operation("example", "master")), submitted_at=0.0)
    # Power goes before the group commit of the last four: their records are lost, their
    # requests may have reached the nodes, and the clock reads earlier after the reboot.
    survivor = BuildRecords(power_cut(path, tmp_path))
    assert survivor.builds.recent(10) == []
    after = survivor.store.next_timestamp(START_US)
    assert after > max(issued)
    survivor.close()
    records.close()


def test_the_ceiling_moves_ahead_without_a_commit_of_its_own_and_holds_after_a_cut(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    first = records.store.next_timestamp(START_US)
    # Past half the reserve the ceiling is raised in the open transaction, not committed yet...
    halfway = records.store.next_timestamp(first + TIMESTAMP_RESERVE_US // 2 + 1)
    assert committed_ceiling(path) == first + TIMESTAMP_RESERVE_US
    # ...so a cut now falls back on the old ceiling, which still lies above every timestamp used.
    survivor = BuildRecords(power_cut(path, tmp_path))
    assert survivor.store.next_timestamp(0) > halfway
    survivor.close()
    # The next group commit makes the raised ceiling durable.
    records.store.commit()
    assert committed_ceiling(path) == halfway + TIMESTAMP_RESERVE_US
    records.close()


def test_a_timestamp_beyond_the_ceiling_is_committed_before_it_is_used(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    records.store.next_timestamp(START_US)
    # A long idle: the clock passed the whole reserve.
    late = records.store.next_timestamp(START_US + 2 * TIMESTAMP_RESERVE_US)
    assert committed_ceiling(path) == late + TIMESTAMP_RESERVE_US
    survivor = BuildRecords(power_cut(path, tmp_path))
    assert survivor.store.next_timestamp(0) > late
    survivor.close()
    records.close()
