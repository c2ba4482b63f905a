"""``Idempotency-Key``: the same submission retried returns its first answer and creates nothing new.

Built on Powertools idempotency (DynamoDB). The key also fixes the operation id (UUIDv5), so even a
retry that got a 503 the first time produces the same operation for the worker's own idempotency.
Reusing a key with a different body is refused; if the idempotency store itself is down, the
submission goes through without it: a possible duplicate is resolved by the CRM upsert, a lost
application is not resolvable at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.keys import operation_id_for
from crm_bridge.aws import dynamodb_client
from crm_bridge.observability import get_logger

__all__ = ["IDEMPOTENCY_EXPIRY_SECONDS", "Answer", "IdempotentSubmissions", "operation_id_for"]

IDEMPOTENCY_EXPIRY_SECONDS = 24 * 3600

Answer = dict[str, Any]
"""What an idempotent submission returns and what is replayed: ``{"status": int, "body": {...}}``."""


class IdempotentSubmissions:
    """Runs a submission at most once per ``Idempotency-Key`` and body."""

    def __init__(self, table_name: str | None) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            expires_after_seconds=IDEMPOTENCY_EXPIRY_SECONDS,
        )
        self._run_once: Callable[..., Answer] | None = None
        if table_name:
            self._run_once = idempotent_function(
                data_keyword_argument="request",
                persistence_store=DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client()),
                config=self._config,
            )(self._call)

    def register_lambda_context(self, context: LambdaContext) -> None:
        """Lets an in-progress record expire with the invocation, should the Lambda time out."""
        self._config.register_lambda_context(context)

    @staticmethod
    def _call(*, request: dict[str, Any], submit: Callable[[], Answer]) -> Answer:
        return submit()

    def run(self, key: str | None, body: Any, submit: Callable[[], Answer]) -> Answer:
        if key is None or self._run_once is None:
            return submit()
        answers: list[Answer] = []

        def submit_once() -> Answer:
            answers.append(submit())
            return answers[0]

        try:
            return self._run_once(request={"key": key, "body": body}, submit=submit_once)
        except IdempotencyPersistenceLayerError as exc:
            get_logger().warning("idempotency store unavailable", extra={"error_type": type(exc).__name__})
            # Never submit twice: if the store failed only while recording the answer, return it.
            return answers[0] if answers else submit()
