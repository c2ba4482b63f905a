"""SQS unreachable while the CRM is down too: every entry point keeps the operation, nothing is a 500.

The API functions cannot queue (their SQS endpoint refuses connections), so the website gets a 503
it may retry with the same ``Idempotency-Key``, the visitor of a redirect is redirected anyway, and
each operation is sealed into the log. Once SQS is back, the client's retries and the operator's
recovery from the log (``python -m crm_bridge.delivery.recovery``) may both happen: the CRM still
gets every operation exactly once.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from crm_bridge.api.schemas import ErrorBody
from crm_bridge.delivery import recovery
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.observability import get_logger
from infra.espocrm.local import free_port
from tests.faults.crm import FaultyEspoCrm
from tests.faults.scenario import OPERATION_MARKER, VISITOR_SESSION
from tests.faults.system import System, running_system

API_KEY = "queue-outage-espo-key-3c9e71"
APPLICATION = {"name": "Ayşe Yılmaz", "phone": "0532 123 45 67", "email": "Ayse.Yilmaz@Example.com", "consent": True}
CLICK = {"channel": "whatsapp", "session_id": "outage-session-0001", "page": "/programs/medicine"}
PRIVATE = ("0532 123 45 67", "+905321234567", "Ayse.Yilmaz@Example.com", "ayse.yilmaz@example.com", API_KEY)


@pytest.fixture
def crm() -> Iterator[FaultyEspoCrm]:
    stub = FaultyEspoCrm(free_port(), API_KEY)  # not started: the CRM is down as well
    yield stub
    stub.stop()


@pytest.fixture
def system(crm: FaultyEspoCrm) -> Iterator[System]:
    environment = {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": crm.base_url, "ESPOCRM_API_KEY": API_KEY}
    with pytest.MonkeyPatch.context() as env, running_system(env, environment, seed=11) as running:
        yield running


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    handler = get_logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@contextlib.contextmanager
def sqs_unreachable(system: System, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API functions' SQS endpoint refuses connections (one attempt each, no retries)."""
    dead = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    with monkeypatch.context() as patch:
        for handler in (system.applications, system.messenger, system.redirect):
            patch.setattr(handler.queue, "_client", dead)
        yield


def test_with_neither_crm_nor_queue_nothing_is_lost_and_nothing_doubles(
    system: System, crm: FaultyEspoCrm, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqs_unreachable(system, monkeypatch):
        application = system.submit_application(APPLICATION, "outage-form-1")
        click = system.click(CLICK, "outage-click-1")
        redirect = system.go("telegram", session_id="outage-session-0002", query="ref=PARTNER-7")

    for answer in (application, click):
        assert answer.status == 503
        assert ErrorBody.model_validate(answer.body).error.code == "temporarily_unavailable"
        assert answer.headers["retry-after"]
        assert "Traceback" not in str(answer.body)
    assert redirect.status == 302, "the visitor is redirected all the same"
    assert redirect.headers["location"] == "https://t.me/agency_bot?start=PARTNER-7"
    logged = logs.getvalue()
    assert logged.count(recovery.RECOVERY_LOG_MESSAGE) == 3
    assert not [private for private in PRIVATE if private in logged]

    crm.start()
    retried = system.submit_application(APPLICATION, "outage-form-1")  # the website retries, as told
    assert retried.status == 201
    assert retried.body["operationId"] == application.body["error"]["operationId"]
    clicked_again = system.click(CLICK, "outage-click-1")
    assert clicked_again.status == 202
    assert clicked_again.body["operationId"] == click.body["error"]["operationId"]
    with system.operator.running():  # the operator recovers them, with the operators' policy
        queue = OperationQueue.from_environment()
        assert recovery.recover_from_log_lines(logged.splitlines(), queue.enqueue) == 3
    assert system.work() == 4
    assert system.waiting() == 0

    records = crm.sim.records()
    (applicant,) = [lead for lead, _ in records.values() if lead["phoneNumber"] == "+905321234567"]
    assert records[applicant["id"]][1] == [], "the recovered copy added no 'submitted again' note"
    texts = [text for lead, notes in records.values() for text in [lead["description"] or "", *notes]]
    assert sorted(session for text in texts for session in VISITOR_SESSION.findall(text)) == [
        "outage-session-0001",
        "outage-session-0002",
    ]
    markers = [marker for text in texts for marker in OPERATION_MARKER.findall(text)]
    assert sorted(markers) == sorted(set(markers)), "every operation once"
    assert system.dead_letters() == []
