"""When the worker tries an operation again: exponential backoff with jitter, capped, per message.

SQS counts the receives of a message (``ApproximateReceiveCount``); after the n-th failed receive the
worker hides the message for ``delay(n)`` seconds (ChangeMessageVisibility), and after
``max_receives`` receives it gives up and dead-letters it. The defaults retry after about 10 s,
then back off to one attempt an hour, and keep trying for more than a day: a CRM restart costs
seconds, a weekend-night outage costs no lead. The template's ``maxReceiveCount`` is the same
number as ``max_receives`` (tests hold the two together).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

SQS_MAX_VISIBILITY_SECONDS = 12 * 3600
MAX_POSTPONE_SECONDS = SQS_MAX_VISIBILITY_SECONDS - 15 * 60
"""SQS's 12 hours count from the receive, and the worker may have run for up to 15 minutes by then."""


class RetrySchedule(BaseModel):
    """Delays between attempts. The n-th delay is ``first * multiplier**(n-1)``, at most ``max``,
    less a random share of up to ``jitter`` of it (so retries of many messages spread out, and
    no delay ever exceeds its nominal value)."""

    model_config = ConfigDict(frozen=True)

    first_delay_seconds: int = Field(default=10, ge=1, le=900)
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    max_delay_seconds: int = Field(default=3600, ge=1, le=MAX_POSTPONE_SECONDS)
    jitter: float = Field(default=0.2, ge=0.0, lt=1.0)
    max_receives: int = Field(default=39, ge=1, le=1000, description="The queue's maxReceiveCount")

    @model_validator(mode="after")
    def _cap_not_below_first(self) -> RetrySchedule:
        if self.max_delay_seconds < self.first_delay_seconds:
            raise ValueError("the longest delay cannot be shorter than the first")
        return self

    def nominal_delay(self, receive_count: int) -> float:
        """The delay after the ``receive_count``-th receive failed, before jitter."""
        exponent = min(max(receive_count, 1) - 1, 64)  # far past the cap already; no float overflow
        return min(self.first_delay_seconds * self.multiplier**exponent, float(self.max_delay_seconds))

    def delay(
        self, receive_count: int, *, retry_after_seconds: float | None = None, random: Callable[[], float]
    ) -> int:
        """Seconds to hide the message for; a CRM's retry-after hint is a floor, SQS's limit a ceiling."""
        jittered = self.nominal_delay(receive_count) * (1 - self.jitter * random())
        wanted = max(jittered, retry_after_seconds or 0.0)
        return max(1, min(math.ceil(wanted), MAX_POSTPONE_SECONDS))

    def is_last_attempt(self, receive_count: int) -> bool:
        """After this receive SQS would move the message to the DLQ rather than deliver it again."""
        return receive_count >= self.max_receives

    def minimum_span_seconds(self) -> float:
        """How long retries last at the least (every jitter at its largest), first receive to last."""
        return sum((1 - self.jitter) * self.nominal_delay(n) for n in range(1, self.max_receives))

    def maximum_span_seconds(self) -> float:
        """How long retries last at the most, not counting the time the attempts themselves take."""
        return sum(self.nominal_delay(n) for n in range(1, self.max_receives))
