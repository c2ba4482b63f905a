"""The operation envelope: every CRM write as versioned, serialisable data.

This is what the API tries at once, what travels on SQS, what the retry worker executes and what
the dead-letter queue shows to an operator. It round-trips through JSON unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from crm_bridge.envelope import MAX_CORRELATION_ID_LENGTH, SCHEMA_VERSION, OperationKind, Origin, QueueMessage
from crm_bridge.models.application import Application
from crm_bridge.models.messenger import MessengerActivity
from crm_bridge.settings import CrmProviderName


class _OperationBase(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    operation_id: UUID = Field(default_factory=uuid4)
    created_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    origin: Origin
    correlation_id: str | None = Field(
        default=None, max_length=MAX_CORRELATION_ID_LENGTH, description="The API request id"
    )
    provider: CrmProviderName | None = Field(
        default=None,
        exclude_if=lambda provider: provider is None,
        description="The CRM this copy is for (a dual-write's, crm_bridge.delivery.dual_write); "
        "absent: the primary at delivery time",
    )
    """Written only when set: without a dual-write an envelope is what it was before, so a worker of
    the previous release (during a deploy, or after a rollback) still reads it."""

    def message(self) -> QueueMessage:
        """This operation as it is sent to a queue."""
        kind: OperationKind = getattr(self, "kind")  # noqa: B009 - declared by each subclass
        return QueueMessage(
            str(self.operation_id),
            kind.value,
            self.origin.value,
            self.created_at,
            self.model_dump_json(),
            self.provider,
        )


class UpsertLeadOperation(_OperationBase):
    kind: Literal[OperationKind.UPSERT_LEAD] = OperationKind.UPSERT_LEAD
    payload: Application


class MessengerClickOperation(_OperationBase):
    kind: Literal[OperationKind.MESSENGER_CLICK] = OperationKind.MESSENGER_CLICK
    payload: MessengerActivity


Operation = Annotated[UpsertLeadOperation | MessengerClickOperation, Field(discriminator="kind")]


@cache
def _operation_adapter() -> TypeAdapter[Operation]:
    """Built on first use: the API functions write operations but never read one back."""
    return TypeAdapter(Operation)


def parse_operation(data: str | bytes) -> Operation:
    """Read an operation from its JSON form (an SQS message body)."""
    return _operation_adapter().validate_json(data)


def dump_operation(operation: Operation) -> str:
    return operation.model_dump_json()
