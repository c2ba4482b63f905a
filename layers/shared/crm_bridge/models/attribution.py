"""Where a visitor came from: the partner's referral code, UTM tags and ad click ids."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from crm_bridge.models.fields import ClickId, MediumText, ReferralCode
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
    fbclid: ClickId = None

    def present(self) -> dict[str, str]:
        """Only the tags that were given, by field name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}
