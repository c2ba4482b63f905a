"""Getting operations to the CRM: now, later from the queue, or to the dead-letter queue."""

from crm_bridge.delivery.deliver import VisitorSessions, deliver
from crm_bridge.delivery.queue import OperationQueue, QueueUnavailable
from crm_bridge.delivery.submit import (
    DeliveryUnavailable,
    Submission,
    SubmissionStatus,
    deliver_or_queue,
    enqueue,
)

__all__ = [
    "DeliveryUnavailable",
    "OperationQueue",
    "QueueUnavailable",
    "Submission",
    "SubmissionStatus",
    "VisitorSessions",
    "deliver",
    "deliver_or_queue",
    "enqueue",
]
