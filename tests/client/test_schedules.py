"""Scheduled builds (client/schedules.py): slots under a simulated clock, one build after
downtime, the records that make both hold across restarts, the configuration's checks, and
the client submitting a scheduled build to the (fake) nodes."""

import asyncio
import time
import dataclasses
from datetime import datetime, timezone

import pytest
import yaml
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from client.records import BuildRecords, records_path
from client.schedules import MAX_SLEEP_S, ScheduleRunner, Schedules, key_of, latest_slot, next_slot
from pbft.build import Actor, Operation
from shared.config import ConfigError, RepositoryConfig, ScheduleConfig, load_config
from tests.client.fake_nodes import CLIENT, start_client

NIGHTLY = ScheduleConfig("nightly", "0 3 * * *", "main")
HALF_HOURLY = ScheduleConfig("often", "*/30 * * * *", "dev")
REPOSITORY = RepositoryConfig("example", "/srv/example.git", schedules=(NIGHTLY, HALF_HOURLY))


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


# --- Slots ----------------------------------------------------------------------------------

EXPRESSIONS = ["0 3 * * *", "*/30 * * * *", "15 9-17 * * 1-5", "@hourly"]


def brute_force_latest(cron: str, now_s: float) -> float:
    """The latest whole minute at or before `now_s` that croniter says `cron` matches."""
    minute = now_s // 60 * 60
    while not croniter.match(cron, datetime.fromtimestamp(minute, timezone.utc)):
        minute -= 60
    return minute


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.floats(at("2026-01-01T00:00"), at("2027-01-01T00:00")))
def test_the_latest_slot_is_the_last_matching_minute_at_or_before_now(cron, now_s):
    assert latest_slot(cron, now_s) == brute_force_latest(cron, now_s)
    assert latest_slot(cron, now_s) <= now_s < next_slot(cron, now_s)


def test_a_slot_is_its_own_latest_from_its_first_instant():
    slot = at("2026-11-25T03:00")
    assert latest_slot("0 3 * * *", slot) == slot
    assert latest_slot("0 3 * * *", slot - 0.001) == at("2026-11-24T03:00")
    assert next_slot("0 3 * * *", slot) == at("2026-11-26T03:00")


# --- Schedules under a simulated clock -------------------------------------------------------


def test_a_new_schedule_starts_from_now_and_fires_at_each_slot_on_time():
    schedules = Schedules([REPOSITORY], {})
    start = at("2026-11-24T22:10")
    assert schedules.due(start) == []  # first sight: nothing fires for slots before it

    fired = []
    for now in range(int(start) + 7, int(at("2026-11-25T03:59")), 7):  # read every 7 s, rarely on a slot
        fired += [(fire.schedule.name, iso(fire.slot_s), now - fire.slot_s) for fire in schedules.due(now)]

    nightly = [fire for fire in fired if fire[0] == "nightly"]
    often = [fire for fire in fired if fire[0] == "often"]
    assert [slot for _, slot, _ in nightly] == ["2026-11-25 03:00"]
    assert [slot for _, slot, _ in often] == [
        f"2026-11-2{day} {hour:02d}:{minute:02d}"
        for day, hour in [(4, 22), (4, 23)] + [(5, h) for h in range(4)] for minute in (0, 30)
    ][1:]  # 22:30 is the first slot after 22:10
    assert all(0 <= late < 7 for _, _, late in fired)  # each within one reading of its slot


def test_after_downtime_each_schedule_fires_once_for_its_latest_missed_slot():
    last = {key_of("example", NIGHTLY): at("2026-11-20T03:00"), key_of("example", HALF_HOURLY): at("2026-11-25T08:00")}
    schedules = Schedules([REPOSITORY], last)

    fires = schedules.due(at("2026-11-25T09:47"))  # five nightly slots and three half-hours missed

    assert [(fire.schedule.name, iso(fire.slot_s)) for fire in fires] == [
        ("nightly", "2026-11-25 03:00"), ("often", "2026-11-25 09:30")]
    assert [fire.operation() for fire in fires] == [
        Operation("example", "main", None, event="cron", slot=int(at("2026-11-25T03:00")),
                  actor=Actor("schedule", "example/nightly"),
                  delivery=f"schedule:nightly@{int(at('2026-11-25T03:00'))}"),
        Operation("example", "dev", None, event="cron", slot=int(at("2026-11-25T09:30")),
                  actor=Actor("schedule", "example/often"), delivery=f"schedule:often@{int(at('2026-11-25T09:30'))}")]
    assert schedules.due(at("2026-11-25T09:48")) == []


def test_a_changed_or_removed_schedule_is_a_new_one():
    last = {key_of("example", NIGHTLY): at("2026-11-20T03:00"), ("example", "gone", "@daily", "x"): 0.0}
    changed = dataclasses.replace(REPOSITORY, schedules=(dataclasses.replace(NIGHTLY, branch="release"),))
    schedules = Schedules([changed], last)
    assert schedules.last == {}  # neither the old nightly nor the removed one is kept
    assert schedules.due(at("2026-11-25T09:47")) == []


# --- The runner: its loop, its records, a restart ---------------------------------------------


class SimulatedClock:
    def __init__(self, now_s: float, stop_s: float) -> None:
        self.now_s = now_s
        self.stop_s = stop_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        if self.now_s > self.stop_s:
            raise asyncio.CancelledError


async def run_until(runner: ScheduleRunner) -> None:
    with pytest.raises(asyncio.CancelledError):
        await runner.run()


async def test_the_runner_submits_at_each_slot_and_sleeps_no_longer_than_its_bound(tmp_path):
    records = BuildRecords(tmp_path / "builds.sqlite")
    clock = SimulatedClock(at("2026-11-24T23:10"), at("2026-11-25T03:10"))
    submitted = []

    def submit(operation):
        submitted.append((iso(clock()), operation.branch, operation.event))
        return len(submitted)

    await run_until(ScheduleRunner(Schedules([REPOSITORY], records.slots.get()), records.slots, submit,
                                   clock=clock, sleep=clock.sleep))

    assert submitted[0] == ("2026-11-24 23:30", "dev", "cron")
    assert ("2026-11-25 03:00", "main", "cron") in submitted
    assert len(submitted) == 9  # 23:30, then 00:00 ... 03:00 every half hour, and the nightly once
    assert max(clock.sleeps) == MAX_SLEEP_S
    assert records.slots.get()[key_of("example", NIGHTLY)] == at("2026-11-25T03:00")
    records.close()


async def test_a_restarted_client_fires_once_for_what_it_missed_while_down(tmp_path):
    path = tmp_path / "builds.sqlite"
    records = BuildRecords(path)
    only_nightly = dataclasses.replace(REPOSITORY, schedules=(NIGHTLY,))
    first = SimulatedClock(at("2026-11-20T02:00"), at("2026-11-20T03:30"))
    await run_until(ScheduleRunner(Schedules([only_nightly], records.slots.get()), records.slots,
                                   lambda operation: 1, clock=first, sleep=first.sleep))
    records.close()

    # Down from 03:30 on the 20th until 12:00 on the 25th: five nightly slots missed.
    records = BuildRecords(path)
    later = SimulatedClock(at("2026-11-25T12:00"), at("2026-11-25T12:05"))
    started = []
    runner = ScheduleRunner(Schedules([only_nightly], records.slots.get()), records.slots,
                            lambda operation: started.append(iso(later())) or 7, clock=later, sleep=later.sleep)
    await run_until(runner)
    assert started == ["2026-11-25 12:00"]
    records.close()

    reopened = BuildRecords(path)
    assert reopened.slots.get() == {key_of("example", NIGHTLY): at("2026-11-25T03:00")}
    reopened.close()


# --- Configuration ----------------------------------------------------------------------------


def configured(tmp_path, schedules) -> str:
    data = yaml.safe_load(open("example-config/network.yaml"))
    data["repositories"][0]["schedules"] = schedules
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_schedules_are_read_from_a_repositorys_entry(tmp_path):
    config = load_config(configured(tmp_path, [{"name": "nightly", "cron": "0 3 * * *", "branch": "main"},
                                               {"name": "weekly", "cron": "@weekly", "branch": "release/1"}]),
                         require_keys=False)
    assert config.repositories[0].schedules == (NIGHTLY, ScheduleConfig("weekly", "@weekly", "release/1"))


@pytest.mark.parametrize("schedules, problem", [
    ([{"name": "x", "cron": "* * * * * *", "branch": "main"}], "schedules[0].cron: is not a cron expression"),
    ([{"name": "x", "cron": "61 * * * *", "branch": "main"}], "schedules[0].cron: is not a cron expression"),
    ([{"name": "x", "cron": "@reboot", "branch": "main"}], "schedules[0].cron: is not a cron expression"),
    ([{"name": "x", "cron": "0 3 * * *", "branch": "--upload-pack=x"}], "schedules[0].branch:"),
    ([{"name": "x", "cron": "0 3 * * *"}], "schedules[0].branch: is required"),
    ([{"name": "x", "cron": "0 3 * * *", "branch": "a", "commit": "b"}], "schedules[0].commit: unknown setting"),
    ([{"name": "x", "cron": "@daily", "branch": "a"}, {"name": "x", "cron": "@hourly", "branch": "b"}],
     "schedules[1].name: 'x' is already the name of repositories[0].schedules[0]"),
    ("nightly", "schedules: expected a list, got 'nightly'"),
])
def test_a_bad_schedule_is_refused_with_its_place_and_reason(tmp_path, schedules, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(configured(tmp_path, schedules), require_keys=False)
    assert f"repositories[0].{problem}" in str(caught.value), caught.value


# --- The client ---------------------------------------------------------------------------------


async def test_the_client_submits_a_missed_scheduled_build_when_it_starts(cluster, aiohttp_client):
    repository = dataclasses.replace(cluster.config.repositories[0], schedules=(NIGHTLY,))
    cluster.config = dataclasses.replace(cluster.config, repositories=(repository, *cluster.config.repositories[1:]))
    records = BuildRecords(records_path(cluster.config.data_dir, CLIENT))
    records.slots.keep({key_of(repository.name, NIGHTLY): 0.0}, {})  # fired last in 1970
    records.close()

    client = await start_client(aiohttp_client, cluster)
    async with asyncio.timeout(10):
        while not (listed := (await (await client.get("/builds")).json())["builds"]) or (
            listed[0]["state"] == "pending"
        ):
            await asyncio.sleep(0.05)

    [build] = listed
    assert (build["repository"], build["branch"], build["event"], build["state"]) == (
        repository.name, "main", "cron", "accepted")
    [operation] = [request.operation for _view, request in cluster.committed.values()]
    assert operation == Operation(repository.name, "main", None, event="cron", slot=operation.slot,
                                  actor=Actor("schedule", "example/nightly"),
                                  delivery=f"schedule:nightly@{operation.slot}")
    assert operation.slot == int(latest_slot(NIGHTLY.cron, time.time()))
