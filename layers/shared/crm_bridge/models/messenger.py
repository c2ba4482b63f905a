"""A click on a "message us" button or a partner redirect: an activity, maybe on an unknown visitor.

Two models: what the website may say about a click (:class:`MessengerEvent`, the body of ``POST
/api/v1/messenger-events``), and the click as an operation carries it (:class:`MessengerActivity`),
which adds what only the redirect can know. A caller of the public route cannot claim that the
redirect started the session, link two sessions, or name a lead to write onto.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from crm_bridge.envelope import Channel
from crm_bridge.models.attribution import Touches
from crm_bridge.models.fields import OccurredAt, PageUrl
from crm_bridge.normalization import SESSION_ID_PATTERN

SessionId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=f"^{SESSION_ID_PATTERN.pattern}$")]


class MessengerEvent(Touches):
    """A click as the website reports it."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    channel: Channel
    session_id: SessionId = Field(description="The visitor's session id (cookie), 8-64 URL-safe characters")
    page: PageUrl | None = Field(default=None, description="Where the button was clicked")
    occurred_at: OccurredAt = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When the visitor clicked, as the browser's clock says (shown on the lead; the hourly "
        "cap counts by the server's clock)",
    )


class MessengerActivity(MessengerEvent):
    """A click as an operation carries it: the website's event, or the redirect's, with what only the
    redirect knows."""

    session_started: bool = Field(
        default=False,
        strict=True,
        description="The redirect started the visitor session on this very request (no earlier visit to the "
        "site shows a person): the click makes a lead only once the session returns.",
    )
    linked_session_id: SessionId | None = Field(
        default=None,
        exclude_if=lambda session: session is None,
        description="The API host's own session of the same browser, which the redirect saw beside the site's "
        "session (``session_id``): one visitor, so both sessions lead to one lead.",
    )
    """Written only when set: an envelope without it is what the previous release wrote and reads."""

    @model_validator(mode="before")
    @classmethod
    def _without_site_lead_id(cls, data: Any) -> Any:
        """Envelopes queued (or dead-lettered) by earlier releases carry ``lead_id``, an id the website
        sent: read without it. Any caller could send any id, so it is never trusted."""
        if isinstance(data, dict) and "lead_id" in data:
            return {name: value for name, value in data.items() if name != "lead_id"}
        return data

    def sessions(self) -> tuple[str, ...]:
        """The visitor's sessions this click speaks for: the site's, then the one it links."""
        return (self.session_id, self.linked_session_id) if self.linked_session_id else (self.session_id,)
