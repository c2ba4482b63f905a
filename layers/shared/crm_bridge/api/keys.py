"""``Idempotency-Key``: the client's name for one submission, which fixes its operation id.

A retry with the same key (after a 503, say) is the same operation for the worker's exactly-once
delivery, even when the first attempt was also sealed into the log and recovered from there. Kept
apart from :mod:`crm_bridge.api.idempotency` (Powertools idempotency, boto3): functions that only
need the operation id do not load a store they never use.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

_KEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://crm-bridge/idempotency-key")


def operation_id_for(idempotency_key: str | None) -> UUID:
    return uuid5(_KEY_NAMESPACE, idempotency_key) if idempotency_key else uuid4()
