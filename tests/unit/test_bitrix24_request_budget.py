"""Issue #13: Bitrix24's request budget (about 2 requests/s per portal, a burst of 50).

Counted against the simulator's leaky bucket, whose clock the tests move instead of sleeping: the
requests each kind of operation costs, the batch and the marker filter the provider relies on, and
the pacing that keeps the worker's containers under the limit together."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest
import yaml

from crm_bridge.errors import SettingsError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.providers.budget import time_budget
from crm_bridge.providers.http import BudgetExhausted
from crm_bridge.providers.lead_draft import operation_marker
from crm_bridge.providers.pace import RequestPacer
from crm_bridge.settings import load_settings
from tests.simulators.bitrix24 import BURST, SimulatedBitrix24, php_parse_str

APPLICATION = Application.model_validate(
    {"name": "Ayşe Yılmaz", "phone": "+90 532 123 45 67", "email": "ayse@example.com", "program": "Medicine"}
)
CLICK = MessengerActivity.model_validate({"channel": "telegram", "session_id": "visitor-0001"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[SimulatedBitrix24]:
    with SimulatedBitrix24(clock=clock) as simulator:
        yield simulator


def provider_for(sim: SimulatedBitrix24, environ: dict[str, str] | None = None) -> Bitrix24Provider:
    settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": sim.webhook_url} | (environ or {}))
    assert settings.bitrix24 is not None
    return Bitrix24Provider(settings.bitrix24, load_field_mapping().bitrix24, timeout_seconds=5)


def call(sim: SimulatedBitrix24, method: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{sim.webhook_url}{method}.json", json=body)


# --- requests per operation ------------------------------------------------------------------------


def test_a_new_application_costs_two_requests(sim: SimulatedBitrix24) -> None:
    provider_for(sim).upsert_lead(APPLICATION, uuid4())
    assert sim.requests == 2  # was 3: findbycomm by phone, by e-mail, add


def test_a_repeat_application_costs_at_most_three_requests(sim: SimulatedBitrix24) -> None:
    provider = provider_for(sim)
    provider.upsert_lead(APPLICATION, uuid4())
    sim.reset_counts()

    provider.upsert_lead(APPLICATION.model_copy(update={"program": "Law", "university": "METU"}), uuid4())

    assert sim.requests == 3  # was 5: findbycomm, get, comment.list, update, comment.add
    assert [method for method, _ in sim.method_calls] == ["batch", "crm.lead.update", "crm.timeline.comment.add"]


def test_a_repeat_found_by_e_mail_only_costs_two_requests(sim: SimulatedBitrix24) -> None:
    provider = provider_for(sim)
    provider.upsert_lead(APPLICATION, uuid4())
    sim.reset_counts()

    provider.upsert_lead(APPLICATION.model_copy(update={"phone": "+905339998877", "program": "Law"}), uuid4())

    # was 6: the phone's search found nothing, the e-mail's did; its new phone goes into the note only
    assert sim.requests == 2


def test_a_click_on_a_known_lead_costs_two_requests(sim: SimulatedBitrix24) -> None:
    provider = provider_for(sim)
    lead_id = provider.upsert_lead(APPLICATION, uuid4()).record_id
    sim.reset_counts()

    provider.log_activity(lead_id, CLICK, uuid4())

    assert sim.requests == 2  # was 3: get, comment.list, comment.add
    assert [method for method, _ in sim.method_calls] == ["batch", "crm.timeline.comment.add"]


def test_a_retried_click_is_found_on_a_long_timeline_in_one_request(sim: SimulatedBitrix24, clock: Clock) -> None:
    """The marker is filtered on the portal: an earlier note beyond the newest 50 is still found."""
    provider = provider_for(sim)
    lead_id = provider.upsert_lead(APPLICATION, uuid4()).record_id
    operation_id = uuid4()
    provider.log_activity(lead_id, CLICK, operation_id)
    for _ in range(60):
        provider.log_activity(lead_id, CLICK, uuid4())
        clock.now += 1.0  # a click a second: within the portal's 2 requests/s
    notes = len(sim.timeline(lead_id))
    sim.reset_counts()

    result = provider.log_activity(lead_id, CLICK, operation_id)

    assert result.action == "unchanged"
    assert len(sim.timeline(lead_id)) == notes
    assert sim.requests == 1


# --- the simulator: batch, %COMMENT, the leaky bucket ----------------------------------------------


def test_batch_answers_results_and_errors_by_key_and_references_earlier_answers(sim: SimulatedBitrix24) -> None:
    lead_id = sim.seed_lead(first_name="Ada", phone="+905321234567")
    cmd = {
        "found": "crm.duplicate.findbycomm?entity_type=LEAD&type=PHONE&values[0]=%2B905321234567",
        "lead": "crm.lead.get?id=$result[found][LEAD][0]",
        "missing": "crm.lead.get?id=999",
    }

    body = call(sim, "batch", {"halt": 0, "cmd": cmd}).json()["result"]

    assert body["result"]["found"] == {"LEAD": [int(lead_id)]}
    assert body["result"]["lead"]["NAME"] == "Ada"
    assert body["result_error"] == {"missing": {"error": "", "error_description": "Not found"}}
    assert set(body["result_time"]) == {"found", "lead"}
    assert sim.requests == 1


def test_batch_refuses_more_than_fifty_sub_calls(sim: SimulatedBitrix24) -> None:
    response = call(sim, "batch", {"cmd": {str(n): "crm.settings.mode.get" for n in range(51)}})
    assert (response.status_code, response.json()["error"]) == (400, "ERROR_BATCH_LENGTH_EXCEEDED")


def test_comment_list_filters_by_a_substring_of_the_comment(sim: SimulatedBitrix24) -> None:
    lead_id = sim.seed_lead(first_name="Ada")
    operation_id = uuid4()
    for text in ("hello", f"clicked\n{operation_marker(operation_id)}", "bye"):
        call(
            sim, "crm.timeline.comment.add", {"fields": {"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": text}}
        )

    found = call(
        sim,
        "crm.timeline.comment.list",
        {"filter": {"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "%COMMENT": operation_marker(operation_id)}},
    ).json()["result"]

    assert [item["COMMENT"] for item in found] == [f"clicked\n{operation_marker(operation_id)}"]


def test_the_leaky_bucket_refuses_past_its_burst_and_drains_at_two_per_second(
    sim: SimulatedBitrix24, clock: Clock
) -> None:
    answers = [call(sim, "crm.settings.mode.get", {}).status_code for _ in range(BURST + 1)]
    assert answers == [200] * BURST + [503]
    assert sim.rate_limited == 1

    clock.now += 1.0  # two requests' worth drained
    answers = [call(sim, "crm.settings.mode.get", {}).status_code for _ in range(3)]
    assert answers == [200, 200, 503]
    refused = call(sim, "crm.settings.mode.get", {}).json()
    assert refused["error"] == "QUERY_LIMIT_EXCEEDED"


def test_php_parse_str_builds_nested_arrays() -> None:
    assert php_parse_str("filter[ENTITY_ID]=5&filter[%25COMMENT]=a%20b&select[]=ID&select[]=COMMENT") == {
        "filter": {"ENTITY_ID": "5", "%COMMENT": "a b"},
        "select": ["ID", "COMMENT"],
    }


# --- pacing ------------------------------------------------------------------------------------------


def test_a_paced_provider_stays_under_the_portal_limit_without_a_single_refusal(
    sim: SimulatedBitrix24, clock: Clock
) -> None:
    provider = provider_for(sim, {"BITRIX24_REQUESTS_PER_SECOND": "0.9"})
    provider.pacer = RequestPacer(0.9, clock=clock, sleep=clock.sleep)
    second = provider_for(sim, {"BITRIX24_REQUESTS_PER_SECOND": "0.9"})
    second.pacer = RequestPacer(0.9, clock=clock, sleep=clock.sleep)
    started = clock.now

    for number in range(60):  # two containers, taking turns: 240 requests
        for paced in (provider, second):
            paced.upsert_lead(APPLICATION.model_copy(update={"email": f"a{number}{id(paced)}@example.com"}), uuid4())

    assert sim.rate_limited == 0
    assert sim.requests / (clock.now - started) <= 2.0


def test_the_pacer_spaces_requests_after_its_burst() -> None:
    clock = Clock()
    pacer = RequestPacer(0.5, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        pacer.acquire("bitrix24")
    assert clock.now == pytest.approx(1004.0)  # two at once, then one every 2 s


def test_the_pacer_does_not_wait_past_the_time_budget() -> None:
    clock = Clock()
    pacer = RequestPacer(0.5, burst=1, clock=clock, sleep=clock.sleep)
    pacer.acquire("bitrix24")
    with time_budget(1.0, clock=clock), pytest.raises(BudgetExhausted):
        pacer.acquire("bitrix24")
    assert clock.now == 1000.0


@pytest.mark.parametrize("value", ["0", "-1", "6", "fast"])
def test_the_rate_is_validated_at_start_up(value: str) -> None:
    environ = {
        "CRM_PROVIDER": "bitrix24",
        "BITRIX24_WEBHOOK_URL": "https://agency.bitrix24.test/rest/1/token/",
        "BITRIX24_REQUESTS_PER_SECOND": value,
    }
    with pytest.raises(SettingsError, match="BITRIX24_REQUESTS_PER_SECOND"):
        load_settings(environ)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_the_workers_together_are_paced_below_the_portal_limit() -> None:
    with open("template.yaml", encoding="utf-8") as handle:
        template = yaml.load(handle, Loader=_Loader)  # noqa: S506  # SafeLoader, CloudFormation tags ignored
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    rate = float(worker["Environment"]["Variables"]["BITRIX24_REQUESTS_PER_SECOND"])
    concurrency = worker["Events"]["Operations"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert rate * concurrency <= 2.0
