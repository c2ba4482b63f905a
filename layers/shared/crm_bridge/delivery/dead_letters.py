"""Operators' tools for the dead-letter queue: what is in it and why, and putting it back.

    python -m crm_bridge.delivery.dead_letters inspect [--json]   # make dlq-inspect
    python -m crm_bridge.delivery.dead_letters redrive            # make dlq-redrive

Queue URLs come from ``--dlq-url`` / ``--queue-url``, ``CRM_DLQ_URL`` / ``CRM_QUEUE_URL``, or the
outputs of a deployed stack (``--stack`` or ``STACK_NAME``). Nothing here prints a message body:
it holds personal data. Reasons come from the message attributes the worker and the API set
when they dead-letter (:func:`crm_bridge.delivery.queue.error_attributes`), and so does the CRM a
dual-write's copy is for (its ``provider`` attribute; the body names it too, so a redrive keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

PEEK_SECONDS = 60
"""How long inspected messages stay hidden while the scan runs; they are released right after."""
MOVE_VISIBILITY_SECONDS = 120
UNKNOWN_REASON = "no reason recorded (moved by SQS after maxReceiveCount: the worker crashed or timed out)"
STACK_OUTPUTS = {"queue_url": "OperationsQueueUrl", "dlq_url": "DeadLetterQueueUrl"}
_UNSUPPORTED_CODES = frozenset({"UnsupportedOperation", "InvalidAction", "UnknownOperationException"})


@dataclass(frozen=True, order=True)
class Reason:
    kind: str
    provider: str
    """The one that raised the error: a CRM, ``settings`` or ``crm-bridge`` (ours)."""
    reason: str
    field: str | None = None
    status: str | None = None
    copy_for: str | None = None
    """The CRM a dual-write's copy is for (``crm_bridge.delivery.dual_write``); None: the primary."""


@dataclass
class DeadLetterReport:
    queue_url: str
    visible: int
    in_flight: int
    sampled: int = 0
    oldest_sent_at: datetime | None = None
    oldest_operation_id: str | None = None
    reasons: Counter[Reason] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_url": self.queue_url,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "sampled": self.sampled,
            "oldest_sent_at": self.oldest_sent_at.isoformat() if self.oldest_sent_at else None,
            "oldest_operation_id": self.oldest_operation_id,
            "reasons": [asdict(reason) | {"count": n} for reason, n in self.reasons.most_common()],
        }

    def render(self) -> str:
        lines = [
            f"dead-letter queue: {self.queue_url}",
            f"messages: {self.visible} waiting, {self.in_flight} in flight",
        ]
        if self.oldest_sent_at is not None:
            lines.append(
                f"oldest: dead-lettered {self.oldest_sent_at:%Y-%m-%d %H:%M:%S} UTC "
                f"(operation {self.oldest_operation_id or 'unknown'})"
            )
        if self.reasons:
            lines.append(f"by reason ({self.sampled} read):")
            for reason, n in self.reasons.most_common():
                where = " ".join(
                    f"{name}={value}"
                    for name, value in (("for", reason.copy_for), ("field", reason.field), ("status", reason.status))
                    if value
                )
                lines.append(f"  {n:>5}  {reason.kind:<13} {reason.provider:<10} {reason.reason}  {where}".rstrip())
        return "\n".join(lines)


@dataclass(frozen=True)
class RedriveReport:
    method: str
    """``StartMessageMoveTask`` (AWS moves the messages itself) or ``receive-send-delete``."""
    moved: int | None = None
    task_handle: str | None = None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return value.get("StringValue") if value else None


def reason_of(message: dict[str, Any]) -> Reason:
    """The error recorded on a dead-lettered message (its attributes, never its body)."""
    kind = _attribute(message, "error_kind")
    copy_for = _attribute(message, "provider")
    if kind is None:
        return Reason(kind="unknown", provider="-", reason=UNKNOWN_REASON, copy_for=copy_for)
    return Reason(
        kind=kind,
        provider=_attribute(message, "error_provider") or "-",
        reason=_attribute(message, "error_reason") or "-",
        field=_attribute(message, "error_field"),
        status=_attribute(message, "error_status"),
        copy_for=copy_for,
    )


def inspect_dead_letters(
    client: Any, dlq_url: str, *, max_messages: int = 1000, wait_seconds: int = 1
) -> DeadLetterReport:
    """Count the DLQ and group its messages by reason. Reading hides messages for a moment; they
    are made visible again before returning, so a redrive can follow at once."""
    counts = client.get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    report = DeadLetterReport(
        dlq_url, int(counts["ApproximateNumberOfMessages"]), int(counts["ApproximateNumberOfMessagesNotVisible"])
    )
    receipts: list[str] = []
    try:
        while report.sampled < max_messages:
            messages = _receive(client, dlq_url, min(10, max_messages - report.sampled), PEEK_SECONDS, wait_seconds)
            if not messages:
                break
            for message in messages:
                receipts.append(message["ReceiptHandle"])
                report.sampled += 1
                report.reasons[reason_of(message)] += 1
                sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
                if report.oldest_sent_at is None or sent_at < report.oldest_sent_at:
                    report.oldest_sent_at = sent_at
                    report.oldest_operation_id = _attribute(message, "operation_id")
    finally:
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for n, receipt in enumerate(receipts[start : start + 10])
            ]
            client.change_message_visibility_batch(QueueUrl=dlq_url, Entries=entries)
    return report


def redrive(
    client: Any,
    dlq_url: str,
    queue_url: str,
    *,
    max_per_second: int | None = None,
    max_messages: int | None = None,
    wait_seconds: int = 1,
) -> RedriveReport:
    """Put dead-lettered operations back on the queue, after the cause is fixed.

    SQS's own move task first; where it is not available (moto, SQS look-alikes) the messages are
    moved here: sent, then deleted from the DLQ. A crash in between leaves a copy in both queues,
    which the worker's idempotency and the CRM upsert make harmless.
    """
    from botocore.exceptions import ClientError

    try:
        options = {"MaxNumberOfMessagesPerSecond": max_per_second} if max_per_second else {}
        task = client.start_message_move_task(
            SourceArn=queue_arn(client, dlq_url), DestinationArn=queue_arn(client, queue_url), **options
        )
    except NotImplementedError:
        pass
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _UNSUPPORTED_CODES:
            raise
    else:
        return RedriveReport(method="StartMessageMoveTask", task_handle=task["TaskHandle"])
    return RedriveReport(
        method="receive-send-delete",
        moved=move_messages(client, dlq_url, queue_url, max_messages=max_messages, wait_seconds=wait_seconds),
    )


def move_messages(
    client: Any, source_url: str, destination_url: str, *, max_messages: int | None = None, wait_seconds: int = 1
) -> int:
    """Move messages one batch at a time; a message is deleted only once its copy is sent. The
    error attributes stay behind: on the queue the operation starts afresh."""
    moved = 0
    while max_messages is None or moved < max_messages:
        limit = 10 if max_messages is None else min(10, max_messages - moved)
        messages = _receive(client, source_url, limit, MOVE_VISIBILITY_SECONDS, wait_seconds)
        if not messages:
            break
        sent = client.send_message_batch(
            QueueUrl=destination_url,
            Entries=[
                {
                    "Id": str(n),
                    "MessageBody": message["Body"],
                    "MessageAttributes": _identity_attributes(message),
                }
                for n, message in enumerate(messages)
            ],
        )
        done = [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if done:
            client.delete_message_batch(
                QueueUrl=source_url,
                Entries=[{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(done)],
            )
        moved += len(done)
        if len(done) < len(messages):
            break  # SQS refused some: stop rather than spin; they reappear for the next run
    return moved


def _identity_attributes(message: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in message.get("MessageAttributes", {}).items()
        if not name.startswith("error_") and name != "attempts"
    }


def _receive(client: Any, url: str, limit: int, visibility: int, wait_seconds: int) -> list[dict[str, Any]]:
    response = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=limit,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=wait_seconds,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["SentTimestamp"],
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def queue_arn(client: Any, url: str) -> str:
    arn: str = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn


def stack_queue_urls(stack_name: str, cloudformation: Any | None = None) -> dict[str, str]:
    """``queue_url`` and ``dlq_url`` from a deployed crm-bridge stack's outputs."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation")
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    return {name: outputs[key] for name, key in STACK_OUTPUTS.items() if key in outputs}


def _queue_urls(args: argparse.Namespace) -> dict[str, str]:
    urls = {"queue_url": os.environ.get("CRM_QUEUE_URL", ""), "dlq_url": os.environ.get("CRM_DLQ_URL", "")}
    stack = args.stack or os.environ.get("STACK_NAME")
    if stack:
        urls |= stack_queue_urls(stack)
    urls |= {name: value for name, value in (("queue_url", args.queue_url), ("dlq_url", args.dlq_url)) if value}
    return urls


def main(argv: Sequence[str] | None = None, client: Any | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dead_letters", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["inspect", "redrive"])
    parser.add_argument("--stack", help="read the queue URLs from this stack's outputs (or STACK_NAME)")
    parser.add_argument("--dlq-url", help="the dead-letter queue (or CRM_DLQ_URL)")
    parser.add_argument("--queue-url", help="where redrive puts messages back (or CRM_QUEUE_URL)")
    parser.add_argument("--json", action="store_true", help="inspect: print JSON instead of text")
    parser.add_argument("--max-messages", type=int, default=1000, help="inspect: read at most this many")
    parser.add_argument("--max-per-second", type=int, help="redrive: SQS move task rate limit")
    parser.add_argument("--wait-seconds", type=int, default=1, help="long polling per receive (0: short polling)")
    args = parser.parse_args(argv)
    urls = _queue_urls(args)
    if not urls.get("dlq_url") or (args.command == "redrive" and not urls.get("queue_url")):
        parser.error("give the queues: --stack / STACK_NAME, or CRM_DLQ_URL (and CRM_QUEUE_URL to redrive)")
    if client is None:
        import boto3

        client = boto3.client("sqs")
    if args.command == "inspect":
        report = inspect_dead_letters(
            client, urls["dlq_url"], max_messages=args.max_messages, wait_seconds=args.wait_seconds
        )
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
        return 0
    result = redrive(
        client, urls["dlq_url"], urls["queue_url"], max_per_second=args.max_per_second, wait_seconds=args.wait_seconds
    )
    if result.task_handle:
        print(f"SQS is moving the messages back (task {result.task_handle}); `make dlq-inspect` shows what is left")
    else:
        print(f"moved {result.moved} message(s) back to {urls['queue_url']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
