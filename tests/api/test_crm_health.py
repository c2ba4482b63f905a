"""GET /api/v1/crm/test: up or down for anyone, from a verdict reused for a minute; its details route
(IAM-signed in AWS): a verdict an operator can act on, with nothing secret in it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import respx

from crm_bridge.errors import SettingsError
from crm_bridge.providers.bitrix24 import SIMPLE_CRM_MODE
from infra.local.http_events import http_api_event
from tests.api.conftest import ESPOCRM_KEY, Answer, invoke
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import CRM_MODE_SIMPLE, SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm


@pytest.fixture
def health(load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm) -> ModuleType:
    espocrm.seed_lead(first_name="Existing", last_name="Lead", email="existing@example.com")
    return load_handler("crm_health_api")


@pytest.fixture
def bitrix24(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedBitrix24]:
    with SimulatedBitrix24() as sim:
        monkeypatch.setenv("CRM_PROVIDER", "bitrix24")
        monkeypatch.setenv("BITRIX24_WEBHOOK_URL", sim.webhook_url)
        yield sim


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
    ("failure", "status", "reachable", "problem"),
    [
        (Failure.CONNECTION_REFUSED, "down", False, None),
        (Failure.TIMEOUT, "down", False, None),
        (
            Failure.UNAUTHORIZED,
            "misconfigured",
            True,
            "credentials rejected: check the API key and that the API user is active",
        ),
    ],
)
def test_an_unhealthy_crm_is_503_naming_only_a_misconfiguration_and_never_its_key(
    health: ModuleType, espocrm: SimulatedEspoCrm, failure: Failure, status: str, reachable: bool, problem: str | None
) -> None:
    espocrm.fail_next(failure)

    answer = check(health)

    assert (answer.status, answer.body["status"], answer.body["reachable"]) == (503, status, reachable)
    assert answer.body["problem"] == problem, "an outage is its kind; a misconfiguration, what to change"
    text = json.dumps(answer.body)
    assert ESPOCRM_KEY not in text
    assert espocrm.base_url not in text


def test_a_bitrix24_portal_in_simple_mode_tells_the_operator_what_to_change(
    load_handler: Callable[[str], ModuleType], bitrix24: SimulatedBitrix24
) -> None:
    bitrix24.crm_mode = CRM_MODE_SIMPLE
    health = load_handler("crm_health_api")

    answer = check(health)

    assert (answer.status, answer.body["status"], answer.body["errorKind"]) == (503, "misconfigured", "configuration")
    assert answer.body["problem"] == SIMPLE_CRM_MODE
    assert bitrix24.token not in json.dumps(answer.body), "the webhook's token"
    assert check(health, PUBLIC).body == {"status": "down"}, "an anonymous caller still learns only that"


def test_a_refusal_that_echoes_the_webhook_reaches_the_operator_without_its_token(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy in front of a self-hosted portal refusing the call, its error code quoting the request
    (a Bitrix24 error code is passed on as the CRM sent it)."""
    webhook, token = "https://crm.agency.test/rest/7/", "q2xv8ms0n4k1abcd"
    monkeypatch.setenv("CRM_PROVIDER", "bitrix24")
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", f"{webhook}{token}/")
    with respx.mock(assert_all_called=False) as portal:
        portal.post(url__startswith=webhook).respond(
            403, json={"error": f"blocked by policy: POST {webhook}{token}/crm.settings.mode.get.json"}
        )
        answer = check(load_handler("crm_health_api"))

    assert (answer.status, answer.body["status"]) == (503, "misconfigured")
    assert answer.body["problem"].startswith("blocked by policy: POST")
    assert token not in json.dumps(answer.body)


def test_invalid_settings_are_503_misconfigured(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", "salesforce")
    answer = check(load_handler("crm_health_api"))
    assert (answer.status, answer.body["status"]) == (503, "misconfigured")
    assert "CRM_PROVIDER" in answer.body["problem"]


def test_an_invalid_webhook_is_named_but_never_shown(
    load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", "bitrix24")
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", "http://crm.agency.test/rest/7/q2xv8ms0n4k1abcd/")

    answer = check(load_handler("crm_health_api"))

    assert (answer.status, answer.body["status"]) == (503, "misconfigured")
    assert answer.body["problem"].startswith("invalid configuration: BITRIX24_WEBHOOK_URL: must look like https://")
    assert "q2xv8ms0n4k1abcd" not in json.dumps(answer.body)


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
