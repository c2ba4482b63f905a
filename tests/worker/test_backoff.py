"""The retry schedule: what it promises, whatever the jitter draws."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from crm_bridge.delivery.backoff import MAX_POSTPONE_SECONDS, SQS_MAX_VISIBILITY_SECONDS, RetrySchedule

DEFAULT = RetrySchedule()
LOWEST, HIGHEST = 0.999_999, 0.0
"""Jitter draws that give the shortest and the longest delays."""


def test_the_first_retry_comes_within_ten_seconds() -> None:
    assert 8 <= DEFAULT.delay(1, random=lambda: LOWEST) <= DEFAULT.delay(1, random=lambda: HIGHEST) == 10


def test_delays_double_up_to_an_hour() -> None:
    nominal = [DEFAULT.nominal_delay(attempt) for attempt in range(1, 13)]
    assert nominal == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]


def test_retries_span_at_least_twelve_hours_before_the_dead_letter_queue_whatever_the_jitter() -> None:
    shortest = sum(DEFAULT.delay(attempt, random=lambda: LOWEST) for attempt in range(1, DEFAULT.max_receives))
    assert shortest >= DEFAULT.minimum_span_seconds() >= 24 * 3600 > 12 * 3600
    assert DEFAULT.maximum_span_seconds() <= 31 * 3600


def drawing(value: float) -> Callable[[], float]:
    return lambda: value


def test_jitter_spreads_retries_but_never_beyond_the_nominal_delay() -> None:
    delays = {DEFAULT.delay(5, random=drawing(i / 10)) for i in range(10)}
    assert len(delays) > 5
    assert all(0.8 * 160 <= delay <= 160 for delay in delays)


def test_a_retry_after_hint_is_a_floor_and_sqs_limit_a_ceiling() -> None:
    assert DEFAULT.delay(1, retry_after_seconds=90, random=lambda: 0.0) == 90
    assert DEFAULT.delay(12, retry_after_seconds=1, random=lambda: 0.0) == 3600
    assert DEFAULT.delay(1, retry_after_seconds=10 * 86400, random=lambda: 0.0) == MAX_POSTPONE_SECONDS
    assert MAX_POSTPONE_SECONDS < SQS_MAX_VISIBILITY_SECONDS


def test_the_last_attempt_is_the_last_receive_sqs_allows() -> None:
    schedule = RetrySchedule(max_receives=3)
    assert [schedule.is_last_attempt(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_far_attempts_do_not_overflow() -> None:
    assert RetrySchedule(multiplier=10, max_receives=1000).nominal_delay(1000) == 3600


@pytest.mark.parametrize(
    "wrong",
    [
        {"first_delay_seconds": 0},
        {"max_delay_seconds": 5, "first_delay_seconds": 10},
        {"max_delay_seconds": 12 * 3600},
        {"jitter": 1.0},
        {"max_receives": 1001},
    ],
)
def test_impossible_schedules_are_refused(wrong: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetrySchedule.model_validate(wrong)
