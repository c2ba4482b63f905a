"""A value only the CRM objects to never costs the lead (issue #12).

EspoCRM refuses a whole write with a 400 naming one field when that field's value is longer than
its maxLength, is not one of its enum's options, or is a phone number its libphonenumber does not
know. The visitor could not have fixed any of these, so the provider writes the lead again without
that field and keeps the value in the lead's description (or, for an update that does not write
the description, on its timeline). Only a refusal that leaving a field out cannot answer stays a
PermanentCrmError, for the dead-letter queue.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from uuid import uuid4

import pytest

from crm_bridge.errors import PermanentCrmError
from crm_bridge.field_mapping import MappedField, load_field_mapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.providers import CrmProvider, LeadAction, LeadChanges, build_provider
from crm_bridge.providers.lead_draft import operation_marker
from crm_bridge.settings import load_settings
from tests.simulators.espocrm import SimulatedEspoCrm

API_KEY = "refused-fields-espo-key-7d1e"


@pytest.fixture
def espocrm() -> Iterator[SimulatedEspoCrm]:
    with SimulatedEspoCrm(api_key=API_KEY) as simulated:
        yield simulated


@pytest.fixture
def provider(espocrm: SimulatedEspoCrm) -> CrmProvider:
    settings = load_settings({"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": API_KEY})
    return build_provider(settings, load_field_mapping())


def application(**overrides: object) -> Application:
    data: dict[str, object] = {
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "+90 532 123 45 67",
        "email": "ayse.yilmaz@example.com",
        "user_type": "parent",
        "program": "Computer Engineering (BSc, taught in English)",
        "consent": True,
        "attribution": {"referral_code": "PARTNER-42"},
    }
    data.update(overrides)
    return Application.model_validate(data)


def description_lines(espocrm: SimulatedEspoCrm, lead_id: str) -> list[str]:
    return str(espocrm.lead(lead_id)["description"]).split("\n")


def test_a_value_too_long_for_its_field_goes_into_the_description(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    espocrm.define_field("lastName", max_length=5)  # an admin shortened the field
    operation_id = uuid4()

    result = provider.upsert_lead(application(), operation_id)

    assert (result.action, result.dropped_fields) == (LeadAction.CREATED, ("lastName",))
    lead = espocrm.lead(result.record_id)
    assert (lead["firstName"], lead["lastName"]) == ("Ayşe", None)
    lines = description_lines(espocrm, result.record_id)
    assert "Last name: Yılmaz" in lines
    assert lines[-1] == operation_marker(operation_id), "the marker stays last: a retry still finds the lead"
    assert lead["cProgram"] == "Computer Engineering (BSc, taught in English)"
    assert espocrm.lead_phones(result.record_id) == ["+905321234567"]


def test_an_option_the_crm_lacks_goes_into_the_description(espocrm: SimulatedEspoCrm, provider: CrmProvider) -> None:
    espocrm.define_field("cUserType", options=["", "Student", "Other"])  # no "Parent" in this CRM

    result = provider.upsert_lead(application(), uuid4())

    assert (result.action, result.dropped_fields) == (LeadAction.CREATED, ("cUserType",))
    assert espocrm.lead(result.record_id)["cUserType"] is None
    assert "Applicant: parent" in description_lines(espocrm, result.record_id)
    assert espocrm.lead(result.record_id)["cReferralCode"] == "PARTNER-42"


def test_every_refused_field_is_left_out_in_turn(espocrm: SimulatedEspoCrm, provider: CrmProvider) -> None:
    espocrm.define_field("cProgram", max_length=20)
    espocrm.define_field("cUserType", options=["", "Student"])

    result = provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert sorted(result.dropped_fields) == ["cProgram", "cUserType"]
    lines = description_lines(espocrm, result.record_id)
    assert "Programme: Computer Engineering (BSc, taught in English)" in lines
    assert lines.count("Applicant: parent") == 1, "a line the description holds already is not repeated"


def test_a_phone_the_crms_libphonenumber_does_not_know_yet_goes_into_the_description(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    benin = application(phone="+229 01 95 12 34 56")  # ten digits since 2024; EspoCRM 8.4.2 knows eight

    created = provider.upsert_lead(benin, uuid4())
    again = provider.upsert_lead(benin, uuid4())  # found by e-mail; a repeat writes no contacts at all

    assert created.dropped_fields == ("phoneNumber",)
    assert espocrm.lead_phones(created.record_id) == []
    assert "Phone: +2290195123456" in description_lines(espocrm, created.record_id)
    assert (again.record_id, again.action, again.dropped_fields) == (created.record_id, LeadAction.UNCHANGED, ())
    assert "Phone: +2290195123456" in espocrm.timeline(created.record_id)[-1].split("\n")


def test_a_value_refused_when_filling_a_known_lead_goes_on_its_timeline(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    known = espocrm.seed_lead(first_name="Ayşe", email="ayse.yilmaz@example.com", attributes={"description": "VIP"})
    espocrm.define_field("cUniversity", max_length=5)

    result = provider.upsert_lead(application(university="Boğaziçi University"), uuid4())

    assert (result.record_id, result.action, result.dropped_fields) == (known, LeadAction.UPDATED, ("cUniversity",))
    assert espocrm.lead(known)["description"] == "VIP", "the salesperson's text is never overwritten"
    assert espocrm.lead(known)["cProgram"] == "Computer Engineering (BSc, taught in English)"
    note = espocrm.timeline(known)[-1].split("\n")
    assert "University: Boğaziçi University" in note
    assert note[-1].startswith("crm-bridge operation ")


def test_an_explicit_update_keeps_a_refused_value_on_the_timeline(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    lead_id = espocrm.seed_lead(last_name="Yılmaz")
    espocrm.define_field("cReferralCode", max_length=8)

    result = provider.update_lead(
        lead_id, LeadChanges(values={MappedField.REFERRAL_CODE: "PARTNER-2024-AUTUMN", MappedField.PROGRAM: "MBA"})
    )

    assert (result.action, result.dropped_fields) == (LeadAction.UPDATED, ("cReferralCode",))
    assert espocrm.lead(lead_id)["cProgram"] == "MBA"
    assert result.activity_id is not None
    assert "Partner referral code: PARTNER-2024-AUTUMN" in espocrm.timeline(lead_id)[-1].split("\n")


def test_a_messenger_lead_keeps_a_refused_channel_in_its_description(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    espocrm.define_field("cMessengerChannel", options=["", "Telegram", "WhatsApp"])
    click = MessengerActivity.model_validate({"channel": "instagram", "session_id": "visitor-session-0042"})

    result = provider.create_minimal_lead_from_activity(click, uuid4())

    assert (result.action, result.dropped_fields) == (LeadAction.CREATED, ("cMessengerChannel",))
    assert "Messenger: instagram" in description_lines(espocrm, result.record_id)
    assert espocrm.lead(result.record_id)["cVisitorSessionId"] == "visitor-session-0042"


@pytest.mark.parametrize(
    ("refusal", "field"),
    [
        pytest.param(("cReferralCode", "cPartnerAgreement"), "cPartnerAgreement", id="a field we never write"),
        pytest.param(("cReferralCode", "cProgram"), "cProgram", id="refused again once left out"),
        pytest.param(("description", "description"), "description", id="the description itself"),
    ],
)
def test_a_refusal_leaving_a_field_out_cannot_answer_stays_permanent(
    espocrm: SimulatedEspoCrm, provider: CrmProvider, refusal: tuple[str, str], field: str
) -> None:
    carried, named = refusal
    espocrm.reject_attribute(carried, named=named)

    with pytest.raises(PermanentCrmError) as refused:
        provider.upsert_lead(application(), uuid4())

    assert (refused.value.status, refused.value.field) == (400, field)
    assert espocrm.leads() == []


def test_a_required_field_the_mapping_never_fills_stays_permanent(
    espocrm: SimulatedEspoCrm, provider: CrmProvider
) -> None:
    espocrm.require_attribute("cIntake")

    with pytest.raises(PermanentCrmError) as refused:
        provider.upsert_lead(application(), uuid4())

    assert refused.value.field == "cIntake"


def test_what_was_left_out_is_logged_by_name_never_by_value(
    espocrm: SimulatedEspoCrm, provider: CrmProvider, log_output: io.StringIO
) -> None:
    espocrm.define_field("lastName", max_length=5)

    provider.upsert_lead(application(), uuid4())

    logged = log_output.getvalue()
    assert '"dropped_fields":["lastName"]' in logged
    assert "Yılmaz" not in logged
    assert "Yilmaz" not in logged
