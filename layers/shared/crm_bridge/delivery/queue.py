"""The operation queue (SQS) and its dead-letter queue: where work waits when the CRM cannot take it.

boto3 finds its endpoint through the standard settings (``AWS_ENDPOINT_URL_SQS`` locally), so
the same code talks to SQS in AWS and to moto on a laptop. Operations travel as
:class:`~crm_bridge.envelope.QueueMessage`; nothing here loads pydantic, so the redirect can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from crm_bridge.envelope import QueueMessage, string_attribute
from crm_bridge.errors import CrmError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from crm_bridge.models import Operation

MAX_MESSAGE_ATTRIBUTES = 10
"""SQS refuses a message with more attributes than this."""
_IDENTITY_ATTRIBUTES = ("operation_id", "provider", "kind", "origin")
"""What a dead letter keeps of the operation's attributes, most useful first (the body has them all)."""
_NOT_DEAD_LETTER_ATTRIBUTES = frozenset({"retry_after_seconds"})


class QueueUnavailable(Exception):
    """SQS refused or could not be reached: the caller must keep the operation some other way."""


@cache
def _sqs_client() -> SQSClient:
    import boto3

    return boto3.client("sqs")


def operation_attributes(operation: Operation) -> dict[str, dict[str, str]]:
    """What an operator can filter on without opening the body (which holds personal data)."""
    return operation.message().attributes()


def error_attributes(error: CrmError, attempts: int) -> dict[str, dict[str, str]]:
    """Why an operation was dead-lettered, as message attributes (what ``make dlq-inspect`` groups by).

    A retry-after hint means nothing once the operation is parked, and leaving it out keeps an
    operation's attributes plus the error's within SQS's limit of ten."""
    attributes = {
        f"error_{name}": string_attribute(value)
        for name, value in error.to_dict().items()
        if value is not None and value != "" and name not in _NOT_DEAD_LETTER_ATTRIBUTES
    }
    attributes["attempts"] = {"DataType": "Number", "StringValue": str(attempts)}
    return attributes


def dead_letter_attributes(
    identity: Mapping[str, dict[str, str]], error: CrmError, attempts: int
) -> dict[str, dict[str, str]]:
    """The error, and as much of the operation's identity (id, the CRM a dual-write's copy is for,
    kind, origin) as fits beside it: at most ten attributes, SQS's limit."""
    reason = error_attributes(error, attempts)
    names = [name for name in _IDENTITY_ATTRIBUTES if name in identity][: MAX_MESSAGE_ATTRIBUTES - len(reason)]
    return {name: identity[name] for name in names} | reason


class OperationQueue:
    """Sends operations to the retry queue or, when retrying cannot help, to the dead-letter queue."""

    def __init__(self, queue_url: str, dead_letter_queue_url: str, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self.dead_letter_queue_url = dead_letter_queue_url
        self._client = client

    @classmethod
    def from_environment(cls) -> OperationQueue:
        return cls(os.environ.get("CRM_QUEUE_URL", ""), os.environ.get("CRM_DLQ_URL", ""))

    @property
    def client(self) -> SQSClient:
        return self._client or _sqs_client()

    def enqueue(self, operation: Operation, *, delay_seconds: int = 0) -> str:
        """Queue for delivery by the worker; returns the SQS message id."""
        return self.send(operation.message(), delay_seconds=delay_seconds)

    def send(self, message: QueueMessage, *, delay_seconds: int = 0) -> str:
        """Queue an operation already in its wire form (the redirect's clicks)."""
        return self._send(self.queue_url, message.body, message.attributes(), delay_seconds)

    def dead_letter(self, message: QueueMessage, error: CrmError, *, attempts: int) -> str:
        """Park an operation the CRM refuses, with the reason, for an operator to fix and redrive."""
        attributes = dead_letter_attributes(message.attributes(), error, attempts)
        return self._send(self.dead_letter_queue_url, message.body, attributes, 0)

    def dead_letter_raw(
        self, body: str, error: CrmError, *, attempts: int, identity: Mapping[str, dict[str, str]] | None = None
    ) -> str:
        """Park a message that is not a valid operation, byte for byte, with the reason: an operator
        can still read what was sent (``identity``: the attributes it arrived with, if any)."""
        attributes = dead_letter_attributes(identity or {}, error, attempts)
        return self._send(self.dead_letter_queue_url, body, attributes, 0)

    def postpone(self, receipt_handle: str, seconds: int) -> None:
        """Keep a received message hidden for ``seconds``: the worker's backoff before the next attempt."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"SQS change of visibility failed ({type(exc).__name__})") from None

    def _send(self, url: str, body: str, attributes: dict[str, dict[str, str]], delay: int) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if not url:
            raise QueueUnavailable("the queue URL is not configured (CRM_QUEUE_URL / CRM_DLQ_URL)")
        if len(attributes) > MAX_MESSAGE_ATTRIBUTES:  # a programming error: SQS would refuse it in AWS only
            raise ValueError(f"{len(attributes)} message attributes; SQS allows {MAX_MESSAGE_ATTRIBUTES}")
        try:
            response = self.client.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageAttributes=attributes,  # type: ignore[arg-type]
                DelaySeconds=delay,
            )
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"SQS send failed ({type(exc).__name__})") from None
        return response["MessageId"]
