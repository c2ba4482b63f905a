"""The retry worker end to end: SQS (moto) -> the real handler -> the simulated CRMs.

Each test drives Lambda's poller by hand (:class:`EventSourceMapping`), so backoff is observed as the
visibility timeouts the worker asks for, and "time passing" is making those messages visible again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.delivery.dead_letters import UNKNOWN_REASON, reason_of
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.errors import SettingsError
from crm_bridge.models import dump_operation
from tests.simulators.base import Failure, SimulatedCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.worker.conftest import (
    JITTER,
    Aws,
    EventSourceMapping,
    Lambda,
    application,
    attributes_of,
    click,
    emitted_metrics,
    enqueue,
)


def jitter() -> float:
    return JITTER


def lead_ids(crm: SimulatedCrm) -> list[str]:
    return [str(lead.get("id") or lead.get("ID")) for lead in crm.leads()]


def all_phones(crm: SimulatedCrm) -> list[str]:
    return sorted(phone for lead_id in lead_ids(crm) for phone in crm.lead_phones(lead_id))


@pytest.fixture(params=["espocrm", "bitrix24"])
def crm(request: pytest.FixtureRequest) -> SimulatedCrm:
    simulator: SimulatedCrm = request.getfixturevalue(request.param)
    return simulator


def test_crm_down_for_a_while_then_back_each_lead_exists_exactly_once(
    crm: SimulatedCrm, aws: Aws, poller: EventSourceMapping, capsys: pytest.CaptureFixture[str]
) -> None:
    operations = [application(n) for n in range(6)]
    enqueue(aws, *operations)
    down_for = 3  # rounds of attempts; while down, each attempt fails on its first request
    crm.fail_next(Failure.CONNECTION_REFUSED, times=len(operations) * down_for)

    for _ in range(down_for):
        while poller.poll().received:
            pass
        poller.backoff_elapses()

    assert crm.leads() == []
    assert aws.waiting() == len(operations)
    schedule = poller.function.worker.schedule
    assert poller.function.sqs.postponed == [
        schedule.delay(attempt, random=jitter) for attempt in range(1, down_for + 1) for _ in operations
    ]

    poller.run()  # the CRM is back

    assert all_phones(crm) == sorted(str(operation.payload.phone) for operation in operations)
    assert aws.waiting() == 0
    assert aws.dead_lettered() == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["OperationsRetried"] == len(operations) * down_for
    assert metrics["OperationsDelivered"] == metrics["LeadsCreated"] == len(operations)


def test_sqs_delivering_a_message_twice_calls_the_crm_once(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping, capsys: pytest.CaptureFixture[str]
) -> None:
    enqueue(aws, application(1))
    messages = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, WaitTimeSeconds=0, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    )["Messages"]
    event = poller.event(messages)

    first = poller.function.invoke(event)
    calls = len(espocrm.router.calls)
    again = poller.function.invoke(event)

    assert first == again == {"batchItemFailures": []}
    assert len(espocrm.router.calls) == calls
    assert len(espocrm.leads()) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["OperationsDelivered"], metrics["OperationsAlreadyDelivered"]) == (1, 1)


def test_an_operation_queued_again_after_it_succeeded_is_not_sent_again_even_after_a_cold_start(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping, worker_lambda: Callable[[], Lambda]
) -> None:
    operation = application(1)
    enqueue(aws, operation)
    poller.run()
    calls = len(espocrm.router.calls)

    enqueue(aws, operation)  # e.g. a redrive of a copy that had reached the DLQ
    EventSourceMapping(aws, worker_lambda()).run()

    assert len(espocrm.router.calls) == calls
    (lead,) = espocrm.leads()
    assert espocrm.timeline(lead["id"]) == []  # not even a "repeat submission" note


def test_one_failure_in_a_batch_of_ten_retries_only_that_one(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping
) -> None:
    poller.batch_size = 10
    enqueue(aws, *(application(n) for n in range(10)))
    espocrm.fail_next(Failure.SERVER_ERROR)  # the first CRM request of the batch

    batch = poller.poll()

    assert len(batch.received) == 10
    assert batch.failed == batch.received[:1]
    assert len(espocrm.leads()) == 9
    assert aws.waiting() == 1
    assert poller.function.sqs.postponed == [RetrySchedule().delay(1, random=jitter)]

    poller.run()
    assert len(espocrm.leads()) == 10
    assert poller.receives[batch.received[0]] == 2
    assert all(poller.receives[message_id] == 1 for message_id in batch.received[1:])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param("not json at all", None, id="not-json"),
        pytest.param(
            json.dumps(
                {
                    "kind": "lead.upsert",
                    "origin": "api.applications",
                    "payload": {"phone": "+905321119988", "email": "someone@example.com"},
                }
            ),
            "lead.upsert.payload",
            id="no-name",
        ),
        pytest.param(
            dump_operation(application(1)).replace('"schema_version":1', '"schema_version":2'),
            "lead.upsert.schema_version",
            id="future-schema",
        ),
    ],
)
def test_a_message_that_is_no_operation_is_dead_lettered_at_once_with_its_reason(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping, body: str, field: str | None
) -> None:
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)

    batch = poller.poll()

    assert batch.failed == []  # reported done, so SQS deletes it from the source queue
    assert aws.waiting() == 0
    (dead,) = aws.dead_lettered()
    assert dead["Body"] == body
    attributes = attributes_of(dead)
    assert attributes["error_kind"] == "permanent"
    assert attributes["error_code"] == "invalid_operation"
    assert attributes["attempts"] == "1"
    assert attributes.get("error_field") == field
    assert "5321119988" not in attributes["error_reason"]
    assert "someone@" not in attributes["error_reason"]
    assert len(espocrm.router.calls) == 0


def test_a_crm_refusal_is_dead_lettered_after_one_attempt_with_the_crm_reason(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping
) -> None:
    # A refusal that leaving a field out cannot answer: the CRM wants a field crm-bridge never writes.
    espocrm.reject_attribute("cReferralCode", named="cPartnerAgreement")
    operation = application(1)
    enqueue(aws, operation)

    poller.run()

    assert poller.function.sqs.postponed == []
    (dead,) = aws.dead_lettered()
    attributes = attributes_of(dead)
    assert attributes["operation_id"] == str(operation.operation_id)
    assert (attributes["error_kind"], attributes["error_provider"]) == ("permanent", "espocrm")
    assert attributes["error_field"] == "cPartnerAgreement"
    assert attributes["attempts"] == "1"
    assert dead["Body"] == dump_operation(operation)


def test_a_retryable_failure_is_dead_lettered_only_after_max_receive_count_receives_on_schedule(
    bitrix24: SimulatedBitrix24, aws: Aws, poller: EventSourceMapping
) -> None:
    enqueue(aws, application(1))
    bitrix24.fail_next(Failure.SERVER_ERROR, times=aws.max_receive_count)  # down for the whole retry span

    poller.run(rounds=aws.max_receive_count + 1)

    (receives,) = poller.receives.values()
    assert receives == aws.max_receive_count
    schedule = RetrySchedule(max_receives=aws.max_receive_count)
    promised = [schedule.delay(attempt, random=jitter) for attempt in range(1, aws.max_receive_count)]
    assert poller.function.sqs.postponed == promised
    assert promised[0] <= 10
    assert sum(promised) >= 12 * 3600
    (dead,) = aws.dead_lettered()
    attributes = attributes_of(dead)
    assert (attributes["error_kind"], attributes["error_provider"]) == ("retryable", "bitrix24")
    assert attributes["attempts"] == str(aws.max_receive_count)
    assert aws.waiting() == 0


def test_when_the_worker_dies_on_the_last_receive_sqs_moves_the_operation_to_the_dlq(
    bitrix24: SimulatedBitrix24, aws: Aws, poller: EventSourceMapping
) -> None:
    enqueue(aws, application(1))
    bitrix24.fail_next(Failure.SERVER_ERROR, times=aws.max_receive_count - 1)
    for _ in range(aws.max_receive_count - 1):
        poller.poll()
        poller.backoff_elapses()
    # The last receive the redrive policy allows; the invocation times out without answering.
    (message,) = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=0)["Messages"]
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )

    assert poller.poll().received == []  # SQS moved it instead of delivering it a 40th time
    (dead,) = aws.dead_lettered()
    assert reason_of(dead).reason == UNKNOWN_REASON
    assert bitrix24.leads() == []


def test_a_configuration_error_is_retried_and_counted_for_the_alarm(
    espocrm: SimulatedEspoCrm,
    aws: Aws,
    poller: EventSourceMapping,
    capsys: pytest.CaptureFixture[str],
    log_output: io.StringIO,
) -> None:
    enqueue(aws, application(1))
    espocrm.fail_next(Failure.UNAUTHORIZED, times=5)

    batch = poller.poll()

    assert len(batch.failed) == 1
    assert aws.dead_lettered() == []
    assert emitted_metrics(capsys.readouterr().out)["CrmConfigurationErrors"] == 1
    (retry,) = [json.loads(line) for line in log_output.getvalue().splitlines() if "retrying later" in line]
    assert retry["level"] == "ERROR"
    assert retry["error_kind"] == "configuration"
    assert retry["error"]["status"] == 401


def test_broken_crm_settings_are_a_configuration_error_not_a_dead_worker(
    aws: Aws, poller: EventSourceMapping, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", "espocrm")  # without ESPOCRM_URL / ESPOCRM_API_KEY
    enqueue(aws, application(1))

    batch = poller.poll()

    assert len(batch.failed) == 1
    assert poller.function.sqs.postponed == [RetrySchedule().delay(1, random=jitter)]
    assert emitted_metrics(capsys.readouterr().out)["CrmConfigurationErrors"] == 1


def test_a_retry_after_hint_is_a_floor_for_the_backoff(
    bitrix24: SimulatedBitrix24, aws: Aws, poller: EventSourceMapping
) -> None:
    enqueue(aws, application(1))
    bitrix24.fail_next(Failure.TIME_LIMITED)  # 429 OPERATION_TIME_LIMIT: Bitrix24 says how long to wait

    poller.poll()

    (postponed,) = poller.function.sqs.postponed
    assert postponed >= RetrySchedule().delay(1, random=jitter)


def test_clicks_of_one_anonymous_visitor_become_one_lead_with_activities(
    espocrm: SimulatedEspoCrm, aws: Aws, poller: EventSourceMapping
) -> None:
    enqueue(aws, click("visitor-0001", "telegram"))
    poller.run()
    enqueue(aws, click("visitor-0001", "whatsapp"), click("visitor-0001", "instagram"))
    poller.run()

    (lead_id,) = lead_ids(espocrm)
    assert len(espocrm.timeline(lead_id)) == 2
    sessions = DynamoDbVisitorSessions("crm-visitor-sessions")
    assert sessions.lead_for("espocrm", "visitor-0001") == lead_id


def test_switching_crm_while_operations_wait_delivers_each_to_the_crm_configured_at_delivery(
    espocrm: SimulatedEspoCrm,
    bitrix24: SimulatedBitrix24,
    aws: Aws,
    worker_lambda: Callable[[], Lambda],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deploy(provider: str) -> EventSourceMapping:
        monkeypatch.setenv("CRM_PROVIDER", provider)
        return EventSourceMapping(aws, worker_lambda())

    # On Bitrix24, which is down: three operations wait.
    poller = deploy("bitrix24")
    enqueue(aws, application(1), application(2), click("visitor-0002"))
    bitrix24.fail_next(Failure.CONNECTION_REFUSED, times=3)
    while poller.poll().received:
        pass
    assert aws.waiting() == 3
    poller.backoff_elapses()

    # Switched to EspoCRM: the waiting ones and new ones land there; the visitor's second click is
    # an activity on the lead their first click made in EspoCRM.
    poller = deploy("espocrm")
    enqueue(aws, application(3), click("visitor-0002", "whatsapp"))
    poller.run()
    assert len(espocrm.leads()) == 4
    assert bitrix24.leads() == []

    # EspoCRM goes down with two more waiting; switched back to Bitrix24, they land there. The
    # visitor gets a lead of their own in Bitrix24: EspoCRM's lead id means nothing to it.
    enqueue(aws, application(4), click("visitor-0002", "instagram"))
    espocrm.fail_next(Failure.CONNECTION_REFUSED, times=2)
    while poller.poll().received:
        pass
    poller.backoff_elapses()
    poller = deploy("bitrix24")
    poller.run()

    assert all_phones(espocrm) == ["+905321000001", "+905321000002", "+905321000003"]
    assert all_phones(bitrix24) == ["+905321000004"]
    assert len(bitrix24.leads()) == 2  # application 4 and the visitor's minimal lead
    sessions = DynamoDbVisitorSessions("crm-visitor-sessions")
    espo_lead = sessions.lead_for("espocrm", "visitor-0002")
    assert espo_lead is not None
    assert len(espocrm.timeline(espo_lead)) == 1
    assert sessions.lead_for("bitrix24", "visitor-0002") not in (None, espo_lead)
    assert aws.waiting() == 0
    assert aws.dead_lettered() == []


def test_nothing_personal_reaches_logs_or_metrics(
    espocrm: SimulatedEspoCrm,
    aws: Aws,
    poller: EventSourceMapping,
    capsys: pytest.CaptureFixture[str],
    log_output: io.StringIO,
) -> None:
    person = {"name": "Zeynep Kaya", "phone": "+905329876543", "email": "zeynep.kaya@example.com"}
    espocrm.reject_attribute("cReferralCode", named="cPartnerAgreement")
    enqueue(aws, application(1, **person), application(2, email="other.person@example.com"))
    espocrm.fail_next(Failure.SERVER_ERROR)

    poller.run()

    written = log_output.getvalue() + capsys.readouterr().out
    assert "operation dead-lettered" in written
    for value in ("Zeynep", "Kaya", "9876543", "zeynep.kaya", "other.person", "5321000002"):
        assert value not in written


def test_the_worker_refuses_to_start_without_its_settings(
    aws: Aws, worker_lambda: Callable[[], Lambda], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDEMPOTENCY_TABLE")

    with pytest.raises(SettingsError) as refused:
        worker_lambda()

    assert "IDEMPOTENCY_TABLE" in str(refused.value)


def test_idempotency_must_outlast_the_retries(
    aws: Aws, worker_lambda: Callable[[], Lambda], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDEMPOTENCY_EXPIRY_SECONDS", "7200")

    with pytest.raises(SettingsError, match="IDEMPOTENCY_EXPIRY_SECONDS must be longer than the retries last"):
        worker_lambda()
