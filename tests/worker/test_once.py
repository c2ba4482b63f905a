"""Exactly-once delivery per operation id, on Powertools idempotency over DynamoDB (moto)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from moto import mock_aws

from crm_bridge.delivery.once import KEY_PREFIX, OnceOnlyDelivery, once_key
from crm_bridge.errors import RetryableCrmError
from crm_bridge.models import Operation
from crm_bridge.providers import LeadAction, ProviderResult
from crm_bridge.settings import CrmProviderName
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

    def __call__(self, operation: Operation, crm: str) -> ProviderResult:
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

    first, second = once(crm, table)(operation, "espocrm"), once(crm, table)(operation, "espocrm")

    assert crm.calls == 1
    assert (first.replayed, second.replayed) == (False, True)
    assert second.result == first.result


def test_a_failed_delivery_leaves_nothing_behind_so_the_retry_runs(table: str) -> None:
    crm = Crm(failures=1)
    delivery = once(crm, table)
    operation = application(1)

    with pytest.raises(RetryableCrmError):
        delivery(operation, "espocrm")
    result = delivery(operation, "espocrm")

    assert (crm.calls, result.replayed, result.result.record_id) == (2, False, "lead-2")


def test_records_are_keyed_by_operation_id_only_and_outlive_the_dead_letter_queue(table: str) -> None:
    once(Crm(), table)(application(1), "espocrm")

    (item,) = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert item["id"]["S"].startswith(f"{KEY_PREFIX}#")
    assert item["status"]["S"] == "COMPLETED"
    assert int(item["expiration"]["N"]) > time.time() + 14 * 86400  # the DLQ keeps messages 14 days
    assert once(Crm(), table)(application(2), "espocrm").replayed is False  # another operation, another key


def test_records_written_before_dual_writes_still_stop_a_second_delivery(table: str) -> None:
    """An operation that names no CRM keeps the key it had when records were keyed by the operation
    itself: what was delivered before the upgrade is not delivered again after it."""
    operation = application(1)
    config = IdempotencyConfig(event_key_jmespath="operation_id", raise_on_no_idempotency_key=True)
    config.register_lambda_context(LambdaContext())  # type: ignore[arg-type]
    before = idempotent_function(
        data_keyword_argument="operation",
        persistence_store=DynamoDBPersistenceLayer(table_name=table),
        config=config,
        output_serializer=PydanticSerializer(ProviderResult),
        key_prefix=KEY_PREFIX,
    )(lambda *, operation: Crm()(operation, "espocrm"))
    before(operation=operation)

    crm = Crm()
    assert once(crm, table)(operation, "espocrm").replayed is True
    assert crm.calls == 0


def test_each_crm_has_its_own_record_of_a_dual_writes_copies(table: str) -> None:
    operation = application(1)
    for_espocrm = operation.model_copy(update={"provider": CrmProviderName.ESPOCRM})
    for_bitrix24 = operation.model_copy(update={"provider": CrmProviderName.BITRIX24})
    crm = Crm()

    assert once(crm, table)(for_espocrm, "espocrm").replayed is False
    assert once(crm, table)(for_bitrix24, "bitrix24").replayed is False, "the primary's record hides nothing"
    # The shadow turned off: its copy goes to the primary, whose record it finds.
    assert once(crm, table)(for_bitrix24, "espocrm").replayed is True
    assert crm.calls == 2
    assert (once_key(for_bitrix24, "espocrm"), once_key(operation, "espocrm")) == (
        f"espocrm#{operation.operation_id}",
        str(operation.operation_id),
    )
