"""Dual-write for a CRM cutover (``CRM_SHADOW_PROVIDER``): the primary CRM as always, and a copy for the shadow.

While a shadow is configured, every operation the API takes goes to the primary exactly as without
one (now, or queued), and a copy of it goes on the queue for the shadow. Each copy names its CRM
(the envelope's ``provider``, also a message attribute): the worker delivers it there while that CRM
is configured, primary or shadow, so that swapping the two later still sends each copy where it was
meant to go, and each copy has its own once-only record (``<provider>#<operation id>``), retries and
dead letter. A copy whose CRM is no longer configured (the shadow turned off, or switched away) goes
to the primary, where that CRM's once-only record and its operation markers stop a second write
(:meth:`crm_bridge.settings.Settings.destination`). Without a shadow, operations name no CRM, as
before: they go to whichever is primary when they are delivered.

The shadow never costs the primary its outcome: its copy is queued once the primary's outcome is
decided, whatever it was, and a copy that cannot be queued is sealed into the log for recovery like
any operation, logged and counted (``ShadowEnqueueFailures``); the API's answer stays the primary's.

The CRM names are read from the environment as set: the functions that build providers validate
them at start-up (:func:`crm_bridge.settings.load_settings`), and the redirect, which uses this
module, must not load pydantic (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.recovery import DeliveryUnavailable, queue_or_seal
from crm_bridge.envelope import QueueMessage
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import count


@dataclass(frozen=True)
class DualWrite:
    primary: str
    shadow: str


def dual_write() -> DualWrite | None:
    """The cutover's two CRMs (``CRM_PROVIDER``, ``CRM_SHADOW_PROVIDER``), or None: one CRM."""
    shadow = os.environ.get("CRM_SHADOW_PROVIDER")
    return DualWrite(os.environ.get("CRM_PROVIDER", ""), shadow) if shadow else None


@contextmanager
def shadowed(message: QueueMessage, queue: OperationQueue) -> Iterator[QueueMessage]:
    """The primary's copy of an operation, for the caller to deliver, queue or dead-letter; then,
    whatever became of it (a :class:`DeliveryUnavailable` included), the shadow's copy queued.

    The primary's copy names the primary while there is a shadow, and is ``message`` itself otherwise."""
    crms = dual_write()
    try:
        yield message if crms is None else message.copy_for(crms.primary)
    finally:
        if crms is not None:
            _queue_shadow_copy(message.copy_for(crms.shadow), queue)


def _queue_shadow_copy(copy: QueueMessage, queue: OperationQueue) -> None:
    """Queue the shadow's copy; never raises (a queue that fails has sealed it into the log)."""
    try:
        queue_or_seal(copy, partial(queue.send, copy))
    except DeliveryUnavailable as exc:
        count("ShadowEnqueueFailures")
        get_logger().warning(
            "the shadow CRM's copy was not queued; the primary is unaffected",
            extra=copy.identity() | {"recoverable_from_log": exc.recoverable_from_log},
        )
