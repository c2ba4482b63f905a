"""Client-side pacing of CRM requests: a token bucket per container.

Bitrix24 counts requests per portal in a leaky bucket (about 2 requests/s, a burst of 50, shared
with every other integration of the portal); going over it answers ``503 QUERY_LIMIT_EXCEEDED``,
which costs the worker a retry. The worker's containers are at most the event source's
``MaximumConcurrency``, so each one paced at ``BITRIX24_REQUESTS_PER_SECOND`` keeps them all under
``MaximumConcurrency x rate`` together, below the portal's limit, and a backlog drains at that
rate instead of bouncing off the limit.

A request that would have to wait past the caller's time budget (:mod:`crm_bridge.providers.budget`)
is not sent: :class:`BudgetExhausted` (retryable) is raised at once instead of sleeping in vain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from crm_bridge.providers.budget import remaining_seconds
from crm_bridge.providers.http import BudgetExhausted

PACER_BURST = 2
"""Requests a container may send without waiting after a pause (one operation's worth)."""


class RequestPacer:
    """At most ``rate_per_second`` requests per second on average, ``burst`` at once after a pause."""

    def __init__(
        self,
        rate_per_second: float,
        *,
        burst: int = PACER_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a pacer needs a positive rate and a burst of at least 1")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0
        """Total time spent waiting for a token (for benchmarks and tests)."""

    def acquire(self, provider: str) -> None:
        """Take one token, waiting for it when the bucket is empty."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_second)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            wait = (1 - self._tokens) / self.rate_per_second
            remaining = remaining_seconds()
            if remaining is not None and wait >= remaining:
                raise BudgetExhausted("the CRM's request rate leaves no room within the time budget", provider=provider)
            self._sleep(wait)
            self.waited_seconds += wait
            self._tokens = 0.0
            self._updated = now + wait
