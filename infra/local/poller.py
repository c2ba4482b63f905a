"""Lambda's SQS event source mapping, locally: long-poll the queue, invoke the function with batches.

The semantics are Lambda's, so that what the worker does here it does in AWS:

* a batch is up to ``BatchSize`` messages, gathered for up to ``MaximumBatchingWindowInSeconds``;
* the event is the one Lambda sends (``Records`` with receipt handles, attributes, message
  attributes, ``eventSourceARN``);
* with ``ReportBatchItemFailures`` the messages named in ``batchItemFailures`` stay on the queue and
  the others are deleted; an invalid answer or a failed invocation keeps the whole batch;
* nothing else is done to a kept message: it comes back when its visibility timeout ends (the
  queue's, or whatever the function set with ChangeMessageVisibility), and moto moves it to the
  dead-letter queue once it has been received ``maxReceiveCount`` times, as SQS does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.local.functions import Invocation
from infra.local.template import QueueSource

_SQS_MAX_BATCH = 10
_POLL_SECONDS = 1  # long-poll in short slices, so that Ctrl-C is answered at once


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one batch: the messages deleted, and those left for another receive."""

    records: list[dict[str, Any]]
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received SQS message in the shape of a Lambda SQS event record."""
    attributes = message.get("MessageAttributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in attributes.items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class QueuePoller:
    """Feeds one queue to one function until stopped."""

    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        source: QueueSource,
        invoke: Callable[[dict[str, Any]], Invocation],
        on_receive: Callable[[list[dict[str, Any]]], None] = lambda records: None,
        on_batch: Callable[[BatchOutcome], None] = lambda outcome: None,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.source = source
        self._invoke = invoke
        self._on_receive = on_receive
        self._on_batch = on_batch
        self._on_idle = on_idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poller:{source.function}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, wait: bool = True) -> None:
        self._stop.set()
        if wait:
            self._thread.join(_POLL_SECONDS + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    self._on_batch(self.process(messages))
                self._on_idle()
            except Exception:  # moto is being stopped, or a transient error: poll again
                if self._stop.wait(0.5):
                    return

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, waiting up to the batching window to fill the batch."""
        deadline = time.monotonic() + self.source.batching_window_seconds
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size and not self._stop.is_set():
            received = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(_SQS_MAX_BATCH, self.source.batch_size - len(messages)),
                WaitTimeSeconds=_POLL_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(received)
            if messages and (not received or time.monotonic() >= deadline):
                break
            if not messages and not received:
                break
        return messages

    def process(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        """One invocation with ``messages``; delete what succeeded, keep the rest on the queue."""
        records = [sqs_record(message, self.queue_arn, self.region) for message in messages]
        self._on_receive(records)
        invocation = self._invoke({"Records": records})
        ids = [record["messageId"] for record in records]
        if not invocation.ok:
            return BatchOutcome(records, kept=ids, error=invocation.payload)
        failed = self._failed_ids(invocation.payload, set(ids))
        if failed is None:
            error = {"errorType": "InvalidBatchItemFailures", "errorMessage": "the answer names unknown messages"}
            return BatchOutcome(records, kept=ids, error=error)
        done = [record for record in records if record["messageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": record["receiptHandle"]} for index, record in enumerate(done)
                ],
            )
        return BatchOutcome(
            records, deleted=[record["messageId"] for record in done], kept=[i for i in ids if i in failed]
        )

    def _failed_ids(self, answer: Any, ids: set[str]) -> set[str] | None:
        """The messages the function reported failed; None when the answer is invalid (Lambda then
        treats the whole batch as failed)."""
        if not self.source.report_batch_item_failures:
            return set()
        if answer is None:
            return set()
        if not isinstance(answer, dict):
            return None
        failures = answer.get("batchItemFailures") or []
        if not isinstance(failures, list):
            return None
        failed: set[str] = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in ids:
                return None
            failed.add(identifier)
        return failed
