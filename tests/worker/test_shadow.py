"""Dual-write end to end: the applications API and the worker over moto, EspoCRM and Bitrix24 simulated.

Each copy of an operation reaches the CRM it was made for exactly once, whatever the other CRM does,
and whatever happens to the configuration while copies wait on the queue: swapped, or the shadow
turned off. The API side alone: tests/api/test_shadow.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from crm_bridge.api import settings as api_settings
from crm_bridge.delivery.dead_letters import inspect_dead_letters, redrive
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.models import parse_operation
from tests.api.conftest import Answer, post
from tests.simulators.base import Failure, SimulatedCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.worker.conftest import Aws, EventSourceMapping, Lambda, attributes_of, emitted_metrics

FORM = {
    "name": "Deniz Arslan",
    "phone": "+905321110001",
    "email": "deniz.arslan@example.com",
    "consent": True,
    "session_id": "visitor-session-0042",
    "attribution": {"referral_code": "PARTNER-42"},
}
CLICK = {"channel": "telegram", "session_id": "visitor-session-0042"}


@dataclass
class Stack:
    """One deployment: the API functions and the worker, cold-started with one configuration."""

    applications: ModuleType
    messenger: ModuleType
    poller: EventSourceMapping

    def apply(self, form: dict[str, Any] | None = None) -> Answer:
        return post(self.applications, "/api/v1/applications", form or FORM)

    def click(self) -> Answer:
        return post(self.messenger, "/api/v1/messenger-events", CLICK)


@pytest.fixture
def deploy(
    aws: Aws,
    espocrm: SimulatedEspoCrm,
    bitrix24: SimulatedBitrix24,
    worker_lambda: Callable[[], Lambda],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Stack]:
    """``deploy(primary, shadow)``: both CRMs configured, the choice of primary and shadow as a
    parameter change and a redeploy (every function cold-starts)."""

    def cold_start(module_name: str) -> ModuleType:
        api_settings.get_api_settings.cache_clear()
        sys.modules.pop(module_name, None)
        return importlib.import_module(module_name)

    def deploy(primary: str, shadow: str | None) -> Stack:
        monkeypatch.setenv("CRM_PROVIDER", primary)
        if shadow is None:
            monkeypatch.delenv("CRM_SHADOW_PROVIDER", raising=False)
        else:
            monkeypatch.setenv("CRM_SHADOW_PROVIDER", shadow)
        worker = worker_lambda()  # clears the settings' and providers' caches first
        return Stack(
            cold_start("applications_api"), cold_start("messenger_events_api"), EventSourceMapping(aws, worker)
        )

    return deploy


def phones(crm: SimulatedCrm) -> list[str]:
    return sorted(phone for lead in crm.leads() for phone in crm.lead_phones(str(lead.get("id") or lead.get("ID"))))


def by_provider(output: str) -> Counter[tuple[str, str]]:
    """Sum of each EMF metric printed with a ``provider`` dimension, by (metric, provider)."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if any("provider" in dimensions for dimensions in directive["Dimensions"]):
                for metric in directive["Metrics"]:
                    value = document[metric["Name"]]
                    totals[metric["Name"], document["provider"]] += int(
                        sum(value) if isinstance(value, list) else value
                    )
    return totals


def test_an_application_reaches_the_primary_at_once_and_the_shadow_through_the_worker(
    deploy: Callable[..., Stack],
    espocrm: SimulatedEspoCrm,
    bitrix24: SimulatedBitrix24,
    aws: Aws,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = deploy("espocrm", "bitrix24")

    answer = stack.apply()
    assert answer.status == 201
    (espocrm_lead,) = espocrm.leads()
    assert bitrix24.leads() == []
    stack.poller.run()

    assert phones(espocrm) == phones(bitrix24) == ["+905321110001"]
    sessions = DynamoDbVisitorSessions("crm-visitor-sessions")
    assert sessions.lead_for("espocrm", "visitor-session-0042") == espocrm_lead["id"]
    (bitrix_lead,) = bitrix24.leads()
    assert sessions.lead_for("bitrix24", "visitor-session-0042") == str(bitrix_lead["ID"])
    assert aws.waiting() == 0
    assert aws.dead_lettered() == []

    # The visitor's next click becomes an activity on their lead in each CRM.
    assert stack.click().status == 202
    stack.poller.run()
    assert len(espocrm.leads()) == len(bitrix24.leads()) == 1
    assert len(espocrm.timeline(espocrm_lead["id"])) == 1
    assert len(bitrix24.timeline(str(bitrix_lead["ID"]))) == 1

    metrics = by_provider(capsys.readouterr().out)
    assert metrics["LeadsCreated", "espocrm"] == metrics["LeadsCreated", "bitrix24"] == 1
    assert metrics["OperationsDelivered", "bitrix24"] == 2  # the application's copy, the click's
    assert metrics["OperationsDelivered", "espocrm"] == 1  # the click (the application was delivered at once)


def test_a_shadow_that_is_down_costs_the_primary_nothing_and_its_copy_waits_in_the_dlq_naming_it(
    deploy: Callable[..., Stack],
    espocrm: SimulatedEspoCrm,
    bitrix24: SimulatedBitrix24,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RETRY_MAX_RECEIVES", "3")
    stack = deploy("espocrm", "bitrix24")
    bitrix24.fail_next(Failure.MAINTENANCE, times=100)

    answer = stack.apply()
    rounds = stack.poller.run()

    assert answer.status == 201
    assert rounds == 3, "retried, then dead-lettered on the last receive"
    assert phones(espocrm) == ["+905321110001"]
    assert bitrix24.leads() == []
    (dead,) = aws.dead_lettered()
    attributes = attributes_of(dead)
    assert (attributes["provider"], attributes["error_provider"]) == ("bitrix24", "bitrix24")
    assert attributes["operation_id"] == answer.body["operationId"]
    assert parse_operation(dead["Body"]).provider == "bitrix24"
    report = inspect_dead_letters(aws.sqs, aws.dlq_url, wait_seconds=0)
    (reason,) = report.reasons
    assert reason.copy_for == "bitrix24"
    assert "for=bitrix24" in report.render()
    metrics = by_provider(capsys.readouterr().out)
    assert metrics["OperationsRetried", "bitrix24"] == 2
    assert metrics["OperationsDeadLettered", "bitrix24"] == 1
    assert metrics["LeadsCreated", "espocrm"] == 1
    assert metrics["OperationsRetried", "espocrm"] == metrics["OperationsDeadLettered", "espocrm"] == 0

    # The shadow recovers and an operator redrives: exactly one lead there, whatever comes back twice.
    bitrix24.fail_next(Failure.MAINTENANCE, times=0)  # no more failures planned: back up
    body = dead["Body"]
    redrive(aws.sqs, aws.dlq_url, aws.queue_url, wait_seconds=0)
    stack.poller.run()
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)  # e.g. a second redrive of a stale copy
    stack.poller.run()

    assert phones(bitrix24) == ["+905321110001"]
    assert phones(espocrm) == ["+905321110001"]
    assert aws.dead_lettered() == []


def test_swapping_primary_and_shadow_delivers_each_waiting_copy_to_the_crm_it_was_made_for(
    deploy: Callable[..., Stack], espocrm: SimulatedEspoCrm, bitrix24: SimulatedBitrix24, aws: Aws
) -> None:
    stack = deploy("espocrm", "bitrix24")
    espocrm.fail_next(Failure.SERVER_ERROR, times=5)
    answer = stack.apply()
    assert answer.status == 202  # the primary's copy waits beside the shadow's
    assert aws.waiting() == 2

    # The cutover's next step, while both copies wait: Bitrix24 becomes the primary, EspoCRM its shadow.
    deploy("bitrix24", "espocrm").poller.run()

    assert phones(espocrm) == phones(bitrix24) == ["+905321110001"]
    assert aws.dead_lettered() == []


def test_with_the_shadow_turned_off_its_waiting_copies_go_to_the_primary_and_write_nothing_twice(
    deploy: Callable[..., Stack],
    espocrm: SimulatedEspoCrm,
    bitrix24: SimulatedBitrix24,
    aws: Aws,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = deploy("espocrm", "bitrix24")
    delivered = stack.apply()  # to EspoCRM at once; the shadow's copy waits
    (delivered_lead,) = espocrm.leads()
    espocrm.fail_next(Failure.SERVER_ERROR, times=5)
    queued = stack.apply({**FORM, "phone": "+905321110002", "email": "other.applicant@example.com"})
    assert stack.click().status == 202
    assert (delivered.status, queued.status) == (201, 202)
    assert aws.waiting() == 5  # 1 + 2 + 2 copies
    capsys.readouterr()

    deploy("espocrm", None).poller.run()

    assert phones(espocrm) == ["+905321110001", "+905321110002"]
    assert len(espocrm.timeline(delivered_lead["id"])) == 1, "the click once, not once per copy"
    outcomes = emitted_metrics(capsys.readouterr().out)
    # The delivered application's copy: EspoCRM's operation marker. The queued one's and the click's
    # second copies: EspoCRM's once-only records, so the CRM is not even called.
    assert (outcomes["LeadsCreated"], outcomes["LeadsUnchanged"]) == (1, 1)
    assert outcomes["OperationsAlreadyDelivered"] == 2
    assert bitrix24.leads() == []
    assert aws.waiting() == 0
    assert aws.dead_lettered() == []


def test_without_a_shadow_nothing_changes(
    deploy: Callable[..., Stack], espocrm: SimulatedEspoCrm, bitrix24: SimulatedBitrix24, aws: Aws
) -> None:
    stack = deploy("espocrm", None)

    assert stack.apply().status == 201
    assert aws.waiting() == 0
    assert stack.click().status == 202
    stack.poller.run()

    assert len(espocrm.leads()) == 1
    assert bitrix24.leads() == []
    assert all("provider" not in message["MessageAttributes"] for message in aws.dead_lettered())
