"""A click on a "message us" button or a partner redirect: an activity, maybe on an unknown visitor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from crm_bridge.envelope import Channel
from crm_bridge.models.attribution import Attribution
from crm_bridge.normalization import MAX_PAGE_URL_LENGTH, PAGE_URL_PATTERN, SESSION_ID_PATTERN

SessionId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{SESSION_ID_PATTERN.pattern}$")]
LeadId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
PageUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_PAGE_URL_LENGTH, pattern=f"^{PAGE_URL_PATTERN.pattern}$"),
]


def _date_time_text(value: object) -> object:
    """JSON carries a time as ISO 8601 text, as the API documents; a bare number (which pydantic would
    read as Unix time) is refused rather than guessed at."""
    if not isinstance(value, str | datetime):
        raise ValueError("give the time as an ISO 8601 date-time with its offset, e.g. 2024-05-01T12:30:00Z")
    return value


OccurredAt = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


class MessengerActivity(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    channel: Channel
    session_id: SessionId = Field(description="The visitor's session id (cookie), 8-64 URL-safe characters")
    lead_id: LeadId | None = Field(default=None, description="CRM id of the lead, when the site knows it")
    page: PageUrl | None = Field(default=None, description="Where the button was clicked")
    occurred_at: OccurredAt = Field(default_factory=lambda: datetime.now(UTC))
    attribution: Attribution = Field(default_factory=Attribution)
