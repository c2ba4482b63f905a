"""Lambda's SQS event source semantics, as the poller plays them against moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from infra.local.aws import LocalAws
from infra.local.functions import Invocation
from infra.local.poller import QueuePoller
from infra.local.template import QueueSource


def make_queue(aws: LocalAws, max_receives: int = 2) -> tuple[str, str, str]:
    sqs = aws.client("sqs")
    name = f"unit-{uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    # Visibility 0: a kept message is visible again at once, so redelivery needs no waiting.
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "0"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq_url


def poller(aws: LocalAws, url: str, arn: str, invoke: Callable[[dict[str, Any]], Invocation]) -> QueuePoller:
    source = QueueSource(function="Worker", queue="Queue", batch_size=5, report_batch_item_failures=True)
    return QueuePoller(
        aws.client("sqs"), queue_url=url, queue_arn=arn, region="eu-central-1", source=source, invoke=invoke
    )


def count(aws: LocalAws, url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_partial_failures_stay_and_the_rest_is_deleted(local_aws: LocalAws) -> None:
    url, arn, _ = make_queue(local_aws)
    sqs = local_aws.client("sqs")
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"operation_id": {"DataType": "String", "StringValue": body}},
        )
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Invocation:
        events.append(event)
        failed = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]
        return Invocation(True, {"batchItemFailures": failed}, 1.0)

    feeder = poller(local_aws, url, arn, invoke)
    outcome = feeder.process(feeder._receive_batch())

    assert len(outcome.deleted) == 2
    assert len(outcome.kept) == 1
    assert count(local_aws, url) == 1
    record = events[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["operation_id"]["dataType"] == "String"
    assert record["receiptHandle"]


def test_a_failed_invocation_or_an_invalid_answer_keeps_the_whole_batch(local_aws: LocalAws) -> None:
    url, arn, _ = make_queue(local_aws, max_receives=10)
    local_aws.client("sqs").send_message(QueueUrl=url, MessageBody="x")
    answers = [
        Invocation(False, {"errorType": "RuntimeError", "errorMessage": "boom"}, 1.0),
        Invocation(True, {"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}, 1.0),
        Invocation(True, {"batchItemFailures": []}, 1.0),
    ]
    feeder = poller(local_aws, url, arn, lambda event: answers.pop(0))

    assert feeder.process(feeder._receive_batch()).error == {"errorType": "RuntimeError", "errorMessage": "boom"}
    assert feeder.process(feeder._receive_batch()).error is not None
    assert count(local_aws, url) == 1
    assert len(feeder.process(feeder._receive_batch()).deleted) == 1
    assert count(local_aws, url) == 0


def test_after_max_receive_count_sqs_itself_moves_the_message_to_the_dlq(local_aws: LocalAws) -> None:
    url, arn, dlq_url = make_queue(local_aws, max_receives=2)
    local_aws.client("sqs").send_message(QueueUrl=url, MessageBody="poison")
    received: list[str] = []

    def always_fails(event: dict[str, Any]) -> Invocation:
        received.extend(record["attributes"]["ApproximateReceiveCount"] for record in event["Records"])
        return Invocation(
            True, {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}, 1.0
        )

    feeder = poller(local_aws, url, arn, always_fails)
    for _ in range(3):
        messages = feeder._receive_batch()
        if messages:
            feeder.process(messages)

    assert received == ["1", "2"]
    assert count(local_aws, url) == 0
    (parked,) = local_aws.client("sqs").receive_message(QueueUrl=dlq_url).get("Messages", [])
    assert parked["Body"] == "poison"
