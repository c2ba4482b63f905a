"""Exactly-once effect on top of at-least-once SQS: an operation that reached the CRM is not sent again.

Powertools idempotency, keyed by the operation id, in DynamoDB: a message SQS delivers twice, or
one redriven from the dead-letter queue after it had in fact succeeded, gets the stored result
instead of a second CRM write. A failed delivery stores nothing, so its retries run for real. The
record outlives every retry and every redrive (the dead-letter queue keeps messages 14 days).

A dual-write's copies (``crm_bridge.delivery.dual_write``) share their operation id, so a copy that
names its CRM is keyed by the CRM it is delivered to as well (:func:`once_key`): the primary's record
never hides the shadow's delivery, and a copy sent to the primary instead (its CRM no longer
configured) finds the primary's record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.models import Operation
from crm_bridge.providers import ProviderResult

DEFAULT_EXPIRY_SECONDS = 15 * 86400
"""Longer than the dead-letter queue's 14-day retention: whatever can still be redriven is covered."""
KEY_PREFIX = "crm-bridge.operation"
"""The same key for every function, so that the API and the worker could share finished operations."""


@dataclass(frozen=True)
class Delivery:
    result: ProviderResult
    replayed: bool
    """True when the stored result of an earlier delivery was returned and the CRM was not called."""


def once_key(operation: Operation, crm: str) -> str:
    """What an operation's once-only record is keyed by when it goes to ``crm``: its id alone when it
    names no CRM (as every operation did before dual-writes: their records stay valid), else
    ``<crm>#<operation id>``."""
    return str(operation.operation_id) if operation.provider is None else f"{crm}#{operation.operation_id}"


class OnceOnlyDelivery:
    """Runs ``deliver`` at most once per :func:`once_key` (per expiry period)."""

    def __init__(
        self,
        deliver: Callable[[Operation, str], ProviderResult],
        persistence_store: BasePersistenceLayer,
        *,
        expires_after_seconds: int = DEFAULT_EXPIRY_SECONDS,
    ) -> None:
        self._deliver = deliver
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        self._run_once: Callable[..., ProviderResult] = idempotent_function(
            data_keyword_argument="record",
            persistence_store=persistence_store,
            config=self._config,
            output_serializer=PydanticSerializer(ProviderResult),
            key_prefix=KEY_PREFIX,
        )(self._call)

    def register_lambda_context(self, context: LambdaContext) -> None:
        """Lets an in-progress record expire with the invocation, should the Lambda time out mid-call."""
        self._config.register_lambda_context(context)

    def _call(self, *, record: dict[str, str], operation: Operation, crm: str, executed: list[bool]) -> ProviderResult:
        executed.append(True)
        return self._deliver(operation, crm)

    def __call__(self, operation: Operation, crm: str) -> Delivery:
        """Deliver to ``crm``, or return what the first delivery returned. Raises what ``deliver``
        raises, and Powertools' ``IdempotencyAlreadyInProgressError`` while another attempt is running."""
        executed: list[bool] = []
        record = {"key": once_key(operation, crm)}  # hashed as the operation id alone was before
        result = self._run_once(record=record, operation=operation, crm=crm, executed=executed)
        return Delivery(result=result, replayed=not executed)
