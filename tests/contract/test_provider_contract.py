"""One contract, every CRM: what crm-bridge promises whichever provider is configured.

Each test runs against EspoCRM and Bitrix24 simulators that answer as the real APIs do
(tests/simulators); a live EspoCRM variant of the same behaviours is in test_live_espocrm.py.
"""

from __future__ import annotations

import io
from uuid import uuid4

import pytest

from crm_bridge.errors import (
    CrmConfigurationError,
    CrmError,
    ErrorKind,
    LeadNotFound,
    PermanentCrmError,
    RetryableCrmError,
)
from crm_bridge.field_mapping import MappedField
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.observability import get_logger
from crm_bridge.providers import LeadAction, LeadChanges
from tests.contract.conftest import Crm
from tests.simulators.base import Failure


def application(**overrides: object) -> Application:
    data: dict[str, object] = {
        "first_name": "Ayşe",
        "last_name": "Yılmaz",
        "phone": "0532 123 45 67",
        "email": "ayse.yilmaz@example.com",
        "user_type": "student",
        "program": "Medicine",
        "message": "I would like to study in Istanbul.",
        "consent": True,
        "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram", "utm_campaign": "autumn"},
    }
    data.update(overrides)
    return Application.model_validate(data)


def click(session_id: str = "visitor-session-0001", **overrides: object) -> MessengerActivity:
    data: dict[str, object] = {
        "channel": "telegram",
        "session_id": session_id,
        "page": "/programs/medicine",
        "attribution": {"referral_code": "PARTNER-42"},
    }
    data.update(overrides)
    return MessengerActivity.model_validate(data)


def test_a_new_application_creates_one_complete_lead(crm: Crm) -> None:
    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert result.provider == crm.sim.provider_name
    assert result.elapsed_ms >= 0
    assert [str(lead_id) for lead_id in _lead_ids(crm)] == [result.record_id]
    assert crm.sim.lead_phones(result.record_id) == ["+905321234567"]
    assert crm.sim.lead_emails(result.record_id) == ["ayse.yilmaz@example.com"]
    lead = crm.sim.lead(result.record_id)
    assert lead[crm.attribute(MappedField.REFERRAL_CODE)] == "PARTNER-42"
    assert lead[crm.attribute(MappedField.UTM_SOURCE)] == "instagram"
    assert "I would like to study in Istanbul." in str(lead), "the message is kept on the lead"


def test_a_repeat_submission_updates_empty_fields_and_adds_a_note(crm: Crm) -> None:
    first = crm.provider.upsert_lead(application(university=None), uuid4())
    again = crm.provider.upsert_lead(application(university="Koç University", program="Law"), uuid4())

    assert again.action is LeadAction.UPDATED
    assert again.record_id == first.record_id
    assert len(crm.sim.leads()) == 1
    lead = crm.sim.lead(first.record_id)
    assert lead[crm.attribute(MappedField.UNIVERSITY)] == "Koç University", "an empty field is filled"
    assert lead[crm.attribute(MappedField.PROGRAM)] == "Medicine", "a filled field is never overwritten"
    notes = crm.sim.timeline(first.record_id)
    assert any("again" in note and "Law" in note for note in notes), notes


def test_an_identical_retry_changes_nothing_and_notes_nothing(crm: Crm) -> None:
    """What a retry after an ambiguous timeout does: no second lead, no overwritten data, and no
    "submitted again" note (the lead carries the operation that created it)."""
    operation_id = uuid4()
    first = crm.provider.upsert_lead(application(), operation_id)
    retry = crm.provider.upsert_lead(application(), operation_id)

    assert retry.action is LeadAction.UNCHANGED
    assert retry.record_id == first.record_id
    assert len(crm.sim.leads()) == 1
    assert crm.sim.timeline(first.record_id) == []


def test_a_retried_repeat_submission_notes_it_once(crm: Crm) -> None:
    lead_id = crm.provider.upsert_lead(application(), uuid4()).record_id
    repeat = uuid4()
    crm.provider.upsert_lead(application(program="Law"), repeat)
    retry = crm.provider.upsert_lead(application(program="Law"), repeat)

    assert retry.action is LeadAction.UNCHANGED
    assert len([note for note in crm.sim.timeline(lead_id) if "again" in note]) == 1


def test_a_retried_activity_is_logged_once(crm: Crm) -> None:
    lead_id = crm.provider.upsert_lead(application(), uuid4()).record_id
    operation_id = uuid4()
    first = crm.provider.log_activity(lead_id, click(), operation_id)
    retry = crm.provider.log_activity(lead_id, click(), operation_id)

    assert (first.action, retry.action) == (LeadAction.UPDATED, LeadAction.UNCHANGED)
    assert [str(operation_id) in note for note in crm.sim.timeline(lead_id)] == [True]


def test_a_retried_first_click_of_a_session_is_its_lead_and_nothing_more(crm: Crm) -> None:
    operation_id = uuid4()
    first = crm.provider.create_minimal_lead_from_activity(click(), operation_id)
    retry = crm.provider.create_minimal_lead_from_activity(click(), operation_id)

    assert (retry.action, retry.record_id) == (LeadAction.UNCHANGED, first.record_id)
    assert len(crm.sim.leads()) == 1
    assert crm.sim.timeline(first.record_id) == [], "the click is the lead's description, not also a note"


def test_a_retried_activity_for_a_lead_that_does_not_exist_says_so(crm: Crm) -> None:
    with pytest.raises(LeadNotFound):
        crm.provider.log_activity("999999", click(), uuid4())


def test_a_match_by_email_keeps_the_leads_phones_and_notes_the_new_one(crm: Crm) -> None:
    lead_id = crm.sim.seed_lead(
        first_name="Ayşe", last_name="Yılmaz", phone="+905551112233", email="ayse.yilmaz@example.com"
    )

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.record_id == lead_id
    assert crm.sim.lead_phones(lead_id) == ["+905551112233"]
    assert crm.sim.lead_emails(lead_id) == ["ayse.yilmaz@example.com"]
    (note,) = crm.sim.timeline(lead_id)
    assert "Phone: +905321234567" in note.split("\n"), "the number this submission gave, for a salesperson"


@pytest.mark.parametrize("known_email", [None, "ayse.yilmaz@example.com"], ids=["lead without e-mail", "with one"])
def test_a_repeat_cannot_change_the_matched_persons_contacts_or_name(crm: Crm, known_email: str | None) -> None:
    """Matching a lead by phone proves nothing about who typed the rest: someone with Ayşe's number and
    their own e-mail and name does not become the address the agency writes to about her."""
    lead_id = crm.sim.seed_lead(first_name="Ayşe", last_name="Yılmaz", phone="+905321234567", email=known_email)

    result = crm.provider.upsert_lead(
        application(first_name="Mallory", last_name="Stranger", email="mallory@evil.example"), uuid4()
    )

    assert result.record_id == lead_id
    assert len(crm.sim.leads()) == 1
    assert crm.sim.lead_emails(lead_id) == ([known_email] if known_email else [])
    assert crm.sim.lead_phones(lead_id) == ["+905321234567"]
    assert "Mallory" not in str(crm.sim.lead(lead_id))
    (note,) = crm.sim.timeline(lead_id)
    lines = note.split("\n")
    assert "the lead's own were not changed" in lines[0]
    assert {"Name: Mallory Stranger", "E-mail: mallory@evil.example"} <= set(lines)


def test_a_match_by_phone_keeps_the_name_the_crm_has(crm: Crm) -> None:
    lead_id = crm.sim.seed_lead(first_name="Ayshe", last_name="Yilmaz", phone="+905321234567")

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.record_id == lead_id
    assert len(crm.sim.leads()) == 1
    assert "Ayshe" in str(crm.sim.lead(lead_id))
    assert "Ayşe" not in str(crm.sim.lead(lead_id))


def test_a_namesake_with_other_contacts_is_a_different_lead(crm: Crm) -> None:
    crm.sim.seed_lead(first_name="Ayşe", last_name="Yılmaz", phone="+905559998877", email="other.ayse@example.com")

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 2


def test_an_activity_is_logged_on_a_known_lead(crm: Crm) -> None:
    lead_id = crm.provider.upsert_lead(application(), uuid4()).record_id

    result = crm.provider.log_activity(lead_id, click(lead_id=lead_id, channel="whatsapp"))

    assert result.record_id == lead_id
    assert result.activity_id
    assert any("WhatsApp" in note and "/programs/medicine" in note for note in crm.sim.timeline(lead_id))


def test_an_anonymous_visitor_gets_one_minimal_lead_per_session(crm: Crm) -> None:
    first = crm.provider.create_minimal_lead_from_activity(click(), uuid4())
    second = crm.provider.create_minimal_lead_from_activity(click(channel="instagram"), uuid4())
    other = crm.provider.create_minimal_lead_from_activity(click("visitor-session-0002"), uuid4())

    assert first.action is LeadAction.CREATED
    assert (second.action, second.record_id) == (LeadAction.UPDATED, first.record_id)
    assert other.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 2
    lead = crm.sim.lead(first.record_id)
    assert lead[crm.attribute(MappedField.VISITOR_SESSION_ID)] == "visitor-session-0001"
    assert lead[crm.attribute(MappedField.REFERRAL_CODE)] == "PARTNER-42"
    assert any("Instagram" in note for note in crm.sim.timeline(first.record_id))


def test_update_lead_sets_the_given_fields(crm: Crm) -> None:
    lead_id = crm.provider.create_minimal_lead_from_activity(click(), uuid4()).record_id

    result = crm.provider.update_lead(
        lead_id, LeadChanges(phone="+905321234567", values={MappedField.REFERRAL_CODE: "PARTNER-7"})
    )

    assert result.action is LeadAction.UPDATED
    assert crm.sim.lead_phones(lead_id) == ["+905321234567"]
    assert crm.sim.lead(lead_id)[crm.attribute(MappedField.REFERRAL_CODE)] == "PARTNER-7"
    assert crm.provider.update_lead(lead_id, LeadChanges()).action is LeadAction.UNCHANGED


def test_a_value_one_field_refuses_leaves_that_field_out_where_the_crm_names_it(crm: Crm) -> None:
    """EspoCRM refuses a whole write over one field (a 400 naming it): the lead is written without
    that field, the value in its description. Where a CRM's refusals cannot be told apart so, the
    refusal stays permanent and names the field (a dead letter an operator can act on)."""
    attribute = crm.attribute(MappedField.REFERRAL_CODE)
    crm.sim.reject_attribute(attribute)

    if crm.provider.free_text_attribute is None:
        with pytest.raises(PermanentCrmError) as exc:
            crm.provider.upsert_lead(application(), uuid4())
        assert exc.value.kind is ErrorKind.PERMANENT
        assert exc.value.field == attribute
        assert exc.value.status == 400
        return

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert result.dropped_fields == (attribute,)
    lead = crm.sim.lead(result.record_id)
    assert not lead.get(attribute)
    assert "Partner referral code: PARTNER-42" in lead[crm.provider.free_text_attribute].split("\n")
    assert lead[crm.attribute(MappedField.PROGRAM)] == "Medicine", "the other fields are written"
    assert crm.sim.lead_phones(result.record_id) == ["+905321234567"]


@pytest.mark.parametrize("failure", [Failure.UNAUTHORIZED, Failure.FORBIDDEN])
def test_rejected_credentials_are_a_configuration_error(crm: Crm, failure: Failure) -> None:
    crm.sim.fail_next(failure)

    with pytest.raises(CrmConfigurationError) as exc:
        crm.provider.upsert_lead(application(), uuid4())

    assert exc.value.status in (401, 403)
    assert not any(secret in str(exc.value) for secret in crm.secrets)


@pytest.mark.parametrize(
    "failure", [Failure.SERVER_ERROR, Failure.MAINTENANCE, Failure.TIMEOUT, Failure.CONNECTION_REFUSED]
)
def test_outages_are_retryable_and_lose_nothing(crm: Crm, failure: Failure) -> None:
    crm.sim.fail_next(failure)

    with pytest.raises(RetryableCrmError) as exc:
        crm.provider.upsert_lead(application(), uuid4())
    assert not any(secret in str(exc.value) for secret in crm.secrets)

    result = crm.provider.upsert_lead(application(), uuid4())
    assert result.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 1


@pytest.mark.parametrize("failure", [Failure.RATE_LIMITED, Failure.TIME_LIMITED])
def test_rate_limits_are_retryable_with_a_hint_where_the_crm_gives_one(crm: Crm, failure: Failure) -> None:
    crm.sim.fail_next(failure)
    lead_id = "6b0244fec9dffa4c4" if crm.provider.name == "espocrm" else "1"  # an id of the CRM's form

    with pytest.raises(RetryableCrmError) as exc:
        crm.provider.log_activity(lead_id, click())

    if crm.sim.provider_name == "bitrix24":
        assert exc.value.retry_after_seconds is not None
        assert exc.value.retry_after_seconds > 0


def test_the_health_check_reports_reachability_and_missing_fields(crm: Crm) -> None:
    crm.provider.upsert_lead(application(), uuid4())
    healthy = crm.provider.test_connection()
    assert (healthy.reachable, healthy.missing_fields, healthy.error_kind) == (True, [], None)

    crm.sim.drop_attribute(crm.attribute(MappedField.UNIVERSITY))
    assert crm.provider.test_connection().missing_fields == ["university"]

    crm.sim.fail_next(Failure.CONNECTION_REFUSED)
    down = crm.provider.test_connection()
    assert (down.reachable, down.error_kind) == (False, ErrorKind.RETRYABLE)

    crm.sim.fail_next(Failure.UNAUTHORIZED)
    misconfigured = crm.provider.test_connection()
    assert (misconfigured.reachable, misconfigured.error_kind) == (True, ErrorKind.CONFIGURATION)
    assert not any(secret in (misconfigured.error or "") for secret in crm.secrets)


def test_secrets_and_contacts_stay_out_of_the_logs(crm: Crm, log_output: io.StringIO) -> None:
    """Whatever the providers log, and their errors logged the way callers log them."""
    crm.sim.drop_attribute(crm.attribute(MappedField.UNIVERSITY))
    crm.provider.upsert_lead(application(university="Boğaziçi University"), uuid4())
    for failure in (Failure.UNAUTHORIZED, Failure.TIMEOUT, Failure.SERVER_ERROR):
        crm.sim.fail_next(failure)
        with pytest.raises(CrmError) as exc:
            crm.provider.upsert_lead(application(), uuid4())
        get_logger().exception("CRM call failed", extra={"error": exc.value.to_dict()})

    logged = log_output.getvalue()
    assert logged.count("CRM call failed") == 3
    for private in (*crm.secrets, "ayse.yilmaz@example.com", "+905321234567", "Yılmaz"):
        assert private not in logged


def _lead_ids(crm: Crm) -> list[object]:
    return [lead.get("id", lead.get("ID")) for lead in crm.sim.leads()]


def test_an_activity_for_a_lead_that_does_not_exist_says_so(crm: Crm) -> None:
    with pytest.raises(LeadNotFound) as exc:
        crm.provider.log_activity("999999", click())
    assert exc.value.kind is ErrorKind.PERMANENT
