"""GET /api/v1/crm/test: up or down for anyone, from a verdict reused for a minute; its details route
(IAM-signed in AWS): a verdict an operator can act on, with nothing secret in it."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType

import pytest

from crm_bridge.errors import SettingsError
from infra.local.http_events import http_api_event
from tests.api.conftest import ESPOCRM_KEY, Answer, invoke
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm


@pytest.fixture
def health(load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm) -> ModuleType:
    espocrm.seed_lead(first_name="Existing", last_name="Lead", email="existing@example.com")
    return load_handler("crm_health_api")


PUBLIC = "/api/v1/crm/test"
DETAILS = "/api/v1/crm/test/details"


def check(health: ModuleType, path: str = DETAILS) -> Answer:
    return invoke(health, http_api_event("GET", path, route_key=f"GET {path}"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def test_an_anonymous_caller_learns_only_up(health: ModuleType) -> None:
    answer = check(health, PUBLIC)

    assert (answer.status, answer.body) == (200, {"status": "ok"})
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("failure", [Failure.CONNECTION_REFUSED, Failure.UNAUTHORIZED])
def test_an_anonymous_caller_learns_only_down(health: ModuleType, espocrm: SimulatedEspoCrm, failure: Failure) -> None:
    espocrm.fail_next(failure, times=10)

    answer = check(health, PUBLIC)

    assert (answer.status, answer.body) == (503, {"status": "down"})


def test_a_degraded_crm_is_down_for_an_anonymous_caller(health: ModuleType, espocrm: SimulatedEspoCrm) -> None:
    espocrm.drop_attribute("cReferralCode")

    assert (check(health, PUBLIC).status, check(health, PUBLIC).body) == (503, {"status": "down"})


def test_invalid_settings_are_down_for_an_anonymous_caller(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", "salesforce")
    answer = check(load_handler("crm_health_api"), PUBLIC)
    assert (answer.status, answer.body) == (503, {"status": "down"})


def test_a_storm_of_a_thousand_checks_in_a_minute_asks_the_crm_at_most_twice(
    health: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    clock = FakeClock()
    health.health_cache.clock = clock
    before = len(espocrm.router.calls)
    check(health, PUBLIC)
    one_check = len(espocrm.router.calls) - before
    assert one_check >= 1
    clock.now += 60  # a fresh minute: the next check asks the CRM

    before = len(espocrm.router.calls)
    start = clock.now
    for i in range(1000):  # evenly over a whole minute, both ends included
        clock.now = start + i * 60 / 999
        assert check(health, PUBLIC).status == 200
    assert len(espocrm.router.calls) - before == 2 * one_check


def test_a_crm_that_is_down_is_not_asked_again_within_the_cache_time(
    health: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    clock = FakeClock()
    health.health_cache.clock = clock
    espocrm.fail_next(Failure.CONNECTION_REFUSED, times=1000)
    before = len(espocrm.router.calls)

    assert check(health, PUBLIC).status == 503
    asked = len(espocrm.router.calls) - before
    clock.now += 59
    assert all(check(health, PUBLIC).status == 503 for _ in range(100))

    assert len(espocrm.router.calls) - before == asked


def test_the_cache_time_is_a_validated_setting(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "15")
    assert load_handler("crm_health_api").health_cache.ttl_seconds == 15
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")
    with pytest.raises(SettingsError, match="HEALTH_CACHE_SECONDS"):
        load_handler("crm_health_api")


def test_the_details_ask_the_crm_afresh_and_refresh_the_public_verdict(
    health: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    health.health_cache.clock = FakeClock()
    espocrm.fail_next(Failure.CONNECTION_REFUSED)
    assert check(health, PUBLIC).status == 503

    assert check(health, DETAILS).body["status"] == "ok"  # an operator after the fix
    assert check(health, PUBLIC).body == {"status": "ok"}
