"""Operators' DLQ tools (make dlq-inspect / make dlq-redrive) against moto's SQS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from crm_bridge.delivery import dead_letters
from crm_bridge.delivery.dead_letters import UNKNOWN_REASON, inspect_dead_letters, redrive, stack_queue_urls
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.errors import PermanentCrmError, RetryableCrmError
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.worker.conftest import Aws, EventSourceMapping, Lambda, application, attributes_of, enqueue


def refused(field: str) -> PermanentCrmError:
    return PermanentCrmError("Validation failed", provider="espocrm", status=400, field=field)


@pytest.fixture
def parked(aws: Aws) -> list[str]:
    """Five dead-lettered messages: three reasons (one of them a dual-write's copy for Bitrix24), one
    without any (moved by SQS itself)."""
    queue = OperationQueue(aws.queue_url, aws.dlq_url)
    operations = [application(n) for n in range(3)]
    queue.dead_letter(operations[0].message(), refused("cReferralCode"), attempts=1)
    queue.dead_letter(operations[1].message(), refused("cReferralCode"), attempts=1)
    queue.dead_letter(
        operations[2].message().copy_for("bitrix24"),
        RetryableCrmError("no answer in time", provider="bitrix24"),
        attempts=39,
    )
    queue.dead_letter_raw("not json", PermanentCrmError("invalid operation", provider="crm-bridge"), attempts=1)
    aws.sqs.send_message(QueueUrl=aws.dlq_url, MessageBody="{}")
    return [str(operation.operation_id) for operation in operations]


def test_inspect_counts_and_groups_by_reason_and_leaves_the_messages_in_place(aws: Aws, parked: list[str]) -> None:
    report = inspect_dead_letters(aws.sqs, aws.dlq_url, wait_seconds=0)

    assert (report.visible, report.sampled) == (5, 5)
    assert report.oldest_operation_id == parked[0]
    counts = {(reason.kind, reason.provider, reason.field): n for reason, n in report.reasons.items()}
    assert counts == {
        ("permanent", "espocrm", "cReferralCode"): 2,
        ("retryable", "bitrix24", None): 1,
        ("permanent", "crm-bridge", None): 1,
        ("unknown", "-", None): 1,
    }
    assert len(aws.dead_lettered()) == 5  # visible again for the next look, or a redrive

    text = report.render()
    assert "messages: 5 waiting" in text
    assert UNKNOWN_REASON in text
    assert "field=cReferralCode" in text
    assert "for=bitrix24" in text
    assert json.loads(json.dumps(report.to_dict()))["reasons"][0]["count"] == 2


def test_redrive_falls_back_to_moving_messages_itself_where_sqs_cannot(aws: Aws, parked: list[str]) -> None:
    result = redrive(aws.sqs, aws.dlq_url, aws.queue_url, wait_seconds=0)

    assert (result.method, result.moved) == ("receive-send-delete", 5)
    assert aws.dead_lettered() == []
    moved = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    )["Messages"]
    operation_ids = {attributes_of(message).get("operation_id") for message in moved}
    assert set(parked) <= operation_ids
    assert not any(name.startswith("error_") or name == "attempts" for m in moved for name in attributes_of(m))
    (copy,) = [message for message in moved if "provider" in attributes_of(message)]
    assert (attributes_of(copy)["operation_id"], attributes_of(copy)["provider"]) == (parked[2], "bitrix24")
    assert json.loads(copy["Body"])["provider"] == "bitrix24"


class MoveTaskSqs:
    """SQS with StartMessageMoveTask (as in AWS), over moto for everything else."""

    def __init__(self, client: Any, error: str | None = None) -> None:
        self._client = client
        self.error = error
        self.started: list[dict[str, Any]] = []

    def start_message_move_task(self, **kwargs: Any) -> dict[str, str]:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "StartMessageMoveTask")
        self.started.append(kwargs)
        return {"TaskHandle": "task-1"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_redrive_uses_sqs_message_move_task_where_it_exists(aws: Aws, parked: list[str]) -> None:
    sqs = MoveTaskSqs(aws.sqs)

    result = redrive(sqs, aws.dlq_url, aws.queue_url, max_per_second=5)

    assert (result.method, result.task_handle) == ("StartMessageMoveTask", "task-1")
    (started,) = sqs.started
    assert started["SourceArn"].endswith(":crm-operations-dlq")
    assert started["DestinationArn"] == aws.queue_arn
    assert started["MaxNumberOfMessagesPerSecond"] == 5


def test_redrive_does_not_work_around_a_refusal(aws: Aws, parked: list[str]) -> None:
    with pytest.raises(ClientError):
        redrive(MoveTaskSqs(aws.sqs, error="AccessDenied"), aws.dlq_url, aws.queue_url, wait_seconds=0)
    assert len(aws.dead_lettered()) == 5


def test_after_the_fix_a_redrive_delivers_what_the_crm_had_refused(
    espocrm: SimulatedEspoCrm,
    aws: Aws,
    poller: EventSourceMapping,
    worker_lambda: Callable[[], Lambda],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The CRM wants another field whenever a referral code is written: leaving a field out cannot help.
    espocrm.reject_attribute("cReferralCode", named="cPartnerAgreement")
    enqueue(aws, application(1), application(2))
    poller.run()
    assert espocrm.leads() == []
    assert inspect_dead_letters(aws.sqs, aws.dlq_url, wait_seconds=0).sampled == 2

    # The operator's fix: the referral code goes into the description instead, and a redeploy.
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"version": 1, "espocrm": {"lead_fields": {"referral_code": None}}}))
    monkeypatch.setenv("CRM_FIELD_MAPPING_FILE", str(mapping))
    redrive(aws.sqs, aws.dlq_url, aws.queue_url, wait_seconds=0)
    EventSourceMapping(aws, worker_lambda()).run()

    assert len(espocrm.leads()) == 2
    assert aws.dead_lettered() == []


def test_the_command_line_reads_queue_urls_from_the_environment(
    aws: Aws, parked: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_DLQ_URL", aws.dlq_url)

    assert dead_letters.main(["inspect", "--json", "--wait-seconds", "0"], client=aws.sqs) == 0
    assert json.loads(capsys.readouterr().out)["sampled"] == 5

    assert dead_letters.main(["redrive", "--wait-seconds", "0"], client=aws.sqs) == 0
    assert "moved 5 message(s)" in capsys.readouterr().out

    monkeypatch.delenv("CRM_QUEUE_URL")
    with pytest.raises(SystemExit):
        dead_letters.main(["redrive"], client=aws.sqs)


def test_queue_urls_can_come_from_the_stack_outputs() -> None:
    class CloudFormation:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            assert StackName == "crm-bridge-prod"
            outputs = [
                {"OutputKey": "OperationsQueueUrl", "OutputValue": "https://sqs/q"},
                {"OutputKey": "DeadLetterQueueUrl", "OutputValue": "https://sqs/dlq"},
                {"OutputKey": "ApiUrl", "OutputValue": "https://api"},
            ]
            return {"Stacks": [{"Outputs": outputs}]}

    assert stack_queue_urls("crm-bridge-prod", CloudFormation()) == {
        "queue_url": "https://sqs/q",
        "dlq_url": "https://sqs/dlq",
    }
