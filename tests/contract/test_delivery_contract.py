"""The one delivery path, over every provider: what an operation becomes in the CRM."""

from __future__ import annotations

from uuid import uuid4

import pytest

from crm_bridge.delivery import deliver
from crm_bridge.delivery.execute import CLICKS_PER_SESSION_PER_HOUR
from crm_bridge.errors import RetryableCrmError
from crm_bridge.field_mapping import LeadSourceKind
from crm_bridge.models import Application, MessengerActivity, MessengerClickOperation, Origin, UpsertLeadOperation
from crm_bridge.providers import LeadAction
from tests.contract.conftest import Crm
from tests.simulators.sessions import MemorySessions


def click_operation(**activity: object) -> MessengerClickOperation:
    payload = MessengerActivity.model_validate(
        {"channel": "telegram", "session_id": "visitor-session-0042", **activity}
    )
    return MessengerClickOperation(origin=Origin.MESSENGER_API, payload=payload)


def test_an_application_operation_upserts_the_lead(crm: Crm) -> None:
    application = Application.model_validate({"name": "Ali Veli", "phone": "+90 532 765 43 21"})
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)

    assert deliver(operation, crm.provider).action is LeadAction.CREATED
    assert deliver(operation, crm.provider).action is LeadAction.UNCHANGED
    assert len(crm.sim.leads()) == 1


def test_anonymous_clicks_of_one_session_become_one_lead_and_its_activities(crm: Crm) -> None:
    sessions = MemorySessions()

    first = deliver(click_operation(), crm.provider, sessions)
    second = deliver(click_operation(channel="whatsapp"), crm.provider, sessions)

    assert first.action is LeadAction.CREATED
    assert second.record_id == first.record_id
    assert sessions.lead_for(crm.provider.name, "visitor-session-0042") == first.record_id
    assert len(crm.sim.leads()) == 1
    assert any("WhatsApp" in note for note in crm.sim.timeline(first.record_id))


def test_a_second_first_click_waits_for_the_lead_the_first_is_creating(crm: Crm) -> None:
    """Two first clicks of one visitor at once (two workers, or the first create still in flight
    after a timeout): the second is retried later and lands on the first one's lead."""
    sessions = MemorySessions()
    first, second = click_operation(), click_operation(channel="whatsapp")
    assert sessions.claim(crm.provider.name, "visitor-session-0042", str(first.operation_id))

    with pytest.raises(RetryableCrmError) as waiting:
        deliver(second, crm.provider, sessions)
    assert waiting.value.code == "session_claimed"
    assert crm.sim.leads() == []

    created = deliver(first, crm.provider, sessions)
    retried = deliver(second, crm.provider, sessions)

    assert retried.record_id == created.record_id
    assert len(crm.sim.leads()) == 1
    assert any("WhatsApp" in note for note in crm.sim.timeline(created.record_id))


def test_a_click_for_a_known_lead_is_an_activity_on_it(crm: Crm) -> None:
    lead_id = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id

    result = deliver(click_operation(lead_id=lead_id), crm.provider, MemorySessions())

    assert result.record_id == lead_id
    assert len(crm.sim.leads()) == 1


def test_a_click_naming_a_lead_that_is_gone_falls_back_to_the_visitor_session(crm: Crm) -> None:
    result = deliver(click_operation(lead_id="999999"), crm.provider, MemorySessions())

    assert result.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 1


def test_an_application_completes_the_anonymous_lead_of_its_visitors_clicks(crm: Crm) -> None:
    """Click first, apply later: one lead, with the click and the application, named and reachable;
    later clicks land on it too."""
    sessions = MemorySessions()
    anonymous = deliver(click_operation(), crm.provider, sessions).record_id
    application = Application.model_validate(
        {
            "name": "Ali Veli",
            "email": "ali@example.com",
            "phone": "0532 765 43 21",
            "session_id": "visitor-session-0042",
        }
    )
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)

    applicant = deliver(operation, crm.provider, sessions)
    retried = deliver(operation, crm.provider, sessions)
    later = deliver(click_operation(channel="instagram"), crm.provider, sessions)

    assert applicant.record_id == anonymous == later.record_id == retried.record_id
    assert (applicant.action, retried.action) == (LeadAction.UPDATED, LeadAction.UNCHANGED)
    (lead,) = crm.sim.leads()
    assert crm.sim.lead_emails(anonymous) == ["ali@example.com"]
    assert crm.sim.lead_phones(anonymous) in (["+905327654321"], ["05327654321"])
    last_name = {"espocrm": "lastName", "bitrix24": "LAST_NAME", "sandbox": "last_name"}[crm.provider.name]
    assert lead[last_name] == "Veli", "the application's name replaces the visitor placeholder"
    source = {"espocrm": "source", "bitrix24": "SOURCE_ID", "sandbox": "source"}[crm.provider.name]
    assert lead[source] == crm.provider.mapping.lead_source[LeadSourceKind.APPLICATION]
    timeline = "\n".join([*(str(value) for value in lead.values()), *crm.sim.timeline(anonymous)])
    assert "Telegram" in timeline
    assert "Instagram" in timeline
    assert sum("Application form on the website." in note for note in crm.sim.timeline(anonymous)) == 1


def test_an_application_matching_someone_else_leaves_the_anonymous_lead_alone(crm: Crm) -> None:
    """The session's anonymous lead is completed only when nobody has the phone or e-mail yet: a known
    applicant's lead is updated as before, and the session follows it."""
    sessions = MemorySessions()
    known = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    anonymous = deliver(click_operation(), crm.provider, sessions).record_id
    application = Application.model_validate(
        {"name": "Ali Veli", "email": "ali@example.com", "session_id": "visitor-session-0042"}
    )

    applicant = deliver(
        UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application), crm.provider, sessions
    )
    later = deliver(click_operation(channel="instagram"), crm.provider, sessions)

    assert applicant.record_id == known == later.record_id != anonymous
    assert crm.sim.lead_emails(anonymous) == []
    assert any("Instagram" in note for note in crm.sim.timeline(known))


@pytest.mark.parametrize(
    "lead_id",
    [
        "101a44fec9dffa4c4",  # an EspoCRM id the site kept after a switch (Bitrix24 reads it as 101)
        "101x9f",  # garbage PHP reads as 101
        "00101",
        "0",
        "-1",
        "6B0244FEC9DFFA4C4",
        "x" * 64,
    ],
)
def test_a_click_naming_a_foreign_or_malformed_lead_id_falls_back_to_the_visitor_session(
    crm: Crm, lead_id: str
) -> None:
    """The site's lead id is untrusted: one that cannot be this CRM's is a lead that is not here, never
    a dead letter, a retried click, or a note on whichever lead the CRM reads it as."""
    other = crm.provider.upsert_lead(
        Application.model_validate({"name": "Ali Veli", "email": "ali@example.com"}), uuid4()
    ).record_id
    notes_before = list(crm.sim.timeline(other))

    result = deliver(click_operation(lead_id=lead_id), crm.provider, MemorySessions())

    assert result.action is LeadAction.CREATED
    assert result.record_id != other
    assert len(crm.sim.leads()) == 2
    assert crm.sim.timeline(other) == notes_before


def test_a_click_whose_session_the_redirect_started_is_held_until_the_session_returns(crm: Crm) -> None:
    """Nothing shows a person behind a /go request without a session (a previewer that passed the
    User-Agent check, a crawler, a script): no lead. When the session comes back, the held click
    is written onto its lead, once."""
    sessions = MemorySessions()
    first = deliver(click_operation(session_started=True, attribution={"referral_code": "P-7"}), crm.provider, sessions)

    assert first.action is LeadAction.HELD
    assert crm.sim.leads() == []

    second = click_operation(channel="whatsapp")
    returned = deliver(second, crm.provider, sessions)
    again = deliver(second, crm.provider, sessions)  # a retry: the held click is not written twice

    assert returned.action is LeadAction.CREATED
    assert again.record_id == returned.record_id
    assert len(crm.sim.leads()) == 1
    timeline = crm.sim.timeline(returned.record_id)
    assert sum("Telegram" in note and "P-7" in note for note in timeline) == 1
    assert sessions.held_clicks(crm.provider.name, "visitor-session-0042") == []


def test_an_application_brings_its_sessions_held_clicks_onto_its_lead(crm: Crm) -> None:
    sessions = MemorySessions()
    deliver(click_operation(session_started=True), crm.provider, sessions)
    application = Application.model_validate(
        {"name": "Ali Veli", "email": "ali@example.com", "session_id": "visitor-session-0042"}
    )

    applicant = deliver(
        UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application), crm.provider, sessions
    )

    assert applicant.action is LeadAction.CREATED
    assert len(crm.sim.leads()) == 1
    assert any("Telegram" in note for note in crm.sim.timeline(applicant.record_id))


def test_clicks_over_a_sessions_hourly_cap_are_folded(crm: Crm) -> None:
    sessions = MemorySessions()
    results = [deliver(click_operation(), crm.provider, sessions) for _ in range(CLICKS_PER_SESSION_PER_HOUR + 2)]

    assert [result.action for result in results].count(LeadAction.FOLDED) == 2
    assert len(crm.sim.leads()) == 1
    assert len({result.record_id for result in results if result.action is not LeadAction.FOLDED}) == 1
