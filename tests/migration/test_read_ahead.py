"""The read-ahead of the backfill and the move (:func:`crm_bridge.migrate.backfill.read_ahead`): the
next item is read while the consumer writes the previous one, in order, at most one waiting, a read's
failure raised where the item would have come, and nothing more read once the consumer stops."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from crm_bridge.migrate.backfill import read_ahead

WAIT = 60.0
"""Seconds an event may take to be set before the test fails (it is set in milliseconds; a loaded machine may lag)."""


def test_items_arrive_in_order_made_on_a_daemon_thread_of_the_given_name() -> None:
    threads: list[threading.Thread] = []

    def produce() -> Generator[int]:
        threads.append(threading.current_thread())
        yield from range(7)

    assert list(read_ahead(produce(), name="crm-bridge-test-reader")) == list(range(7))
    (thread,) = threads
    assert thread is not threading.current_thread()
    assert thread.name == "crm-bridge-test-reader"
    assert thread.daemon


def test_the_next_item_is_made_while_the_consumer_holds_the_previous_one() -> None:
    second_made = threading.Event()
    third_asked = threading.Event()

    def produce() -> Generator[str]:
        yield "first"
        second_made.set()
        yield "second"
        third_asked.set()
        yield "third"

    items = read_ahead(produce(), name="crm-bridge-test-reader")
    assert next(items) == "first"

    assert second_made.wait(WAIT)  # while "first" is still being consumed
    assert third_asked.wait(WAIT)  # "second" waits in the queue, the producer goes on
    assert list(items) == ["second", "third"]


def test_the_producer_runs_at_most_one_item_ahead_of_what_waits() -> None:
    made: list[int] = []
    blocked = threading.Event()

    def produce() -> Generator[int]:
        for number in range(100):
            made.append(number)
            if number == 2:
                blocked.set()  # 0 handed out, 1 waiting in the queue, 2 made: the producer waits to hand it over
            yield number

    items = read_ahead(produce(), name="crm-bridge-test-reader")
    assert next(items) == 0
    assert blocked.wait(WAIT)
    items.close()
    assert made == [0, 1, 2]


def test_a_failure_of_the_producer_is_raised_to_the_consumer_after_the_items_before_it() -> None:
    def produce() -> Generator[int]:
        yield 1
        raise ConnectionError("the portal went away")

    items = read_ahead(produce(), name="crm-bridge-test-reader")
    assert next(items) == 1
    with pytest.raises(ConnectionError, match="the portal went away"):
        next(items)


def test_closing_early_stops_the_producer_and_closes_it() -> None:
    threads: list[threading.Thread] = []
    closed = threading.Event()
    made: list[int] = []

    def produce() -> Generator[int]:
        threads.append(threading.current_thread())
        try:
            number = 0
            while True:
                made.append(number)
                yield number
                number += 1
        finally:
            closed.set()

    items = read_ahead(produce(), name="crm-bridge-test-reader")
    assert next(items) == 0
    items.close()

    assert closed.wait(WAIT)
    (thread,) = threads
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(made) <= 3  # what it had made when the consumer stopped, nothing after
