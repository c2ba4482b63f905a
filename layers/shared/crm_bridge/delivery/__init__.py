"""Getting operations to the CRM: now, later from the queue, or to the dead-letter queue.

Names are loaded from their modules on first use (PEP 562): the redirect imports
``crm_bridge.delivery.queue`` and ``.recovery`` alone, without the delivery path's CRM providers
and pydantic models, which it never uses (docs/performance.md).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crm_bridge.delivery.execute import VisitorSessions, deliver
    from crm_bridge.delivery.queue import OperationQueue, QueueUnavailable
    from crm_bridge.delivery.recovery import DeliveryUnavailable
    from crm_bridge.delivery.submission import Submission, SubmissionStatus, enqueue
    from crm_bridge.delivery.submit import deliver_or_queue

_MODULES = {
    "VisitorSessions": "execute",
    "deliver": "execute",
    "OperationQueue": "queue",
    "QueueUnavailable": "queue",
    "DeliveryUnavailable": "recovery",
    "Submission": "submission",
    "SubmissionStatus": "submission",
    "deliver_or_queue": "submit",
    "enqueue": "submission",
}

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


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"crm_bridge.delivery.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
