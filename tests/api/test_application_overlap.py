"""POST /api/v1/applications with its DynamoDB round trips overlapped (crm_bridge/delivery/overlap.py):
the lead search goes out while the idempotency record is claimed, the visitor session is written
while the answer is stored. These tests hold it to what the sequential path guaranteed: nothing is
written to the CRM before the record is "in progress", a duplicate still gets its 409 or its first
answer, the session is remembered before the answer returns and a failing session write changes
nothing, and the CRM sees the same requests as before."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import DynamoDBPersistenceLayer
from botocore.exceptions import ClientError

from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.providers import http as crm_http
from tests.api.conftest import Aws, post
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm

PATH = "/api/v1/applications"
FORM = {
    "name": "Ayşe Yılmaz",
    "phone": "0532 123 45 67",
    "email": "Ayse.Yilmaz@Example.com",
    "user_type": "student",
    "consent": True,
    "session_id": "visitor-session-0042",
}


@pytest.fixture
def handler(load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm) -> ModuleType:
    return load_handler("applications_api")


OVERLAP_SECONDS = 2.0
"""How long a slowed write waits for what should overlap it: a loaded machine's scheduling, not a fixed sleep."""


class Timeline:
    """What happened, in order, from every thread: CRM requests as sent, DynamoDB idempotency writes."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._changed = threading.Condition()

    def add(self, event: str) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, event: str, timeout: float = OVERLAP_SECONDS) -> None:
        """Until ``event`` happened, or ``timeout`` passed (then the order the test asserts shows it)."""
        with self._changed:
            self._changed.wait_for(lambda: event in self.events, timeout)

    def index(self, event: str) -> int:
        return self.events.index(event)


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch) -> Timeline:
    """Records each CRM request as it leaves (``providers.http._send``, below the reads-ahead) and
    each idempotency write; the claim (the in-progress ``PutItem``) is slow: it lasts until the CRM search
    has gone out (at most OVERLAP_SECONDS), a slow DynamoDB."""
    recorded = Timeline()
    send, put, update = crm_http._send, DynamoDBPersistenceLayer._put_record, DynamoDBPersistenceLayer._update_record

    def traced_send(client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool) -> httpx.Response:
        recorded.add(f"{request.method} {request.url.path.rsplit('/api/v1/', 1)[-1]}")
        return send(client, provider, request, writes=writes)

    def slow_claim(layer: DynamoDBPersistenceLayer, data_record: Any) -> None:
        recorded.add("claim started")
        recorded.wait_for("GET Lead")
        try:
            put(layer, data_record)
        finally:
            recorded.add("claim done")

    def traced_update(layer: DynamoDBPersistenceLayer, data_record: Any) -> None:
        recorded.add("answer stored")
        update(layer, data_record)

    monkeypatch.setattr(crm_http, "_send", traced_send)
    monkeypatch.setattr(DynamoDBPersistenceLayer, "_put_record", slow_claim)
    monkeypatch.setattr(DynamoDBPersistenceLayer, "_update_record", traced_update)
    return recorded


def test_the_search_goes_out_during_the_claim_and_the_create_only_after_it(
    handler: ModuleType, espocrm: SimulatedEspoCrm, timeline: Timeline
) -> None:
    answer = post(handler, PATH, FORM, headers={"Idempotency-Key": "overlap-1"})

    assert (answer.status, answer.body["status"]) == (201, "received")
    assert timeline.index("GET Lead") < timeline.index("claim done"), "the search overlaps the claim"
    assert timeline.index("claim done") < timeline.index("POST Lead"), "nothing is written before the claim"
    # The delivery's own search was answered from the one sent ahead: the CRM saw what it always saw.
    assert [event for event in timeline.events if event.endswith("Lead")] == ["GET Lead", "POST Lead"]
    assert espocrm.router["lead.search"].call_count == espocrm.router["lead.create"].call_count == 1


def test_a_search_sent_ahead_of_a_claim_that_fails_never_writes(
    handler: ModuleType, espocrm: SimulatedEspoCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double submission: the second arrives while the first is creating the lead. Its search
    went out ahead of its claim; the claim finds the first "in progress": 409, and no write."""
    creating, release = threading.Event(), threading.Event()
    send = crm_http._send

    def create_held_open(
        client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool
    ) -> httpx.Response:
        if request.method == "POST" and not creating.is_set():
            creating.set()
            assert release.wait(10)
        return send(client, provider, request, writes=writes)

    monkeypatch.setattr(crm_http, "_send", create_held_open)
    key = {"Idempotency-Key": "double-click-1"}
    first: list[Any] = []
    submitting = threading.Thread(target=lambda: first.append(post(handler, PATH, FORM, headers=key)))
    submitting.start()
    try:
        assert creating.wait(10)
        searches_before = espocrm.router["lead.search"].call_count

        duplicate = post(handler, PATH, FORM, headers=key)

        assert (duplicate.status, duplicate.body["error"]["code"]) == (409, "in_progress")
        assert espocrm.router["lead.search"].call_count == searches_before + 1, "its search did go out, read-only"
    finally:
        release.set()
        submitting.join(10)
    assert first[0].status == 201
    assert espocrm.router["lead.create"].call_count == 1
    assert espocrm.router["note.create"].call_count == espocrm.router["lead.update"].call_count == 0
    assert len(espocrm.leads()) == 1

    replay = post(handler, PATH, FORM, headers=key)

    assert (replay.status, replay.body) == (201, first[0].body)
    assert espocrm.router["lead.create"].call_count == 1, "the replay wrote nothing either"
    assert espocrm.router["note.create"].call_count == espocrm.router["lead.update"].call_count == 0


def test_a_search_that_failed_ahead_is_not_sent_again_and_queues_as_before(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws
) -> None:
    espocrm.fail_next(Failure.SERVER_ERROR)

    answer = post(handler, PATH, FORM)

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert len(aws.queued()) == 1
    assert espocrm.router["lead.search"].call_count == 1, "the delivery got the 500 read ahead"
    assert espocrm.router["lead.create"].call_count == 0


def test_a_known_applicant_reads_ahead_and_the_delivery_writes_as_before(
    handler: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    lead_id = espocrm.seed_lead(first_name="Ayşe", last_name="Yılmaz", phone="+905321234567")

    answer = post(handler, PATH, FORM)

    assert (answer.status, answer.body["status"]) == (201, "received")
    assert len(espocrm.timeline(lead_id)) == 1, "the repeat went onto the known lead"
    assert espocrm.router["lead.search"].call_count == espocrm.router["lead.read"].call_count == 1
    assert espocrm.router["lead.create"].call_count == 0
    assert espocrm.router["note.create"].call_count == 1


@pytest.fixture
def slow_sessions(handler: ModuleType, monkeypatch: pytest.MonkeyPatch, timeline: Timeline) -> None:
    """The visitor-session write is slow: it lasts until the answer is stored (at most OVERLAP_SECONDS),
    and says when it ends."""
    remember = DynamoDbVisitorSessions.remember

    def slow_remember(self: DynamoDbVisitorSessions, *args: Any, **kwargs: Any) -> None:
        timeline.add("session write started")
        timeline.wait_for("answer stored")
        remember(self, *args, **kwargs)
        timeline.add("session written")

    monkeypatch.setattr(DynamoDbVisitorSessions, "remember", slow_remember)


@pytest.mark.usefixtures("slow_sessions")
def test_the_session_is_remembered_before_the_answer_returns_and_beside_the_answers_write(
    handler: ModuleType, espocrm: SimulatedEspoCrm, timeline: Timeline
) -> None:
    answer = post(handler, PATH, FORM, headers={"Idempotency-Key": "overlap-session-1"})
    timeline.add("answered")

    assert answer.status == 201
    sessions = DynamoDbVisitorSessions("crm-visitor-sessions")
    (lead,) = espocrm.leads()
    assert sessions.lead_for("espocrm", "visitor-session-0042") == lead["id"]
    assert timeline.index("POST Lead") < timeline.index("session write started")
    assert timeline.index("answer stored") < timeline.index("session written"), "the two writes overlap"
    assert timeline.index("session written") < timeline.index("answered"), "and the handler waits for both"


def test_a_failing_session_write_still_answers_with_the_lead_and_logs_no_personal_data(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingDynamoDb:
        def get_item(self, **request: Any) -> dict[str, Any]:
            return {}  # no lead for the session yet: reads work, the write fails

        def update_item(self, **request: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "UpdateItem")

    monkeypatch.setattr(handler.sessions, "_client", FailingDynamoDb())

    answer = post(handler, PATH, FORM, headers={"Idempotency-Key": "overlap-session-2"})

    assert (answer.status, answer.body["status"]) == (201, "received")
    assert len(espocrm.leads()) == 1
    assert aws.queued() == []
    logged = log_output.getvalue()
    assert "could not remember the visitor session's lead" in logged
    for private in ("+905321234567", "ayse.yilmaz@example.com", "Yılmaz", "visitor-session-0042"):
        assert private not in logged
    replay = post(handler, PATH, FORM, headers={"Idempotency-Key": "overlap-session-2"})
    assert (replay.status, replay.body) == (201, answer.body), "the answer was stored as before"


def test_a_defect_in_the_session_write_is_still_a_500_once_it_has_been_waited_for(
    handler: ModuleType, espocrm: SimulatedEspoCrm, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    def broken(self: DynamoDbVisitorSessions, *args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug, not a store failure")

    monkeypatch.setattr(DynamoDbVisitorSessions, "remember", broken)

    answer = post(handler, PATH, FORM)

    assert answer.status == 500
    assert "unhandled error" in log_output.getvalue()
    assert len(espocrm.leads()) == 1
