"""Dual-write at the API (CRM_SHADOW_PROVIDER): the primary answered as always, a named copy queued for the shadow.

The API never talks to the shadow CRM: its copies go through the queue (tests/worker/test_shadow.py
follows them into the CRMs). A failure to queue the shadow's copy never changes the answer.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from crm_bridge.delivery import recovery
from crm_bridge.models import parse_operation
from tests.api.conftest import Aws, post
from tests.api.test_applications import FORM, PATH
from tests.api.test_messenger_and_redirects import CLICK, go
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.worker.conftest import emitted_metrics

WEBHOOK = "https://agency.bitrix24.test/rest/1/shadow0api0token/"
"""The shadow's settings must be valid; the API never calls it."""


@pytest.fixture
def shadow(espocrm: SimulatedEspoCrm, monkeypatch: pytest.MonkeyPatch) -> str:
    """EspoCRM primary, Bitrix24 its shadow."""
    monkeypatch.setenv("CRM_SHADOW_PROVIDER", "bitrix24")
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", WEBHOOK)
    return "bitrix24"


def copies(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The queued operations by the CRM each copy is for (its attribute, which its body repeats)."""
    found = {}
    for message in messages:
        operation = parse_operation(message["Body"])
        provider = message["MessageAttributes"]["provider"]["StringValue"]
        assert operation.provider == provider
        found[provider] = operation
    assert len(found) == len(messages), "one copy per CRM"
    return found


def test_a_delivered_application_queues_only_the_shadows_copy(
    load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm, shadow: str, aws: Aws
) -> None:
    answer = post(load_handler("applications_api"), PATH, FORM)

    assert answer.status == 201
    assert len(espocrm.leads()) == 1, "the primary has it"
    (copy,) = copies(aws.queued()).values()
    assert (copy.provider, str(copy.operation_id)) == ("bitrix24", answer.body["operationId"])
    assert copy.payload.email == "ayse.yilmaz@example.com"


def test_a_queued_application_names_the_primary_on_its_own_copy(
    load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm, shadow: str, aws: Aws
) -> None:
    espocrm.fail_next(Failure.SERVER_ERROR, times=5)

    answer = post(load_handler("applications_api"), PATH, FORM)

    assert answer.status == 202
    queued = copies(aws.queued())
    assert set(queued) == {"espocrm", "bitrix24"}
    assert {str(copy.operation_id) for copy in queued.values()} == {answer.body["operationId"]}


def test_a_refused_application_is_dead_lettered_for_the_primary_and_still_copied_to_the_shadow(
    load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm, shadow: str, aws: Aws
) -> None:
    espocrm.reject_attribute("cReferralCode", named="cPartnerAgreement")

    answer = post(load_handler("applications_api"), PATH, FORM)

    assert answer.status == 202
    (dead,) = aws.dead_lettered()
    assert dead["MessageAttributes"]["provider"]["StringValue"] == "espocrm"
    assert dead["MessageAttributes"]["error_provider"]["StringValue"] == "espocrm"
    assert set(copies(aws.queued())) == {"bitrix24"}


def test_clicks_are_queued_once_per_crm(
    load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm, shadow: str, aws: Aws
) -> None:
    assert post(load_handler("messenger_events_api"), "/api/v1/messenger-events", CLICK).status == 202
    assert go(load_handler("redirect_api"), "/go/telegram", "ref=PARTNER-42").status == 302

    messages = aws.queued()
    by_origin: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_origin.setdefault(message["MessageAttributes"]["origin"]["StringValue"], []).append(message)
    assert set(by_origin) == {"api.messenger-events", "redirect"}
    for same_click in by_origin.values():
        queued = copies(same_click)
        assert set(queued) == {"espocrm", "bitrix24"}
        primary, shadow_copy = queued["espocrm"], queued["bitrix24"]
        assert shadow_copy.model_dump(exclude={"provider"}) == primary.model_dump(exclude={"provider"})


def test_without_a_shadow_operations_name_no_crm(
    load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm, aws: Aws
) -> None:
    assert post(load_handler("messenger_events_api"), "/api/v1/messenger-events", CLICK).status == 202

    (message,) = aws.queued()
    assert "provider" not in message["MessageAttributes"]
    assert "provider" not in json.loads(message["Body"]), "the envelope a worker of the previous release reads"


class ShadowQueueDown:
    """SQS as the API's queue sees it, refusing the shadow's copies only."""

    def __init__(self, shadow: str) -> None:
        self._sqs = boto3.client("sqs")
        self._shadow = shadow

    def send_message(self, **kwargs: Any) -> Any:
        if kwargs["MessageAttributes"].get("provider", {}).get("StringValue") == self._shadow:
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessage")
        return self._sqs.send_message(**kwargs)


@pytest.mark.parametrize("primary_up", [True, False], ids=["delivered", "queued"])
def test_a_shadow_copy_the_queue_refuses_changes_nothing_for_the_primary_and_is_sealed_for_recovery(
    load_handler: Callable[[str], ModuleType],
    espocrm: SimulatedEspoCrm,
    shadow: str,
    aws: Aws,
    log_output: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    primary_up: bool,
) -> None:
    handler = load_handler("applications_api")
    handler.queue._client = ShadowQueueDown(shadow)
    if not primary_up:
        espocrm.fail_next(Failure.SERVER_ERROR, times=5)

    answer = post(handler, PATH, FORM)

    assert answer.status == (201 if primary_up else 202)
    assert set(copies(aws.queued())) == (set() if primary_up else {"espocrm"})
    assert emitted_metrics(capsys.readouterr().out)["ShadowEnqueueFailures"] == 1
    logged = log_output.getvalue()
    assert "ayse.yilmaz@example.com" not in logged
    recovered: list[Any] = []
    assert recovery.recover_from_log_lines(logged.splitlines(), recovered.append) == 1
    (sealed,) = recovered
    assert (sealed.provider, str(sealed.operation_id)) == ("bitrix24", answer.body["operationId"])


def test_with_neither_crm_nor_queue_both_copies_are_sealed_and_the_client_retries(
    load_handler: Callable[[str], ModuleType],
    espocrm: SimulatedEspoCrm,
    shadow: str,
    aws: Aws,
    log_output: io.StringIO,
) -> None:
    espocrm.fail_next(Failure.CONNECTION_REFUSED)
    boto3.client("sqs").delete_queue(QueueUrl=aws.queue_url)

    answer = post(load_handler("applications_api"), PATH, FORM)

    assert answer.status == 503
    recovered: list[Any] = []
    assert recovery.recover_from_log_lines(log_output.getvalue().splitlines(), recovered.append) == 2
    assert {copy.provider for copy in recovered} == {"espocrm", "bitrix24"}


def test_the_redirect_still_redirects_when_the_shadows_copy_cannot_be_queued(
    load_handler: Callable[[str], ModuleType], shadow: str, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    redirect = load_handler("redirect_api")
    redirect.queue._client = ShadowQueueDown(shadow)

    assert go(redirect, "/go/whatsapp", "ref=PARTNER-42").status == 302
    assert set(copies(aws.queued())) == {"espocrm"}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["ShadowEnqueueFailures"], metrics["OperationsQueued"], metrics["RedirectClickNotQueued"]) == (
        1,
        1,
        0,
    )
