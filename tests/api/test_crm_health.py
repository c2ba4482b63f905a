"""GET /api/v1/crm/test: a verdict an operator and a monitor can act on, with nothing secret in it."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

import pytest

from infra.local.http_events import http_api_event
from tests.api.conftest import ESPOCRM_KEY, Answer, invoke
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm


@pytest.fixture
def health(load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm) -> ModuleType:
    espocrm.seed_lead(first_name="Existing", last_name="Lead", email="existing@example.com")
    return load_handler("crm_health_api")


def check(health: ModuleType) -> Answer:
    return invoke(health, http_api_event("GET", "/api/v1/crm/test", route_key="GET /api/v1/crm/test"))


def test_a_healthy_crm_is_200_ok(health: ModuleType) -> None:
    answer = check(health)

    assert answer.status == 200
    assert answer.body["status"] == "ok"
    assert answer.body["provider"] == "espocrm"
    assert answer.body["reachable"] is True
    assert answer.body["missingFields"] == []
    assert answer.body["roundTripMs"] >= 0


def test_a_crm_lacking_mapped_fields_is_degraded(health: ModuleType, espocrm: SimulatedEspoCrm) -> None:
    espocrm.drop_attribute("cReferralCode")

    answer = check(health)

    assert (answer.status, answer.body["status"]) == (503, "degraded")
    assert answer.body["missingFields"] == ["referral_code"]


@pytest.mark.parametrize(
    ("failure", "status", "reachable"),
    [
        (Failure.CONNECTION_REFUSED, "down", False),
        (Failure.TIMEOUT, "down", False),
        (Failure.UNAUTHORIZED, "misconfigured", True),
    ],
)
def test_an_unhealthy_crm_is_503_without_its_error_text(
    health: ModuleType, espocrm: SimulatedEspoCrm, failure: Failure, status: str, reachable: bool
) -> None:
    espocrm.fail_next(failure)

    answer = check(health)

    assert (answer.status, answer.body["status"], answer.body["reachable"]) == (503, status, reachable)
    text = json.dumps(answer.body)
    assert ESPOCRM_KEY not in text
    assert espocrm.base_url not in text
    assert "credentials" not in text, "no raw error text, only its kind"


def test_invalid_settings_are_503_misconfigured(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", "salesforce")
    answer = check(load_handler("crm_health_api"))
    assert (answer.status, answer.body["status"]) == (503, "misconfigured")
