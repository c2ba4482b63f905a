"""The retry worker: operations from SQS into the CRM, each through the API's own delivery path.

Per record, exactly one of:

* delivered (or found delivered before): reported done, SQS deletes it;
* the CRM refuses it, or it is no operation at all: dead-lettered at once with the reason, reported
  done (so SQS deletes it from the source queue), never retried;
* the CRM is down, slow, rate-limiting or misconfigured: hidden for the schedule's next delay and
  reported failed, so SQS hands it back then; on the last allowed receive it is dead-lettered with
  the reason instead (SQS's own redrive to the DLQ stays the safety net for a crashed worker).

Which CRM a record goes to is decided first (``route``): the one its copy names while that is
configured, else the primary (``crm_bridge.delivery.dual_write``). Outcomes are counted per CRM.

A batch in which every record failed is still a normal partial-failure answer, not a Lambda
error: the worker's ``Errors`` alarm is kept for the worker being broken, not the CRM being down.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.delivery.once import OnceOnlyDelivery
from crm_bridge.delivery.queue import OperationQueue, QueueUnavailable
from crm_bridge.errors import (
    CrmConfigurationError,
    CrmError,
    ErrorKind,
    PermanentCrmError,
    RetryableCrmError,
    SettingsError,
)
from crm_bridge.models import Operation, parse_operation
from crm_bridge.observability import get_logger, redact
from crm_bridge.observability.metrics import count, delivered, outcome
from crm_bridge.providers import LeadAction
from crm_bridge.providers.budget import time_budget

WORKER = "crm-bridge"
"""``provider`` of errors that are ours rather than a CRM's (invalid operations, our stores)."""
TIME_RESERVE_SECONDS = 10.0
"""Left for dead-lettering or postponing after the CRM call, before the Lambda's timeout."""


_DONE = {
    LeadAction.HELD: "click held: its visitor session started on that request; written when the session returns",
    LeadAction.FOLDED: "click folded: over its visitor session's hourly cap, counted and not written",
}


class Outcome(StrEnum):
    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already_delivered"
    DEAD_LETTERED = "dead_lettered"


class RetryLater(Exception):
    """Tells the batch processor to report the record failed; its visibility is already set."""

    def __init__(self, error: CrmError, delay_seconds: int) -> None:
        super().__init__(f"retry in {delay_seconds} s: {error}")
        self.error = error
        self.delay_seconds = delay_seconds


def as_crm_error(exc: Exception) -> CrmError | None:
    """The taxonomy's view of a failure to deliver; None for a defect of ours."""
    match exc:
        case CrmError():
            return exc
        case SettingsError():
            return CrmConfigurationError(str(exc), provider="settings")
        case IdempotencyAlreadyInProgressError():
            return RetryableCrmError(
                "another attempt at this operation is running", provider=WORKER, code="in_progress"
            )
        case IdempotencyPersistenceLayerError():
            return RetryableCrmError("idempotency store unavailable", provider=WORKER, code="idempotency_store")
    return None


def invalid_operation_error(exc: ValidationError) -> PermanentCrmError:
    """Why a message body is no operation, without echoing what it holds (personal data)."""
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    where = [".".join(str(part) for part in problem["loc"]) for problem in problems]
    summary = "; ".join(f"{loc or 'body'}: {problem['msg']}" for loc, problem in zip(where, problems, strict=True))
    return PermanentCrmError(
        redact(f"invalid operation: {summary}"), provider=WORKER, code="invalid_operation", field=where[0] or None
    )


@dataclass
class Worker:
    queue: OperationQueue
    schedule: RetrySchedule
    delivery: OnceOnlyDelivery
    route: Callable[[Operation], str]
    """The CRM an operation goes to now; raises SettingsError when the CRM settings are invalid."""
    random: Callable[[], float] = field(default=_random.random)
    """Jitter source (tests pin it)."""

    def handle(self, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        """One SQS batch: process every record, report the ones to receive again."""
        self.delivery.register_lambda_context(context)
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(event=event, record_handler=self.process, processor=processor, context=context)

    def process(self, record: SQSRecord, lambda_context: LambdaContext | None = None) -> Outcome:
        """Deliver one record; raises :class:`RetryLater` when it must come back."""
        attempts = int(record.attributes.approximate_receive_count or 1)
        try:
            operation = parse_operation(record.body)
        except ValidationError as exc:
            return self._poison(record, invalid_operation_error(exc), attempts)
        context = {"operation_id": str(operation.operation_id), "kind": operation.kind.value, "attempts": attempts}
        if operation.provider is not None:
            context["copy_for"] = operation.provider.value
        try:
            crm = self.route(operation)
            context["provider"] = crm
            with self._budget(lambda_context):
                delivery = self.delivery(operation, crm)
        except Exception as exc:
            error = as_crm_error(exc)
            if error is None:
                get_logger().exception("unexpected failure delivering the operation", extra=context)
                count("WorkerUnexpectedErrors")
                error = RetryableCrmError(f"unexpected {type(exc).__name__}", provider=WORKER, code="unexpected")
            context.setdefault("provider", error.provider)  # the CRM settings could not even say which CRM
            if error.kind is ErrorKind.PERMANENT:
                return self._dead_letter(operation, error, attempts, context)
            return self._retry(record, operation, error, attempts, context)
        result = delivery.result
        context |= {"provider": result.provider, "record_id": result.record_id, "action": result.action.value}
        if delivery.replayed:
            count("OperationsAlreadyDelivered")
            get_logger().info("operation was delivered before; the CRM is not called again", extra=context)
            return Outcome.ALREADY_DELIVERED
        delivered(result.provider, result.action, result.elapsed_ms)
        outcome("OperationsDelivered", result.provider)
        get_logger().info(_DONE.get(result.action, "operation delivered"), extra=context)
        return Outcome.DELIVERED

    def _budget(self, context: LambdaContext | None) -> AbstractContextManager[None]:
        """CRM calls may use the invocation's time less a reserve to park or postpone the record."""
        if context is None:
            return nullcontext()
        return time_budget(context.get_remaining_time_in_millis() / 1000 - TIME_RESERVE_SECONDS)

    def _retry(
        self, record: SQSRecord, operation: Operation, error: CrmError, attempts: int, context: dict[str, Any]
    ) -> Outcome:
        log = get_logger()
        details = context | {"error": error.to_dict(), "error_kind": error.kind.value}
        if error.kind is ErrorKind.CONFIGURATION:
            outcome("CrmConfigurationErrors", context["provider"])
        if self.schedule.is_last_attempt(attempts):
            return self._dead_letter(operation, error, attempts, context)
        delay = self.schedule.delay(attempts, retry_after_seconds=error.retry_after_seconds, random=self.random)
        try:
            self.queue.postpone(record.receipt_handle, delay)
        except QueueUnavailable as exc:
            log.warning("could not postpone; the queue's visibility timeout applies", extra=details | {"why": str(exc)})
        outcome("OperationsRetried", context["provider"])
        message = "CRM did not take the operation; retrying later"
        if error.kind is ErrorKind.CONFIGURATION:
            log.error(message + " (configuration: fix credentials or permissions)", extra=details | {"retry_in": delay})
        else:
            log.warning(message, extra=details | {"retry_in": delay})
        raise RetryLater(error, delay)

    def _dead_letter(self, operation: Operation, error: CrmError, attempts: int, context: dict[str, Any]) -> Outcome:
        """Park the operation with its reason; if even that fails, the record fails and comes back."""
        self.queue.dead_letter(operation.message(), error, attempts=attempts)
        outcome("OperationsDeadLettered", context["provider"])
        get_logger().error(
            "operation dead-lettered", extra=context | {"error": error.to_dict(), "error_kind": error.kind.value}
        )
        return Outcome.DEAD_LETTERED

    def _poison(self, record: SQSRecord, error: PermanentCrmError, attempts: int) -> Outcome:
        identity = {
            name: {"DataType": attribute.data_type, "StringValue": attribute.string_value}
            for name, attribute in record.message_attributes.items()
            if attribute.string_value is not None
        }
        self.queue.dead_letter_raw(record.body, error, attempts=attempts, identity=identity)
        count("OperationsDeadLettered")
        get_logger().error(
            "message is no valid operation; dead-lettered",
            extra={"message_id": record.message_id, "error": error.to_dict(), "error_kind": error.kind.value},
        )
        return Outcome.DEAD_LETTERED
