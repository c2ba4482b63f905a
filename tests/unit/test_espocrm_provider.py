"""EspoCRM specifics the contract suite does not show: HMAC, the 409 paths, dropped attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import pytest

from crm_bridge.errors import CrmConfigurationError, RetryableCrmError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application
from crm_bridge.providers import LeadAction
from crm_bridge.providers.budget import time_budget
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.providers.http import AMBIGUOUS_WRITE_SETTLE_SECONDS
from crm_bridge.settings import load_settings
from tests.simulators.espocrm import SimulatedEspoCrm

API_KEY = "espo-provider-test-key-77"
HMAC_SECRET = "espo-hmac-secret-0123456789"
OPERATION_ID = UUID("0b5d1c6e-0000-4000-8000-00000000e5b0")

APPLICATION = Application.model_validate(
    {"first_name": "Jane", "last_name": "Doe", "phone": "+1 202 555 2726", "email": "jane.doe@example.com"}
)


def provider_for(sim: SimulatedEspoCrm, **env: str) -> EspoCrmProvider:
    settings = load_settings(
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": sim.base_url, "ESPOCRM_API_KEY": API_KEY, **env}
    )
    assert settings.espocrm is not None
    return EspoCrmProvider(settings.espocrm, load_field_mapping().espocrm, timeout_seconds=5)


@pytest.fixture
def sim() -> Iterator[SimulatedEspoCrm]:
    with SimulatedEspoCrm(api_key=API_KEY) as simulator:
        yield simulator


def test_leads_are_searched_by_e164_phone_or_email_in_one_search_params_query(sim: SimulatedEspoCrm) -> None:
    provider_for(sim).upsert_lead(APPLICATION, OPERATION_ID)

    search = sim.router["lead.search"].calls[0].request
    params = json.loads(parse_qs(urlsplit(str(search.url)).query)["searchParams"][0])
    assert params["where"] == [
        {
            "type": "or",
            "value": [
                {"type": "equals", "attribute": "phoneNumber", "value": "+12025552726"},
                {"type": "equals", "attribute": "emailAddress", "value": "jane.doe@example.com"},
            ],
        }
    ]
    assert params["maxSize"] <= 200


def test_hmac_authentication_signs_each_request(sim: SimulatedEspoCrm) -> None:
    with SimulatedEspoCrm(base_url="https://hmac.example.test", api_key=API_KEY, hmac_secret=HMAC_SECRET) as hmac_sim:
        provider = provider_for(hmac_sim, ESPOCRM_HMAC_SECRET=HMAC_SECRET)
        assert provider.upsert_lead(APPLICATION, OPERATION_ID).action is LeadAction.CREATED
        request = hmac_sim.router["lead.create"].calls[0].request
        assert "X-Api-Key" not in request.headers
        assert "X-Hmac-Authorization" in request.headers

        wrong = provider_for(hmac_sim, ESPOCRM_HMAC_SECRET="not-the-secret-000")
        with pytest.raises(CrmConfigurationError):
            wrong.upsert_lead(APPLICATION, OPERATION_ID)


def test_a_409_that_shares_our_email_is_the_same_person(sim: SimulatedEspoCrm, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lead appeared between our search and our create (another request, a retried timeout)."""
    provider = provider_for(sim)
    lead_id = sim.seed_lead(first_name="J.", last_name="Doe-Smith", email="jane.doe@example.com")
    monkeypatch.setattr(provider, "_find_lead", lambda **_: None)

    result = provider.upsert_lead(APPLICATION, OPERATION_ID)

    assert (result.record_id, result.action) == (lead_id, LeadAction.UPDATED)
    assert len(sim.leads()) == 1
    assert sim.lead_phones(lead_id) == [], "a repeat never adds contacts: its phone is in its note"
    assert "Phone: +12025552726" in sim.timeline(lead_id)[0].split("\n")
    assert sim.router["lead.create"].call_count == 1


def test_a_409_on_the_name_alone_creates_the_namesake_skipping_the_check(sim: SimulatedEspoCrm) -> None:
    sim.seed_lead(first_name="Jane", last_name="Doe", email="another.jane@example.com")

    result = provider_for(sim).upsert_lead(APPLICATION, OPERATION_ID)

    assert result.action is LeadAction.CREATED
    first, second = sim.router["lead.create"].calls
    assert first.response.status_code == 409
    assert second.request.headers["X-Skip-Duplicate-Check"] == "true"
    assert len(sim.leads()) == 2


def test_attributes_the_crm_silently_drops_are_reported(sim: SimulatedEspoCrm) -> None:
    sim.drop_attribute("cReferralCode")
    application = Application.model_validate(
        {**APPLICATION.model_dump(), "attribution": {"referral_code": "PARTNER-42"}}
    )

    result = provider_for(sim).upsert_lead(application, OPERATION_ID)

    assert result.action is LeadAction.CREATED
    assert result.ignored_fields == ("cReferralCode",)
    assert "PARTNER-42" in sim.lead(result.record_id)["description"], "still readable on the lead"


def test_an_empty_crm_cannot_tell_which_fields_it_lacks(sim: SimulatedEspoCrm) -> None:
    report = provider_for(sim).test_connection()
    assert (report.reachable, report.missing_fields) == (True, None)


def test_no_request_starts_once_the_time_budget_is_spent(sim: SimulatedEspoCrm) -> None:
    ticks = iter([0.0, 0.5, 3.5])  # budget start, first request, second request
    with time_budget(3.0, clock=lambda: next(ticks)), pytest.raises(RetryableCrmError, match="time budget"):
        provider_for(sim).upsert_lead(APPLICATION, OPERATION_ID)
    assert sim.router["lead.search"].call_count == 1
    assert sim.router["lead.create"].call_count == 0


def test_requests_inside_a_budget_get_no_more_than_what_is_left(sim: SimulatedEspoCrm) -> None:
    with time_budget(1.25, clock=lambda: 0.0):
        provider_for(sim).upsert_lead(APPLICATION, OPERATION_ID)
    timeout = sim.router["lead.search"].calls[0].request.extensions["timeout"]
    assert timeout["read"] == 1.25
    assert timeout["connect"] == 1.25


@pytest.mark.parametrize(
    ("route", "failure", "settle"),
    [
        ("lead.create", httpx.ReadTimeout("no answer"), AMBIGUOUS_WRITE_SETTLE_SECONDS),
        ("lead.create", httpx.RemoteProtocolError("server disconnected"), AMBIGUOUS_WRITE_SETTLE_SECONDS),
        ("lead.create", httpx.ConnectError("refused"), None),
        ("lead.search", httpx.ReadTimeout("no answer"), None),
    ],
)
def test_only_a_write_that_may_have_reached_the_crm_waits_before_its_retry(
    sim: SimulatedEspoCrm, route: str, failure: httpx.HTTPError, settle: float | None
) -> None:
    """A read, or a write that never left, can be retried at once; a write that was sent and got no
    answer may still run, so its retry waits until it could have landed and then searches again."""
    sim.router[route].side_effect = failure

    with pytest.raises(RetryableCrmError) as exc:
        provider_for(sim).upsert_lead(APPLICATION, OPERATION_ID)

    assert exc.value.retry_after_seconds == settle
