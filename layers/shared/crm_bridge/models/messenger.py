"""A click on a "message us" button or a partner redirect: an activity, maybe on an unknown visitor."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from crm_bridge.models.attribution import Attribution

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
SessionId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{SESSION_ID_PATTERN.pattern}$")]
LeadId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
PageUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048, pattern=r"^(https?://|/)[!-~]*$")]
"""Visible ASCII, as browsers send a location (anything else percent-encoded): nothing invisible."""


def _date_time_text(value: object) -> object:
    """JSON carries a time as ISO 8601 text, as the API documents; a bare number (which pydantic would
    read as Unix time) is refused rather than guessed at."""
    if not isinstance(value, str | datetime):
        raise ValueError("give the time as an ISO 8601 date-time with its offset, e.g. 2024-05-01T12:30:00Z")
    return value


OccurredAt = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


class Channel(StrEnum):
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    INSTAGRAM = "instagram"


class MessengerActivity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    session_id: SessionId = Field(description="The visitor's session id (cookie), 8-64 URL-safe characters")
    lead_id: LeadId | None = Field(default=None, description="CRM id of the lead, when the site knows it")
    page: PageUrl | None = Field(default=None, description="Where the button was clicked")
    occurred_at: OccurredAt = Field(default_factory=lambda: datetime.now(UTC))
    attribution: Attribution = Field(default_factory=Attribution)
