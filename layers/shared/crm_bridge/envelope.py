"""The operation envelope as it travels on SQS: its vocabulary, its identity, its JSON.

The pydantic models (``crm_bridge.models``) define and validate operations; this module is what
the envelope looks like on the wire, in plain Python, so that the redirect can queue a click
without loading pydantic (its import would double the redirect's cold start: docs/performance.md).
:func:`click_message` writes the very JSON ``MessengerClickOperation.model_dump_json()`` writes
for the same click (a test compares them), and the worker validates it like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import uuid4

from crm_bridge.normalization import ATTRIBUTION_RULES

SCHEMA_VERSION: Literal[1] = 1
MAX_CORRELATION_ID_LENGTH = 128
_MAX_ATTRIBUTE_LENGTH = 256  # SQS message attributes allow 256 KiB in all; these are short.
_TOUCH_PLACE = ("landing_page", "referrer", "touched_at")
"""A touch's keys after its attribution tags (``crm_bridge.models.attribution.Touch``)."""


class OperationKind(StrEnum):
    UPSERT_LEAD = "lead.upsert"
    MESSENGER_CLICK = "messenger.click"


class Origin(StrEnum):
    """Which entry point created the operation."""

    APPLICATIONS_API = "api.applications"
    MESSENGER_API = "api.messenger-events"
    REDIRECT = "redirect"


class Channel(StrEnum):
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    INSTAGRAM = "instagram"


def string_attribute(value: object) -> dict[str, str]:
    return {"DataType": "String", "StringValue": str(value)[:_MAX_ATTRIBUTE_LENGTH]}


@dataclass(frozen=True)
class QueueMessage:
    """An operation ready to send: its JSON body, and the identity an operator (or a log line) may
    show without opening the body, which holds personal data."""

    operation_id: str
    kind: str
    origin: str
    created_at: datetime
    body: str
    provider: str | None = None
    """The CRM this copy is for (a dual-write's: ``crm_bridge.delivery.dual_write``); None: the primary."""

    def attributes(self) -> dict[str, dict[str, str]]:
        """SQS message attributes: what an operator can filter on."""
        attributes = {
            "operation_id": string_attribute(self.operation_id),
            "kind": string_attribute(self.kind),
            "origin": string_attribute(self.origin),
            "schema_version": {"DataType": "Number", "StringValue": str(SCHEMA_VERSION)},
        }
        if self.provider is not None:
            attributes["provider"] = string_attribute(self.provider)
        return attributes

    def identity(self) -> dict[str, str]:
        identity = {
            "operation_id": self.operation_id,
            "kind": self.kind,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
        }
        return identity if self.provider is None else identity | {"provider": self.provider}

    def copy_for(self, provider: str) -> QueueMessage:
        """This operation's copy for one CRM: the envelope's ``provider`` set where the model writes
        it (before ``kind``), the rest unchanged."""
        fields = [(name, value) for name, value in json.loads(self.body).items() if name != "provider"]
        at = [name for name, _ in fields].index("kind")
        envelope = dict([*fields[:at], ("provider", provider), *fields[at:]])
        return replace(self, body=_json(envelope), provider=provider)


def _json(envelope: Mapping[str, object]) -> str:
    """An envelope's JSON as pydantic writes it: compact, UTF-8 rather than escapes."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def json_time(moment: datetime) -> str:
    """A time as pydantic writes it in JSON (``...Z`` for UTC)."""
    text = moment.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def click_message(
    *,
    channel: Channel,
    session_id: str,
    last_touch: Mapping[str, str],
    page: str | None,
    occurred_at: datetime,
    origin: Origin,
    correlation_id: str | None,
    session_started: bool = False,
    linked_session_id: str | None = None,
) -> QueueMessage:
    """A messenger click, already valid (the caller applied ``crm_bridge.normalization``), as the
    envelope of a ``MessengerClickOperation``; ``last_touch`` holds the link's attribution tags."""
    operation_id = str(uuid4())
    moment = json_time(occurred_at)
    envelope = {
        "schema_version": SCHEMA_VERSION,
        "operation_id": operation_id,
        "created_at": moment,
        "origin": origin.value,
        "correlation_id": correlation_id[:MAX_CORRELATION_ID_LENGTH] if correlation_id else None,
        "kind": OperationKind.MESSENGER_CLICK.value,
        "payload": {
            "first_touch": None,
            "last_touch": {name: last_touch.get(name) for name in (*ATTRIBUTION_RULES, *_TOUCH_PLACE)}
            if last_touch
            else None,
            "attribution": None,
            "channel": channel.value,
            "session_id": session_id,
            "page": page,
            "occurred_at": moment,
            "session_started": session_started,
            **({"linked_session_id": linked_session_id} if linked_session_id else {}),
        },
    }
    return QueueMessage(operation_id, OperationKind.MESSENGER_CLICK.value, origin.value, occurred_at, _json(envelope))
