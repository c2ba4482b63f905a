"""What the API does with an operation: deliver it now within a time budget, or keep it safe.

Outcomes, in order of preference:
* delivered: the CRM has it (201);
* queued: the CRM was slow, down or misconfigured; the worker retries it (202);
* dead-lettered: the CRM refuses the data; an operator fixes the mapping and redrives it (202);
* neither the CRM nor the queue took it: :class:`DeliveryUnavailable`, after sealing the operation
  into the log for recovery (503, the client retries).

With a shadow CRM, the shadow's copy is queued once that outcome is decided (``crm_bridge.delivery.dual_write``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from crm_bridge.delivery.dual_write import shadowed
from crm_bridge.delivery.execute import VisitorSessions, deliver
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.recovery import queue_or_seal
from crm_bridge.delivery.submission import Submission, SubmissionStatus, queued
from crm_bridge.errors import CrmConfigurationError, CrmError, PermanentCrmError, SettingsError
from crm_bridge.models import Operation
from crm_bridge.observability import get_logger
from crm_bridge.providers import CrmProvider
from crm_bridge.providers.budget import time_budget


def deliver_or_queue(
    operation: Operation,
    *,
    provider: Callable[[], CrmProvider],
    queue: OperationQueue,
    budget_seconds: float,
    sessions: VisitorSessions | None = None,
    clock: Callable[[], float] | None = None,
) -> Submission:
    """Try the CRM within ``budget_seconds``; otherwise queue or dead-letter the operation."""
    log = get_logger()
    with shadowed(operation.message(), queue) as message:
        try:
            with time_budget(budget_seconds, clock):
                result = deliver(operation, provider(), sessions)
        except PermanentCrmError as error:
            log.warning("CRM refused the operation; dead-lettered", extra={"error": error.to_dict()})
            queue_or_seal(message, partial(queue.dead_letter, message, error, attempts=1))
            return Submission(SubmissionStatus.DEAD_LETTERED, operation, error=error)
        except SettingsError as exc:
            settings_error = CrmConfigurationError(str(exc), provider="settings")
            log.error("CRM settings are invalid; queued", extra={"error": settings_error.to_dict()})
            return queued(operation, message, queue, settings_error)
        except CrmError as error:
            log.warning("CRM unavailable now; queued", extra={"error": error.to_dict()})
            return queued(operation, message, queue, error)
        return Submission(SubmissionStatus.DELIVERED, operation, result=result)
