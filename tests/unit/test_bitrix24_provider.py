"""Bitrix24 specifics the contract suite does not show: the exact calls, ids and limit hints."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import httpx
import pytest

from crm_bridge.errors import CrmConfigurationError, RetryableCrmError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.settings import load_settings
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import SimulatedBitrix24

OPERATION_ID = UUID("6f1c1f3e-0000-4000-8000-000000000001")


@pytest.fixture
def sim() -> Iterator[SimulatedBitrix24]:
    with SimulatedBitrix24() as simulator:
        yield simulator


def provider_for(sim: SimulatedBitrix24, wall_clock: float = 1_800_000_000.0) -> Bitrix24Provider:
    settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": sim.webhook_url})
    assert settings.bitrix24 is not None
    mapping = load_field_mapping().bitrix24.model_copy(
        update={"enum_values": {"user_type": {"student": "45", "parent": "47", "other": "49"}}}
    )
    return Bitrix24Provider(settings.bitrix24, mapping, timeout_seconds=5, wall_clock=lambda: wall_clock)


@pytest.fixture
def provider(sim: SimulatedBitrix24) -> Bitrix24Provider:
    return provider_for(sim)


APPLICATION = Application.model_validate(
    {
        "name": "Ayşe Yılmaz",
        "phone": "+90 532 123 45 67",
        "email": "ayse@example.com",
        "user_type": "student",
        "consent": True,
        "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram", "utm_medium": "bio"},
    }
)


def test_a_new_lead_is_searched_by_phone_and_email_then_added_with_its_origin(
    sim: SimulatedBitrix24, provider: Bitrix24Provider
) -> None:
    provider.upsert_lead(APPLICATION, OPERATION_ID)

    assert [method for method, _ in sim.method_calls] == [
        "crm.duplicate.findbycomm",
        "crm.duplicate.findbycomm",
        "crm.lead.add",
    ]
    assert sim.method_calls[0][1] == {"entity_type": "LEAD", "type": "PHONE", "values": ["+905321234567"]}
    assert sim.method_calls[1][1] == {"entity_type": "LEAD", "type": "EMAIL", "values": ["ayse@example.com"]}
    fields = sim.method_calls[2][1]["fields"]
    assert fields["PHONE"] == [{"VALUE": "+905321234567", "VALUE_TYPE": "MOBILE"}]
    assert fields["EMAIL"] == [{"VALUE": "ayse@example.com", "VALUE_TYPE": "WORK"}]
    assert (fields["ORIGINATOR_ID"], fields["ORIGIN_ID"]) == ("crm-bridge", str(OPERATION_ID))
    assert (fields["UTM_SOURCE"], fields["UTM_MEDIUM"]) == ("instagram", "bio"), "native UTM fields"
    assert fields["UF_CRM_USER_TYPE"] == "45", "list fields take the portal's item id"
    assert fields["UF_CRM_CONSENT"] == "Y", "booleans are Y/N"
    assert fields["SOURCE_ID"] == "WEB"
    assert "PARTNER-42" in fields["COMMENTS"]


def test_a_repeat_updates_without_resending_known_contacts_and_comments(
    sim: SimulatedBitrix24, provider: Bitrix24Provider
) -> None:
    lead_id = provider.upsert_lead(APPLICATION, OPERATION_ID).record_id
    sim.method_calls.clear()

    provider.upsert_lead(APPLICATION.model_copy(update={"program": "Law"}), uuid4())

    assert [method for method, _ in sim.method_calls] == [
        "crm.duplicate.findbycomm",
        "crm.lead.get",
        "crm.timeline.comment.list",  # is this operation on the lead already? (a retry whose answer was lost)
        "crm.lead.update",
        "crm.timeline.comment.add",
    ]
    update = sim.method_calls[3][1]
    assert update["id"] == lead_id
    assert "PHONE" not in update["fields"]
    assert "EMAIL" not in update["fields"]
    assert update["fields"]["UF_CRM_PROGRAM"] == "Law"
    assert "ORIGIN_ID" not in update["fields"], "the lead keeps the operation that created it"
    comment = sim.method_calls[4][1]["fields"]
    assert (comment["ENTITY_TYPE"], comment["ENTITY_ID"]) == ("lead", int(lead_id))


def test_a_phone_typed_by_hand_in_another_format_is_not_added_again(
    sim: SimulatedBitrix24, provider: Bitrix24Provider
) -> None:
    lead_id = sim.seed_lead(first_name="Ayşe", phone="+90 (532) 123-45-67", email="ayse@example.com")

    provider.upsert_lead(APPLICATION, OPERATION_ID)

    assert sim.lead_phones(lead_id) == ["+90 (532) 123-45-67"]


def test_the_oldest_of_several_matches_is_updated(sim: SimulatedBitrix24, provider: Bitrix24Provider) -> None:
    first = sim.seed_lead(first_name="A", phone="+905321234567")
    sim.seed_lead(first_name="B", phone="+905321234567")

    assert provider.upsert_lead(APPLICATION, OPERATION_ID).record_id == first


def test_a_session_filter_on_a_missing_field_never_picks_a_random_lead(sim: SimulatedBitrix24) -> None:
    """Bitrix ignores a filter on a field the portal lacks and returns every lead."""
    sim.seed_lead(first_name="Somebody", phone="+905551112233")
    sim.drop_attribute("UF_CRM_VISITOR_SESSION_ID")
    activity = MessengerActivity.model_validate({"channel": "telegram", "session_id": "visitor-0001"})

    result = provider_for(sim).create_minimal_lead_from_activity(activity, OPERATION_ID)

    assert result.action == "created"
    assert len(sim.leads()) == 2


def test_time_limit_waits_until_the_reset_the_portal_announces(sim: SimulatedBitrix24) -> None:
    provider = provider_for(sim, wall_clock=1_800_000_000.0)
    body = {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit.",
        "time": {"operating_reset_at": 1_800_000_042},
    }
    sim.router.routes.clear()
    sim.router.post(url__startswith=sim.webhook_url).mock(return_value=httpx.Response(429, json=body))

    with pytest.raises(RetryableCrmError) as exc:
        provider.log_activity("101", _click())

    assert exc.value.retry_after_seconds == 42
    assert exc.value.code == "OPERATION_TIME_LIMIT"


def test_query_limit_retries_after_a_second(sim: SimulatedBitrix24, provider: Bitrix24Provider) -> None:
    sim.fail_next(Failure.RATE_LIMITED)
    with pytest.raises(RetryableCrmError) as exc:
        provider.log_activity("101", _click())
    assert (exc.value.retry_after_seconds, exc.value.status) == (1.0, 503)


def test_a_manual_overload_block_is_for_an_operator(sim: SimulatedBitrix24, provider: Bitrix24Provider) -> None:
    sim.router.routes.clear()
    sim.router.post(url__startswith=sim.webhook_url).mock(
        return_value=httpx.Response(503, json={"error": "OVERLOAD_LIMIT", "error_description": "blocked"})
    )
    with pytest.raises(CrmConfigurationError):
        provider.log_activity("101", _click())


def _click() -> MessengerActivity:
    return MessengerActivity.model_validate({"channel": "whatsapp", "session_id": "visitor-0001"})
