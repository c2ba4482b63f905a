"""The worker's decisions on one record, with stand-ins for the CRM and SQS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.delivery.once import Delivery
from crm_bridge.delivery.queue import (
    MAX_MESSAGE_ATTRIBUTES,
    OperationQueue,
    dead_letter_attributes,
    operation_attributes,
)
from crm_bridge.errors import ErrorKind, PermanentCrmError, RetryableCrmError, SettingsError
from crm_bridge.models import Operation, dump_operation
from crm_bridge.providers import LeadAction, ProviderResult
from crm_bridge.worker import Outcome, RetryLater, Worker
from tests.worker.conftest import application


class FakeSqs:
    def __init__(self, *, fail: set[str] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail or set()

    def _record(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls.append((name, kwargs))
        if name in self.fail:
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, name)
        return {"MessageId": "m-1"}

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        return self._record("send_message", kwargs)

    def change_message_visibility(self, **kwargs: Any) -> dict[str, Any]:
        return self._record("change_message_visibility", kwargs)


class FakeDelivery:
    """Stands in for OnceOnlyDelivery: raises or returns what the test says."""

    def __init__(self, outcome: Callable[[Operation], ProviderResult]) -> None:
        self.outcome = outcome

    def register_lambda_context(self, context: Any) -> None:
        pass

    def __call__(self, operation: Operation, crm: str) -> Delivery:
        return Delivery(self.outcome(operation), replayed=False)


def raising(error: Exception) -> Callable[[Operation], ProviderResult]:
    def outcome(operation: Operation) -> ProviderResult:
        raise error

    return outcome


def delivered(operation: Operation) -> ProviderResult:
    return ProviderResult(provider="espocrm", record_id="lead-1", action=LeadAction.CREATED, elapsed_ms=12.5)


def worker_with(outcome: Callable[[Operation], ProviderResult], sqs: FakeSqs) -> Worker:
    return Worker(
        queue=OperationQueue("https://sqs/queue", "https://sqs/dlq", client=sqs),
        schedule=RetrySchedule(max_receives=5),
        delivery=FakeDelivery(outcome),  # type: ignore[arg-type]
        route=lambda operation: "espocrm",
        random=lambda: 0.0,
    )


def record(operation: Operation, receive_count: int = 1) -> SQSRecord:
    return SQSRecord(
        {
            "messageId": str(uuid4()),
            "receiptHandle": "receipt-1",
            "body": dump_operation(operation),
            "attributes": {"ApproximateReceiveCount": str(receive_count)},
            "messageAttributes": {},
            "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:crm-operations",
        }
    )


def test_a_delivered_operation_is_done() -> None:
    sqs = FakeSqs()
    assert worker_with(delivered, sqs).process(record(application(1))) is Outcome.DELIVERED
    assert sqs.calls == []


def test_a_retry_after_hint_longer_than_the_backoff_wins() -> None:
    sqs = FakeSqs()
    hint = RetryableCrmError("rate limited", provider="bitrix24", retry_after_seconds=120)

    with pytest.raises(RetryLater) as later:
        worker_with(raising(hint), sqs).process(record(application(1)))

    assert later.value.delay_seconds == 120
    assert sqs.calls == [
        (
            "change_message_visibility",
            {"QueueUrl": "https://sqs/queue", "ReceiptHandle": "receipt-1", "VisibilityTimeout": 120},
        )
    ]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (IdempotencyAlreadyInProgressError("in progress"), "in_progress"),
        (IdempotencyPersistenceLayerError("dynamodb down"), "idempotency_store"),
        (KeyError("a defect of ours"), "unexpected"),
    ],
)
def test_failures_of_our_own_are_retried_like_a_crm_outage(failure: Exception, code: str) -> None:
    with pytest.raises(RetryLater) as later:
        worker_with(raising(failure), FakeSqs()).process(record(application(1)))

    assert later.value.error.code == code
    assert later.value.delay_seconds == 10


def test_on_the_last_receive_a_retryable_failure_is_dead_lettered_with_its_reason() -> None:
    sqs = FakeSqs()
    error = RetryableCrmError("no answer in time (ReadTimeout)", provider="espocrm")

    assert worker_with(raising(error), sqs).process(record(application(1), receive_count=5)) is Outcome.DEAD_LETTERED

    ((name, sent),) = sqs.calls
    assert (name, sent["QueueUrl"]) == ("send_message", "https://sqs/dlq")
    assert sent["MessageAttributes"]["attempts"]["StringValue"] == "5"
    assert sent["MessageAttributes"]["error_kind"]["StringValue"] == "retryable"


def test_when_even_the_dead_letter_queue_fails_the_record_fails_and_comes_back() -> None:
    from crm_bridge.delivery import QueueUnavailable

    refusal = PermanentCrmError("invalid", provider="espocrm", status=400, field="emailAddress")
    with pytest.raises(QueueUnavailable):
        worker_with(raising(refusal), FakeSqs(fail={"send_message"})).process(record(application(1)))


def test_a_failed_postpone_still_reports_the_record_failed() -> None:
    sqs = FakeSqs(fail={"change_message_visibility"})
    with pytest.raises(RetryLater):
        worker_with(raising(RetryableCrmError("down", provider="espocrm")), sqs).process(record(application(1)))


def test_dead_letter_attributes_stay_within_the_sqs_limit_of_ten() -> None:
    error = PermanentCrmError("r", provider="p", status=400, code="c", field="f", retry_after_seconds=3)
    attributes = dead_letter_attributes(operation_attributes(application(1)), error, attempts=3)
    assert len(attributes) <= MAX_MESSAGE_ATTRIBUTES
    assert {"operation_id", "kind", "origin", "error_reason", "error_field", "attempts"} <= attributes.keys()


def test_a_dual_writes_dead_letter_names_the_crm_its_copy_is_for_within_the_limit() -> None:
    error = PermanentCrmError("r", provider="bitrix24", status=400, code="c", field="f")
    copy = application(1).message().copy_for("bitrix24")

    attributes = dead_letter_attributes(copy.attributes(), error, attempts=3)

    assert len(attributes) == MAX_MESSAGE_ATTRIBUTES
    assert attributes["provider"]["StringValue"] == "bitrix24"
    assert {"operation_id", "kind", "error_reason", "error_field", "error_status", "attempts"} <= attributes.keys()
    # The origin gives way (the body keeps it); with fewer error details it stays.
    assert "origin" not in attributes
    brief = dead_letter_attributes(copy.attributes(), RetryableCrmError("down", provider="bitrix24"), attempts=3)
    assert {"operation_id", "provider", "kind", "origin"} <= brief.keys()


def test_a_record_is_routed_before_delivery_and_its_outcomes_counted_for_that_crm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "crm-bridge")  # as the template sets it
    routed: list[tuple[str, str]] = []

    class Routed(FakeDelivery):
        def __call__(self, operation: Operation, crm: str) -> Delivery:
            routed.append((str(operation.operation_id), crm))
            return super().__call__(operation, crm)

    operation = application(1)
    worker = worker_with(delivered, FakeSqs())
    worker.delivery = Routed(raising(RetryableCrmError("down", provider="bitrix24")))  # type: ignore[assignment]
    worker.route = lambda operation: "bitrix24"

    with pytest.raises(RetryLater):
        worker.process(record(operation))

    assert routed == [(str(operation.operation_id), "bitrix24")]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "OperationsRetried" in line]
    document = json.loads(line)
    # One count, seen in all (what the alarms read) and for the CRM.
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"], ["provider", "service"]]
    assert (document["service"], document["provider"], document["OperationsRetried"]) == ("crm-bridge", "bitrix24", [1])


def test_crm_settings_too_broken_to_route_are_a_configuration_error_counted_as_such(
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = worker_with(delivered, FakeSqs())

    def broken(operation: Operation) -> str:
        raise SettingsError("invalid configuration: CRM_SHADOW_PROVIDER must differ from CRM_PROVIDER")

    worker.route = broken

    with pytest.raises(RetryLater) as later:
        worker.process(record(application(1)))

    assert later.value.error.kind is ErrorKind.CONFIGURATION
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "CrmConfigurationErrors" in line]
    assert json.loads(line)["provider"] == "settings"
