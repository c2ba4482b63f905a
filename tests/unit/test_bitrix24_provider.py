"""Bitrix24 specifics the contract suite does not show: the exact calls, ids and limit hints."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import httpx
import pytest

from crm_bridge.errors import CrmConfigurationError, ErrorKind, LeadNotFound, RetryableCrmError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.providers import build_provider
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.settings import load_settings
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import CRM_MODE_SIMPLE, SimulatedBitrix24

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

    assert [method for method, _ in sim.method_calls] == ["batch", "crm.lead.add"]
    # E.164, and the national forms a salesperson types (findbycomm finds them only by those).
    phone_forms = ["+905321234567", "5321234567", "05321234567"]
    searches = [params for method, params in sim.batched_calls if method == "crm.duplicate.findbycomm"]
    assert searches[0] == {"entity_type": "LEAD", "type": "PHONE", "values": phone_forms}
    assert searches[1] == {"entity_type": "LEAD", "type": "EMAIL", "values": ["ayse@example.com"]}
    fields = sim.method_calls[1][1]["fields"]
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
    sim.reset_counts()

    provider.upsert_lead(APPLICATION.model_copy(update={"program": "Law"}), uuid4())

    assert [method for method, _ in sim.method_calls] == ["batch", "crm.lead.update", "crm.timeline.comment.add"]
    assert [method for method, _ in sim.batched_calls] == [
        "crm.duplicate.findbycomm",
        "crm.lead.get",
        "crm.timeline.comment.list",  # is this operation on the lead already? (a retry whose answer was lost)
        "crm.duplicate.findbycomm",
        "crm.lead.get",  # the e-mail's first match: not needed when the phone found one
        "crm.timeline.comment.list",
    ]
    update = sim.method_calls[1][1]
    assert update["id"] == lead_id
    assert "PHONE" not in update["fields"]
    assert "EMAIL" not in update["fields"]
    assert update["fields"]["UF_CRM_PROGRAM"] == "Law"
    assert "ORIGIN_ID" not in update["fields"], "the lead keeps the operation that created it"
    comment = sim.method_calls[2][1]["fields"]
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


# --- phones as findbycomm matches them -------------------------------------------------------------


def application_with_phone(phone: str) -> Application:
    return Application.model_validate({"name": "Ayşe Yılmaz", "phone": phone})


def test_an_applicant_typing_their_number_in_three_forms_has_one_lead(sim: SimulatedBitrix24) -> None:
    provider = provider_for(sim)

    for phone in ("0532 123 45 67", "+90 532 123 45 67", "905321234567"):
        provider.upsert_lead(application_with_phone(phone), uuid4())

    assert len(sim.leads()) == 1


def test_a_lead_a_salesperson_typed_in_national_form_is_found_and_its_phone_not_added_again(
    sim: SimulatedBitrix24,
) -> None:
    lead_id = sim.seed_lead(first_name="Ayşe", phone="0532 123 45 67")

    for phone in ("0532 123 45 67", "+90 532 123 45 67", "905321234567"):
        result = provider_for(sim).upsert_lead(application_with_phone(phone), uuid4())
        assert result.record_id == lead_id

    assert len(sim.leads()) == 1
    assert sim.lead_phones(lead_id) == ["0532 123 45 67"]
    searched = [params["values"] for method, params in sim.batched_calls if method == "crm.duplicate.findbycomm"]
    assert searched[0] == ["+905321234567", "5321234567", "05321234567"]


def test_a_russian_number_a_salesperson_typed_with_the_trunk_8_is_found_with_region_ru(
    sim: SimulatedBitrix24, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_bridge.settings import default_phone_region

    monkeypatch.setenv("DEFAULT_PHONE_REGION", "RU")
    default_phone_region.cache_clear()
    lead_id = sim.seed_lead(first_name="Иван", phone="8 (916) 123-45-67")
    settings = load_settings(
        {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": sim.webhook_url, "DEFAULT_PHONE_REGION": "RU"}
    )
    provider = build_provider(settings, load_field_mapping())

    for phone in ("8 (916) 123-45-67", "+7 916 123 45 67", "9161234567"):
        assert provider.upsert_lead(application_with_phone(phone), uuid4()).record_id == lead_id

    assert len(sim.leads()) == 1
    assert sim.lead_phones(lead_id) == ["8 (916) 123-45-67"]


def test_a_national_form_of_another_countrys_number_is_never_searched(sim: SimulatedBitrix24) -> None:
    """+1 532 123 4567 has the national number 5321234567 too: it must not find a Turkish lead."""
    turkish = sim.seed_lead(first_name="Ayşe", phone="0532 123 45 67")

    result = provider_for(sim).upsert_lead(application_with_phone("+1 202 555 0143"), uuid4())

    assert result.record_id != turkish
    searched = [params["values"] for method, params in sim.batched_calls if method == "crm.duplicate.findbycomm"]
    assert searched == [["+12025550143"]]


# --- ids from the website ----------------------------------------------------------------------------


@pytest.mark.parametrize("lead_id", ["6b0244fec9dffa4c4", "101x9f", "0", "0101", "-5", "1e3", "9" * 19])
def test_an_id_that_cannot_be_a_bitrix24_lead_is_not_found_without_a_request(
    sim: SimulatedBitrix24, provider: Bitrix24Provider, lead_id: str
) -> None:
    activity = MessengerActivity.model_validate({"channel": "telegram", "session_id": "visitor-session-0042"})

    with pytest.raises(LeadNotFound):
        provider.log_activity(lead_id, activity, OPERATION_ID)

    assert sim.method_calls == []


# --- CRM mode ----------------------------------------------------------------------------------------


def test_the_health_check_asks_for_the_crm_mode(sim: SimulatedBitrix24, provider: Bitrix24Provider) -> None:
    report = provider.test_connection()

    assert report.error_kind is None
    assert "crm.settings.mode.get" in [method for method, _ in sim.method_calls]


def test_simple_crm_mode_is_a_misconfiguration_that_says_what_to_change(
    sim: SimulatedBitrix24, provider: Bitrix24Provider
) -> None:
    sim.crm_mode = CRM_MODE_SIMPLE

    report = provider.test_connection()

    assert report.reachable
    assert report.error_kind is ErrorKind.CONFIGURATION
    assert report.error is not None
    assert "simple" in report.error
    assert "classic" in report.error
    assert "CRM settings" in report.error
