"""Keep an operation recoverable when neither the CRM nor the queue would take it.

The operation holds personal data, and logs must not, so it is logged sealed: compressed and
encrypted with KMS (``RECOVERY_KMS_KEY_ID``) in chunks of at most 4 KiB, the most KMS encrypts
directly. ``python -m crm_bridge.delivery.recovery`` reads such log lines back, decrypts them
and puts the operations on the queue. Without a key (or with KMS down too) only the operation's
identity is logged and the client's retry is the way back: the API answered 503.
Nothing here loads pydantic until an operation is read back, so the redirect can use it.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import zlib
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from crm_bridge.delivery.queue import QueueUnavailable
from crm_bridge.envelope import QueueMessage
from crm_bridge.observability import get_logger

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

    from crm_bridge.models import Operation

KMS_PLAINTEXT_LIMIT = 4096
RECOVERY_LOG_MESSAGE = "operation neither delivered nor queued; sealed for recovery"


@cache
def _kms_client() -> KMSClient:
    import boto3

    return boto3.client("kms")


class DeliveryUnavailable(Exception):
    """Neither the CRM nor the queue accepted the operation; it was sealed into the log."""

    def __init__(self, operation_id: str, recoverable_from_log: bool) -> None:
        super().__init__(f"operation {operation_id} could not be delivered or queued")
        self.operation_id = operation_id
        self.recoverable_from_log = recoverable_from_log


def queue_or_seal(message: QueueMessage, send: Callable[[], object]) -> None:
    """Run ``send``; if the queue fails, seal the operation into the log and raise DeliveryUnavailable."""
    try:
        send()
    except QueueUnavailable as exc:
        raise DeliveryUnavailable(message.operation_id, log_for_recovery(message, str(exc))) from None


def seal(body: str, key_id: str, client: Any | None = None) -> dict[str, Any]:
    """An operation's JSON encrypted under ``key_id``, in URL-safe base64 (no ``+`` for the log
    scrubber to mistake for a phone number)."""
    kms = client or _kms_client()
    data = zlib.compress(body.encode())
    chunks = [
        base64.urlsafe_b64encode(
            kms.encrypt(KeyId=key_id, Plaintext=data[start : start + KMS_PLAINTEXT_LIMIT])["CiphertextBlob"]
        ).decode()
        for start in range(0, len(data), KMS_PLAINTEXT_LIMIT)
    ]
    return {"key_id": key_id, "encoding": "zlib+json", "chunks": chunks}


def unseal(sealed: dict[str, Any], client: Any | None = None) -> Operation:
    from crm_bridge.models import parse_operation

    kms = client or _kms_client()
    data = b"".join(
        kms.decrypt(CiphertextBlob=base64.urlsafe_b64decode(chunk), KeyId=sealed["key_id"])["Plaintext"]
        for chunk in sealed["chunks"]
    )
    return parse_operation(zlib.decompress(data))


def log_for_recovery(message: QueueMessage, reason: str) -> bool:
    """Log the operation sealed; True when the log line alone is enough to recover it."""
    from botocore.exceptions import BotoCoreError, ClientError

    identity = message.identity() | {"reason": reason}
    key_id = os.environ.get("RECOVERY_KMS_KEY_ID")
    sealed: dict[str, Any] | None = None
    if key_id:
        try:
            sealed = seal(message.body, key_id)
        except (BotoCoreError, ClientError) as exc:
            identity["seal_error"] = type(exc).__name__
    get_logger().error(RECOVERY_LOG_MESSAGE, extra={"recovery": identity, "sealed_operation": sealed})
    return sealed is not None


def recover_from_log_lines(lines: list[str], enqueue: Any) -> int:
    """Enqueue every sealed operation found in JSON log lines; returns how many."""
    recovered = 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        sealed = record.get("sealed_operation") if isinstance(record, dict) else None
        if record.get("message") == RECOVERY_LOG_MESSAGE and sealed:
            enqueue(unseal(sealed))
            recovered += 1
    return recovered


def main() -> None:  # pragma: no cover - exercised through tests of recover_from_log_lines
    """Read log lines on stdin (e.g. exported from CloudWatch) and re-queue what they seal."""
    from crm_bridge.delivery.queue import OperationQueue

    queue = OperationQueue.from_environment()
    count = recover_from_log_lines(sys.stdin.read().splitlines(), queue.enqueue)
    print(f"re-queued {count} operation(s) to {queue.queue_url}")


if __name__ == "__main__":  # pragma: no cover
    main()
