"""A person whose lead was closed (converted into a contact, or lost) comes back: a new lead, never
a note on the closed one, on every CRM (the real EspoCRM included)."""

from __future__ import annotations

from uuid import uuid4

from crm_bridge.delivery import deliver
from crm_bridge.providers import LeadAction
from tests.contract.conftest import Crm
from tests.contract.test_delivery_contract import click_operation
from tests.contract.test_provider_contract import application, click
from tests.simulators.sessions import MemorySessions

PHONE = "+905321234567"


def _text(crm: Crm, lead_id: str) -> str:
    lead = crm.sim.lead(lead_id)
    return str(lead.get("description") or lead.get("COMMENTS") or "")


def test_a_repeat_after_conversion_makes_a_new_lead_linked_to_the_contact(crm: Crm) -> None:
    closed = crm.sim.seed_closed_lead(phone=PHONE)

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert result.record_id != closed.lead_id
    assert len(crm.sim.leads()) == 2
    assert crm.sim.timeline(closed.lead_id) == [], "nothing is noted on the converted lead"
    text = _text(crm, result.record_id)
    assert f"the earlier lead {closed.lead_id} was converted (contact {closed.contact_id}" in text, text
    assert "I would like to study in Istanbul." in text
    assert crm.sim.lead_phones(result.record_id) == [PHONE]
    if crm.sim.provider_name == "bitrix24":  # the CRM's own link (EspoCRM has none that leaves the old one be)
        assert crm.sim.lead(result.record_id)["CONTACT_ID"] == closed.contact_id
        assert crm.sim.lead(result.record_id)["COMPANY_ID"] == closed.account_id
    if crm.sim.provider_name == "espocrm":
        assert crm.sim.lead(closed.lead_id).get("createdContactId") == closed.contact_id, "the conversion is kept"


def test_a_repeat_after_the_lead_was_lost_makes_a_new_lead(crm: Crm) -> None:
    closed = crm.sim.seed_closed_lead(phone=PHONE, converted=False)

    result = crm.provider.upsert_lead(application(), uuid4())

    assert result.action is LeadAction.CREATED
    assert result.record_id != closed.lead_id
    assert crm.sim.timeline(closed.lead_id) == []
    assert f"the earlier lead {closed.lead_id} was closed as lost" in _text(crm, result.record_id)


def test_a_retry_and_a_later_repeat_go_to_the_new_lead(crm: Crm) -> None:
    closed = crm.sim.seed_closed_lead(phone=PHONE)
    operation_id = uuid4()
    first = crm.provider.upsert_lead(application(), operation_id)

    retry = crm.provider.upsert_lead(application(), operation_id)
    later = crm.provider.upsert_lead(application(program="Law"), uuid4())

    assert (retry.action, retry.record_id) == (LeadAction.UNCHANGED, first.record_id)
    assert later.record_id == first.record_id, "the new lead is the one worked now"
    assert len(crm.sim.leads()) == 2
    assert crm.sim.timeline(closed.lead_id) == []
    assert any("again" in note and "Law" in note for note in crm.sim.timeline(first.record_id))


def test_a_click_for_a_converted_lead_goes_to_a_new_lead_once(crm: Crm) -> None:
    closed = crm.sim.seed_closed_lead(phone=PHONE)
    operation_id = uuid4()

    result = crm.provider.log_activity(closed.lead_id, click(lead_id=closed.lead_id), operation_id)
    retry = crm.provider.log_activity(closed.lead_id, click(lead_id=closed.lead_id), operation_id)

    assert result.action is LeadAction.CREATED
    assert result.record_id != closed.lead_id
    assert (retry.action, retry.record_id) == (LeadAction.UNCHANGED, result.record_id)
    assert len(crm.sim.leads()) == 2
    assert crm.sim.timeline(closed.lead_id) == []
    text = _text(crm, result.record_id)
    assert f"the earlier lead {closed.lead_id} was converted" in text, text
    assert "Telegram" in text


def test_the_visitor_session_follows_the_new_lead(crm: Crm) -> None:
    """The site still sends the converted lead's id: the first click makes the new lead, the
    session points at it, and the next click is an activity there, not a third lead."""
    closed = crm.sim.seed_closed_lead(phone=PHONE)
    sessions = MemorySessions()
    sessions.remember(crm.sim.provider_name, "visitor-session-0042", closed.lead_id)

    first = deliver(click_operation(lead_id=closed.lead_id), crm.provider, sessions)
    second = deliver(click_operation(lead_id=closed.lead_id, channel="whatsapp"), crm.provider, sessions)

    assert first.action is LeadAction.CREATED
    assert sessions.lead_for(crm.sim.provider_name, "visitor-session-0042") == first.record_id
    assert (second.action, second.record_id) == (LeadAction.UPDATED, first.record_id)
    assert len(crm.sim.leads()) == 2
    assert crm.sim.timeline(closed.lead_id) == []
