"""Dropped messages: every one counted, at most one log line per reason per interval, log files rotated."""

from __future__ import annotations

import logging
import logging.handlers

from node.driver import Driver, DriverParts
from shared import cli
from shared.droplog import DropLogLimiter, ReplicaDropFilter
from tests.support.cluster import Cluster


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_the_limiter_admits_one_line_per_reason_per_interval_and_counts_the_rest():
    clock = FakeClock()
    limiter = DropLogLimiter(interval_s=10, clock=clock)
    assert limiter.admit("malformed_frame") == 0
    assert [limiter.admit("malformed_frame") for _ in range(3)] == [None] * 3
    assert limiter.admit("hello_bad_signature") == 0  # reasons are limited independently
    clock.now_s = 9.9
    assert limiter.admit("malformed_frame") is None
    clock.now_s = 10.0
    assert limiter.admit("malformed_frame") == 4  # the line after the quiet period reports what it hid
    clock.now_s = 25.0
    assert limiter.admit("malformed_frame") == 0


def replica_drop(reason: str, name: str = "pbft.replica") -> logging.LogRecord:
    return logging.LogRecord(
        name, logging.WARNING, "replica.py", 1, "node=%d view=%d dropped %s: %s",
        (1, 0, "prepare view=0 seq=1 sender=2", reason), None,
    )


def test_the_filter_rate_limits_the_replicas_drop_lines_by_reason():
    clock = FakeClock()
    drop_filter = ReplicaDropFilter(DropLogLimiter(interval_s=10, clock=clock))
    passed = [drop_filter.filter(replica_drop("ignore_prepare_bad_signature")) for _ in range(1000)]
    assert passed == [True] + [False] * 999
    assert drop_filter.filter(replica_drop("ignore_commit_old_view"))
    assert not drop_filter.filter(replica_drop("ignore_commit_old_view"))

    clock.now_s = 10.0
    record = replica_drop("ignore_prepare_bad_signature")
    assert drop_filter.filter(record)
    assert record.getMessage() == (
        "node=1 view=0 dropped prepare view=0 seq=1 sender=2: ignore_prepare_bad_signature"
        " [999 more with this reason not logged since the last line]"
    )


def test_the_filter_passes_every_other_record():
    drop_filter = ReplicaDropFilter(DropLogLimiter(interval_s=10, clock=FakeClock()))
    step = logging.LogRecord("pbft.replica", logging.INFO, "replica.py", 1, "node=%d seq=%d phase=commit", (1, 4), None)
    driver_drop = logging.LogRecord("node.driver", logging.WARNING, "driver.py", 1, "node=%d dropped frame: %s", (1, "x"), None)
    assert all(drop_filter.filter(step) for _ in range(5))
    assert all(drop_filter.filter(driver_drop) for _ in range(5))


def test_the_driver_counts_every_junk_frame_and_logs_one_line(caplog):
    driver = Driver(Cluster().replicas[1], None, DriverParts(peers={}))
    with caplog.at_level(logging.WARNING, logger="node.driver"):
        for _ in range(20_000):
            driver.on_frame("not json")
    assert driver.drops == {"malformed_frame": 20_000}
    lines = [record.getMessage() for record in caplog.records if record.name == "node.driver"]
    assert len(lines) == 1 and "malformed_frame" in lines[0]


def test_log_files_rotate_and_carry_the_drop_filter(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "LOG_MAX_BYTES", 2_000)
    handler = cli.log_handler(tmp_path / "log" / "node-1.log")
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert any(isinstance(f, ReplicaDropFilter) for f in handler.filters)
    logger = logging.getLogger("pbft.replica")
    logger.addHandler(handler)
    try:
        for seq in range(500):
            logger.warning("node=%d view=%d seq=%d phase=commit digest=%s", 1, 0, seq, "3fa2c1d0")
        for _ in range(1000):
            logger.warning("node=%d view=%d dropped %s: %s", 1, 0, "prepare", "ignore_prepare_bad_signature")
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted((tmp_path / "log").iterdir())
    assert [path.name for path in files] == ["node-1.log"] + [f"node-1.log.{i}" for i in range(1, cli.LOG_BACKUPS + 1)]
    assert all(path.stat().st_size <= 2_000 for path in files)
    assert "".join(path.read_text() for path in files).count("ignore_prepare_bad_signature") == 1


def test_a_reopened_log_rolls_over_by_what_it_already_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "LOG_MAX_BYTES", 2_000)
    path = tmp_path / "node-1.log"
    path.write_text("x" * 1_990 + "\n")  # what the node's previous process wrote
    handler = cli.log_handler(path)
    try:
        handler.emit(logging.LogRecord("pbft.replica", logging.INFO, __file__, 1, "node=%d seq=%d", (1, 7), None))
    finally:
        handler.close()
    assert (tmp_path / "node-1.log.1").read_text() == "x" * 1_990 + "\n"
    assert path.read_text().endswith("INFO pbft.replica node=1 seq=7\n")
