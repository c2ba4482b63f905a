"""The retry worker behind the SQS queue: same delivery path as the API, backoff, DLQ, exactly once."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from crm_bridge.aws import dynamodb_client
from crm_bridge.delivery import OperationQueue, deliver
from crm_bridge.delivery.once import OnceOnlyDelivery
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.models import Operation
from crm_bridge.providers import CrmProvider, ProviderResult, get_provider
from crm_bridge.worker.crms import ConfiguredCrms
from crm_bridge.worker.processor import Outcome, RetryLater, Worker
from crm_bridge.worker.settings import WorkerSettings, get_worker_settings, load_worker_settings

__all__ = [
    "Outcome",
    "RetryLater",
    "Worker",
    "WorkerSettings",
    "build_worker",
    "get_worker",
    "load_worker_settings",
]


def build_worker(settings: WorkerSettings, *, sqs_client: Any | None = None) -> Worker:
    """A worker wired to AWS as configured. The CRM is looked up per operation, so a CRM whose
    settings are broken is a retryable configuration error, not a dead worker."""
    sessions = DynamoDbVisitorSessions(settings.sessions_table, ttl_seconds=settings.session_ttl_days * 86400)

    def primary() -> CrmProvider:
        return get_provider()  # looked up on each call, as this module's name (bench/warm_proc.py replaces it)

    crms = ConfiguredCrms(primary)

    def deliver_now(operation: Operation, crm: str) -> ProviderResult:
        return deliver(operation, crms.provider(crm), sessions)

    return Worker(
        queue=OperationQueue(settings.queue_url, settings.dead_letter_queue_url, client=sqs_client),
        schedule=settings.retry,
        delivery=OnceOnlyDelivery(
            deliver_now,
            DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb_client()),
            expires_after_seconds=settings.idempotency_expiry_seconds,
        ),
        route=crms.route,
    )


@cache
def get_worker() -> Worker:
    """The container's worker; raises SettingsError naming what is missing or invalid."""
    return build_worker(get_worker_settings())
