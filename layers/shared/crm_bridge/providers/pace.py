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

import math
import threading
import time
from collections.abc import Callable

from crm_bridge.providers.budget import remaining_seconds
from crm_bridge.providers.http import BudgetExhausted

PACER_BURST = 2
"""Requests a container may send without waiting after a pause (one operation's worth)."""


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second: what a request rate limit is (the client-side
    pacer below, and API Gateway's route throttles as the local gateway applies them). Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self, max_wait: float = 0.0) -> float | None:
        """Take a token: 0.0 when one is there; else the seconds until the next one, which is then
        the caller's (it waits them), when that is less than ``max_wait``; else None, nothing taken."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            wait = (1 - self._tokens) / self.rate
            if wait >= max_wait:
                return None
            self._tokens = 0.0
            self._updated = now + wait
            return wait


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
        self._bucket = TokenBucket(rate_per_second, burst, clock)
        self._sleep = sleep
        self.waited_seconds = 0.0
        """Total time spent waiting for a token (for benchmarks and tests)."""

    def acquire(self, provider: str) -> None:
        """Take one token, waiting for it when the bucket is empty."""
        remaining = remaining_seconds()
        wait = self._bucket.take(max_wait=math.inf if remaining is None else remaining)
        if wait is None:
            raise BudgetExhausted("the CRM's request rate leaves no room within the time budget", provider=provider)
        if wait:
            self._sleep(wait)
            self.waited_seconds += wait
