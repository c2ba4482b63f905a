"""A click on a "message us" button or a partner redirect: an activity, maybe on an unknown visitor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from crm_bridge.envelope import Channel
from crm_bridge.models.attribution import Touches
from crm_bridge.models.fields import OccurredAt, PageUrl
from crm_bridge.normalization import SESSION_ID_PATTERN

SessionId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{SESSION_ID_PATTERN.pattern}$")]
LeadId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class MessengerActivity(Touches):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    channel: Channel
    session_id: SessionId = Field(description="The visitor's session id (cookie), 8-64 URL-safe characters")
    lead_id: LeadId | None = Field(default=None, description="CRM id of the lead, when the site knows it")
    page: PageUrl | None = Field(default=None, description="Where the button was clicked")
    occurred_at: OccurredAt = Field(default_factory=lambda: datetime.now(UTC))
    session_started: bool = Field(
        default=False,
        strict=True,
        description="Set by the redirect when it started the visitor session on this very request (no earlier "
        "visit to the site shows a person): the click makes a lead only once the session returns. Sites leave it out.",
    )
