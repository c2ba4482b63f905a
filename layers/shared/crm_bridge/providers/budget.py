"""A time budget for CRM calls: the applicant never waits on a slow CRM longer than it.

The API wraps its synchronous attempt in :func:`time_budget`; every HTTP request the provider makes
inside it gets a timeout no longer than what is left, and no new request starts once the budget is
spent. No background thread keeps running after the answer (a Lambda is frozen then), so the only
ambiguity left is a write whose answer was cut off, which the upsert's lookup resolves on retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class _Budget:
    deadline: float
    clock: Callable[[], float]


_current: ContextVar[_Budget | None] = ContextVar("crm_time_budget", default=None)


@contextmanager
def time_budget(seconds: float, clock: Callable[[], float] | None = None) -> Iterator[None]:
    """Limit every CRM request made inside the block to ``seconds`` in total (``clock``: for tests;
    by default the monotonic clock, looked up at call time)."""
    clock = clock or time.monotonic
    token = _current.set(_Budget(clock() + seconds, clock))
    try:
        yield
    finally:
        _current.reset(token)


def remaining_seconds() -> float | None:
    """Seconds left in the current budget, or None outside any budget."""
    budget = _current.get()
    return None if budget is None else budget.deadline - budget.clock()
