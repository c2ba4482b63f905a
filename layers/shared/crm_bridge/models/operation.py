"""The operation envelope: every CRM write as versioned, serialisable data.

This is what the API tries at once, what travels on SQS, what the retry worker executes and what
the dead-letter queue shows to an operator. It round-trips through JSON unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from crm_bridge.models.application import Application
from crm_bridge.models.messenger import MessengerActivity

SCHEMA_VERSION: Literal[1] = 1


class OperationKind(StrEnum):
    UPSERT_LEAD = "lead.upsert"
    MESSENGER_CLICK = "messenger.click"


class Origin(StrEnum):
    """Which entry point created the operation."""

    APPLICATIONS_API = "api.applications"
    MESSENGER_API = "api.messenger-events"
    REDIRECT = "redirect"


class _OperationBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    operation_id: UUID = Field(default_factory=uuid4)
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    origin: Origin
    correlation_id: str | None = Field(default=None, max_length=128, description="The API request id")


class UpsertLeadOperation(_OperationBase):
    kind: Literal[OperationKind.UPSERT_LEAD] = OperationKind.UPSERT_LEAD
    payload: Application


class MessengerClickOperation(_OperationBase):
    kind: Literal[OperationKind.MESSENGER_CLICK] = OperationKind.MESSENGER_CLICK
    payload: MessengerActivity


Operation = Annotated[UpsertLeadOperation | MessengerClickOperation, Field(discriminator="kind")]
_operation_adapter: TypeAdapter[Operation] = TypeAdapter(Operation)


def parse_operation(data: str | bytes) -> Operation:
    """Read an operation from its JSON form (an SQS message body)."""
    return _operation_adapter.validate_json(data)


def dump_operation(operation: Operation) -> str:
    return operation.model_dump_json()
