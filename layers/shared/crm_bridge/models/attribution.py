"""Where a visitor came from: the partner's referral code, UTM tags and ad click ids, as touches.

A visit is attributed twice: the **first touch** (how the person first found the site: the partner
who is paid for them) and the **last touch** (the campaign that brought them back to apply). The
website snippet (``site/crm-bridge.js``) keeps both in a first-party cookie and sends them with
applications and clicks; an older site's single ``attribution`` is read as the last touch.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_bridge.models.fields import ClickId, MediumText, OccurredAt, PageUrl, ReferralCode
from crm_bridge.normalization import MAX_TAG_INPUT_LENGTH


class Attribution(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid", str_max_length=MAX_TAG_INPUT_LENGTH)

    referral_code: ReferralCode = None
    utm_source: MediumText = None
    utm_medium: MediumText = None
    utm_campaign: MediumText = None
    utm_term: MediumText = None
    utm_content: MediumText = None
    utm_id: MediumText = None
    gclid: ClickId = None
    gbraid: ClickId = None
    wbraid: ClickId = None
    fbclid: ClickId = None
    ttclid: ClickId = None
    msclkid: ClickId = None
    yclid: ClickId = None
    ctwa_clid: ClickId = None

    def present(self) -> dict[str, str]:
        """Only the values that were given, by field name, as JSON writes them."""
        return {name: value for name, value in self.model_dump(mode="json").items() if value is not None}


class Touch(Attribution):
    """One attributed arrival on the site: its tags, where it landed, where from, and when."""

    landing_page: PageUrl | None = Field(default=None, description="The page the visitor arrived on, without query")
    referrer: PageUrl | None = Field(default=None, description="The external page that linked to the site")
    touched_at: OccurredAt | None = Field(default=None, description="When the visitor arrived (ISO 8601)")

    def tags(self) -> dict[str, str]:
        """The attribution tags only (referral code, UTM, click ids)."""
        return {name: value for name, value in self.present().items() if name in Attribution.model_fields}


class Touches(BaseModel):
    """First and last touch of an event. ``attribution`` (what sites sent before touches existed)
    is accepted as the last touch, so existing callers keep working."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    first_touch: Touch | None = Field(
        default=None, description="How the visitor first arrived; never overwrites the lead's first touch"
    )
    last_touch: Touch | None = Field(default=None, description="The latest attributed arrival before this event")
    attribution: Attribution | None = Field(
        default=None,
        description="Deprecated: the last touch's tags under their older name; read as last_touch",
        json_schema_extra={"deprecated": True},
    )

    @model_validator(mode="after")
    def _one_last_touch(self) -> Self:
        if self.last_touch is not None and self.attribution is not None and self.attribution.present():
            raise ValueError("give the last touch once: as 'last_touch' or under its older name 'attribution'")
        return self

    def latest_touch(self) -> Touch | None:
        """The last touch, whichever name it came under."""
        if self.last_touch is not None:
            return self.last_touch
        tags = self.attribution.present() if self.attribution is not None else {}
        return Touch.model_validate(tags) if tags else None

    def touches(self) -> tuple[tuple[str, Touch], ...]:
        """The touches given, labelled for a salesperson ("First touch", "Last touch")."""
        given = (("First touch", self.first_touch), ("Last touch", self.latest_touch()))
        return tuple((label, touch) for label, touch in given if touch is not None and touch.present())

    def referral_code(self) -> str | None:
        """The partner code of the event: the last touch's, else the first touch's."""
        for touch in (self.latest_touch(), self.first_touch):
            if touch is not None and touch.referral_code:
                return touch.referral_code
        return None
