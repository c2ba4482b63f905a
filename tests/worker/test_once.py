"""Exactly-once delivery per operation id, on Powertools idempotency over DynamoDB (moto)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from moto import mock_aws

from crm_bridge.delivery.once import KEY_PREFIX, OnceOnlyDelivery
from crm_bridge.errors import RetryableCrmError
from crm_bridge.models import Operation
from crm_bridge.providers import LeadAction, ProviderResult
from infra.local.http_events import LambdaContext
from tests.worker.conftest import application


@pytest.fixture
def table() -> Iterator[str]:
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield "idempotency"


class Crm:
    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    def __call__(self, operation: Operation) -> ProviderResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableCrmError("down", provider="espocrm")
        return ProviderResult(
            provider="espocrm", record_id=f"lead-{self.calls}", action=LeadAction.CREATED, elapsed_ms=3
        )


def once(crm: Crm, table: str) -> OnceOnlyDelivery:
    delivery = OnceOnlyDelivery(crm, DynamoDBPersistenceLayer(table_name=table))
    delivery.register_lambda_context(LambdaContext())  # type: ignore[arg-type]
    return delivery


def test_a_second_delivery_of_the_same_operation_returns_the_first_result(table: str) -> None:
    crm = Crm()
    operation = application(1)

    first, second = once(crm, table)(operation), once(crm, table)(operation)

    assert crm.calls == 1
    assert (first.replayed, second.replayed) == (False, True)
    assert second.result == first.result


def test_a_failed_delivery_leaves_nothing_behind_so_the_retry_runs(table: str) -> None:
    crm = Crm(failures=1)
    delivery = once(crm, table)
    operation = application(1)

    with pytest.raises(RetryableCrmError):
        delivery(operation)
    result = delivery(operation)

    assert (crm.calls, result.replayed, result.result.record_id) == (2, False, "lead-2")


def test_records_are_keyed_by_operation_id_only_and_outlive_the_dead_letter_queue(table: str) -> None:
    once(Crm(), table)(application(1))

    (item,) = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert item["id"]["S"].startswith(f"{KEY_PREFIX}#")
    assert item["status"]["S"] == "COMPLETED"
    assert int(item["expiration"]["N"]) > time.time() + 14 * 86400  # the DLQ keeps messages 14 days
    assert once(Crm(), table)(application(2)).replayed is False  # another operation, another key
