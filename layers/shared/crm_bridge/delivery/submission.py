"""What became of an operation the API took, and the queue-only path (messenger events).

Apart from ``crm_bridge.delivery.submit`` so that a function that only queues does not import the
CRM providers it never calls (docs/performance.md). With a shadow CRM, the shadow's copy is queued
after the primary's (``crm_bridge.delivery.dual_write``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING

from crm_bridge.delivery.dual_write import shadowed
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.recovery import queue_or_seal
from crm_bridge.envelope import QueueMessage
from crm_bridge.errors import CrmError

if TYPE_CHECKING:
    from crm_bridge.models import Operation
    from crm_bridge.providers import ProviderResult


class SubmissionStatus(StrEnum):
    DELIVERED = "delivered"
    QUEUED = "queued"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Submission:
    status: SubmissionStatus
    operation: Operation
    result: ProviderResult | None = None
    error: CrmError | None = None


MAX_QUEUE_DELAY_SECONDS = 900
"""SQS's longest DelaySeconds."""


def enqueue(operation: Operation, queue: OperationQueue) -> Submission:
    """Queue for the worker, and the shadow CRM's copy after it."""
    with shadowed(operation.message(), queue) as message:
        return queued(operation, message, queue)


def queued(
    operation: Operation, message: QueueMessage, queue: OperationQueue, error: CrmError | None = None
) -> Submission:
    """Queue ``message``, the operation's copy for the primary, for the worker (``error``: why the CRM
    did not take it now, if it was tried). The worker sees it no sooner than the error's retry-after:
    a rate limit's wait, or the time a write that got no answer is given to land (so that its retry
    finds it rather than writing it again)."""
    wait = error.retry_after_seconds if error is not None and error.retry_after_seconds else 0
    delay = min(MAX_QUEUE_DELAY_SECONDS, math.ceil(wait))
    queue_or_seal(message, partial(queue.send, message, delay_seconds=delay))
    return Submission(SubmissionStatus.QUEUED, operation, error=error)
