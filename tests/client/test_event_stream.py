"""The client's event stream (client/events.py): who hears of an event, in which order, and what
one observer's failure costs."""

import logging

import pytest

from client.events import EventStream, Submitted
from pbft.build import Operation

EVENT = Submitted("1", Operation("example", "master"))


def stream_telling(heard: list[str]) -> EventStream:
    stream = EventStream()
    stream.subscribe(lambda event: heard.append("status"))
    stream.subscribe(lambda event: heard.append("record"), critical=True)
    stream.subscribe(lambda event: heard.append("notification"))
    return stream


def test_the_records_hear_first_then_the_others_in_their_order():
    heard: list[str] = []
    stream_telling(heard).publish(EVENT)
    assert heard == ["record", "status", "notification"]


async def test_a_verdict_reaches_no_one_but_the_records_before_they_are_on_disk():
    heard: list[str] = []

    async def durable():
        heard.append("committed")

    await stream_telling(heard).publish_once_durable(EVENT, durable)
    assert heard == ["record", "committed", "status", "notification"]


async def test_a_commit_that_fails_tells_no_one_else():
    heard: list[str] = []

    async def durable():
        raise OSError("disk full")

    with pytest.raises(OSError):
        await stream_telling(heard).publish_once_durable(EVENT, durable)
    assert heard == ["record"]


def test_a_failing_observer_is_logged_and_the_rest_still_hear(caplog):
    heard: list[str] = []
    stream = EventStream()
    stream.subscribe(lambda event: 1 / 0)
    stream.subscribe(lambda event: heard.append("after"))
    with caplog.at_level(logging.ERROR, logger="client.events"):
        stream.publish(EVENT)
    assert heard == ["after"] and "failed on Submitted" in caplog.text


def test_a_failing_critical_observer_fails_the_publisher():
    stream = EventStream()
    stream.subscribe(lambda event: 1 / 0, critical=True)
    with pytest.raises(ZeroDivisionError):
        stream.publish(EVENT)
