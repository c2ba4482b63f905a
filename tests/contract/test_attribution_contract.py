"""First and last touch, click ids and consent evidence on the lead, in every CRM: the partner who is
paid, the campaign that brought the person back, and what they agreed to."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from crm_bridge.field_mapping import MappedField
from crm_bridge.models import Application
from tests.contract.conftest import Crm

FIRST_TOUCH = {
    "referral_code": "PARTNER-99",
    "utm_source": "fb",
    "utm_campaign": "spring",
    "gclid": "TeSt-GCLID.1",
    "landing_page": "https://www.agency.test/",
    "referrer": "https://m.facebook.com/",
    "touched_at": "2026-11-01T09:30:00Z",
}
LAST_TOUCH = {
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "autumn",
    "gbraid": "0AAAAA-gbraid",
    "landing_page": "https://www.agency.test/programs",
    "touched_at": "2026-12-01T18:00:00Z",
}
CONSENT = {
    "consent": True,
    "consent_version": "kvkk-2026-03",
    "consent_at": "2026-12-01T18:05:00Z",
    "consent_page": "https://www.agency.test/apply",
}


def application(**overrides: object) -> Application:
    data: dict[str, object] = {
        "name": "Deniz Aydın",
        "phone": "+90 535 222 33 44",
        "first_touch": FIRST_TOUCH,
        "last_touch": LAST_TOUCH,
        **CONSENT,
    }
    return Application.model_validate(data | overrides)


def value(crm: Crm, lead: dict[str, Any], field: MappedField) -> object:
    """The lead's value of a mapped field; None when this CRM's default mapping has no field for it."""
    attribute = crm.provider.mapping.attribute(field)
    return None if attribute is None else lead.get(attribute)


def text_of(crm: Crm, lead_id: str) -> str:
    """Everything a salesperson reads on the lead: its fields' text and its timeline."""
    lead = crm.sim.lead(lead_id)
    return "\n".join([*(str(item) for item in lead.values()), *crm.sim.timeline(lead_id)])


def test_both_touches_and_the_consent_are_on_the_new_lead(crm: Crm) -> None:
    result = crm.provider.upsert_lead(application(), uuid4())

    lead = crm.sim.lead(result.record_id)
    assert value(crm, lead, MappedField.REFERRAL_CODE) == "PARTNER-99", "the partner of the first touch is paid"
    assert value(crm, lead, MappedField.FIRST_REFERRAL_CODE) == "PARTNER-99"
    assert value(crm, lead, MappedField.FIRST_UTM_SOURCE) == "fb"
    assert value(crm, lead, MappedField.FIRST_UTM_CAMPAIGN) == "spring"
    assert value(crm, lead, MappedField.UTM_SOURCE) == "google"
    assert value(crm, lead, MappedField.UTM_MEDIUM) == "cpc"
    assert value(crm, lead, MappedField.UTM_CAMPAIGN) == "autumn"
    assert value(crm, lead, MappedField.CONSENT_VERSION) == "kvkk-2026-03"
    assert value(crm, lead, MappedField.FIRST_TOUCH_AT) == "2026-11-01T09:30:00Z"
    if crm.provider.mapping.attribute(MappedField.GBRAID) is not None:
        assert value(crm, lead, MappedField.GBRAID) == "0AAAAA-gbraid"
    text = text_of(crm, result.record_id)
    assert (
        "First touch: ref=PARTNER-99, utm_source=fb, utm_campaign=spring, gclid=TeSt-GCLID.1; landed on "
        "https://www.agency.test/; from https://m.facebook.com/; at 2026-11-01 09:30 UTC"
    ) in text
    assert "Last touch: utm_source=google, utm_medium=cpc, utm_campaign=autumn, gbraid=0AAAAA-gbraid" in text
    assert (
        "Privacy notice accepted (version kvkk-2026-03) at 2026-12-01 18:05 UTC on https://www.agency.test/apply."
    ) in text


def test_a_repeat_never_overwrites_the_first_touch_and_notes_its_own(crm: Crm) -> None:
    first = crm.provider.upsert_lead(application(), uuid4())
    again = crm.provider.upsert_lead(
        application(
            first_touch={"referral_code": "OTHER-1", "utm_source": "tiktok", "ttclid": "tt-123"},
            last_touch={"utm_source": "newsletter", "utm_campaign": "winter"},
        ),
        uuid4(),
    )

    assert again.record_id == first.record_id
    lead = crm.sim.lead(first.record_id)
    assert value(crm, lead, MappedField.FIRST_REFERRAL_CODE) == "PARTNER-99"
    assert value(crm, lead, MappedField.FIRST_UTM_SOURCE) == "fb"
    assert value(crm, lead, MappedField.REFERRAL_CODE) == "PARTNER-99"
    (note,) = [note for note in crm.sim.timeline(first.record_id) if note.startswith("Submitted the application")]
    assert "Last touch: utm_source=newsletter, utm_campaign=winter" in note
    assert "First touch: ref=OTHER-1, utm_source=tiktok, ttclid=tt-123" in note


def test_an_older_site_s_attribution_is_the_last_touch(crm: Crm) -> None:
    result = crm.provider.upsert_lead(
        Application.model_validate(
            {
                "name": "Deniz Aydın",
                "email": "deniz@example.com",
                "consent": True,
                "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram"},
            }
        ),
        uuid4(),
    )

    lead = crm.sim.lead(result.record_id)
    assert value(crm, lead, MappedField.REFERRAL_CODE) == "PARTNER-42"
    assert value(crm, lead, MappedField.UTM_SOURCE) == "instagram"
    assert value(crm, lead, MappedField.FIRST_REFERRAL_CODE) in (None, "")
    assert "Last touch: ref=PARTNER-42, utm_source=instagram" in text_of(crm, result.record_id)
