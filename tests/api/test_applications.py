"""POST /api/v1/applications: in the CRM when it answers in time, never lost when it does not."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest

from crm_bridge.api.schemas import ErrorBody, Received
from crm_bridge.delivery import recovery
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.models import UpsertLeadOperation, parse_operation
from infra.local.http_events import http_api_event
from tests.api.conftest import ESPOCRM_KEY, Aws, invoke, post
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm

PATH = "/api/v1/applications"
FORM = {
    "name": "Ayşe Yılmaz",
    "phone": "0532 123 45 67",
    "email": "Ayse.Yilmaz@Example.com",
    "user_type": "student",
    "program": "Medicine",
    "message": "Hello!",
    "consent": True,
    "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram"},
}


@pytest.fixture
def handler(load_handler: Callable[[str], ModuleType], espocrm: SimulatedEspoCrm) -> ModuleType:
    return load_handler("applications_api")


def test_an_application_becomes_a_lead_at_once(handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws) -> None:
    answer = post(handler, PATH, FORM)

    assert answer.status == 201
    assert Received.model_validate(answer.body).status == "received"
    (lead,) = espocrm.leads()
    assert lead["phoneNumber"] == "+905321234567"
    assert lead["emailAddress"] == "ayse.yilmaz@example.com"
    assert lead["cReferralCode"] == "PARTNER-42"
    assert aws.queued() == []


def test_the_answer_is_the_same_whether_the_person_applied_before_or_not(
    handler: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    """Anyone can type a phone number or an e-mail address: an answer that differed for a known one
    would tell them who is a client, and a lead id would let them write onto that person's lead."""
    post(handler, PATH, FORM)
    known = post(handler, PATH, {**FORM, "name": "Someone Else", "email": "someone@example.com"})
    new = post(handler, PATH, {**FORM, "phone": "0532 765 43 21", "email": "new.person@example.com"})

    assert len(espocrm.leads()) == 2, "the first went onto the known lead, the second made one"
    for answer in (known, new):
        assert answer.status == 201
        assert answer.body == {"status": "received", "operationId": answer.body["operationId"]}
    assert set(known.headers) == set(new.headers)
    lead_ids = {lead["id"] for lead in espocrm.leads()}
    assert not any(lead_id in json.dumps(answer.body) for answer in (known, new) for lead_id in lead_ids)


def test_the_applicants_visitor_session_now_points_at_their_lead(
    handler: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    post(handler, PATH, {**FORM, "session_id": "visitor-session-0001"})

    sessions = DynamoDbVisitorSessions("crm-visitor-sessions")
    (lead,) = espocrm.leads()
    assert sessions.lead_for("espocrm", "visitor-session-0001") == lead["id"]


def test_a_repeat_application_updates_the_same_lead(handler: ModuleType, espocrm: SimulatedEspoCrm) -> None:
    post(handler, PATH, FORM)
    again = post(handler, PATH, {**FORM, "university": "Koç University"})

    assert (again.status, again.body["status"]) == (201, "received")
    (lead,) = espocrm.leads()
    assert lead["cUniversity"] == "Koç University", "an empty field a repeat brings is filled"


def test_a_repeat_cannot_change_the_matched_persons_name_or_contacts(
    handler: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    """Someone who knows Ayşe's phone number applies with it and their own e-mail and name: the lead keeps
    Ayşe's name and e-mail (none, here: nothing is filled either), so the agency never writes to the
    stranger about her. What the repeat said is on her timeline, marked as that submission's."""
    post(handler, PATH, {key: value for key, value in FORM.items() if key != "email"})
    post(handler, PATH, {**FORM, "name": "Mallory Attacker", "email": "mallory@evil.example", "phone": FORM["phone"]})

    (lead,) = espocrm.leads()
    assert (lead["firstName"], lead["lastName"]) == ("Ayşe", "Yılmaz")
    assert lead["emailAddress"] is None
    assert lead["phoneNumber"] == "+905321234567"
    assert [item["phoneNumber"] for item in lead["phoneNumberData"]] == ["+905321234567"]
    (note,) = espocrm.timeline(lead["id"])
    lines = note.split("\n")
    assert "the lead's own were not changed" in lines[0]
    assert {"Name: Mallory Attacker", "E-mail: mallory@evil.example"} <= set(lines)


def test_a_crm_outage_queues_the_exact_operation(handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws) -> None:
    espocrm.fail_next(Failure.SERVER_ERROR, times=5)
    event = http_api_event(
        "POST", PATH, route_key=f"POST {PATH}", headers={"content-type": "application/json"}, body=json.dumps(FORM)
    )

    answer = invoke(handler, event)

    assert answer.status == 202
    assert answer.body == {"status": "queued", "operationId": answer.body["operationId"]}
    (message,) = aws.queued()
    operation = parse_operation(message["Body"])
    assert isinstance(operation, UpsertLeadOperation)
    assert str(operation.operation_id) == answer.body["operationId"]
    assert operation.correlation_id == event["requestContext"]["requestId"]
    assert operation.payload.phone == "+905321234567"
    assert operation.payload.referral_code() == "PARTNER-42"
    assert message["MessageAttributes"]["kind"]["StringValue"] == "lead.upsert"
    assert espocrm.leads() == []


@pytest.mark.parametrize("failure", [Failure.TIMEOUT, Failure.CONNECTION_REFUSED, Failure.UNAUTHORIZED])
def test_every_retryable_or_configuration_failure_queues(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, failure: Failure
) -> None:
    espocrm.fail_next(failure, times=5)

    assert post(handler, PATH, FORM).status == 202
    assert len(aws.queued()) == 1


def test_a_slow_crm_is_abandoned_when_the_budget_is_spent(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tick of this clock is two seconds: after the first CRM call the 3 s budget is gone."""
    ticks = iter(range(0, 100, 2))
    monkeypatch.setattr("crm_bridge.providers.budget.time", SimpleNamespace(monotonic=lambda: next(ticks)))

    answer = post(handler, PATH, FORM)

    assert answer.status == 202
    assert len(aws.queued()) == 1
    assert espocrm.router["lead.create"].call_count == 0


def test_a_permanent_rejection_goes_to_the_dead_letter_queue_with_its_reason(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws
) -> None:
    # A refusal that leaving a field out cannot answer: the CRM wants a field crm-bridge never writes.
    espocrm.reject_attribute("cReferralCode", named="cPartnerAgreement")

    answer = post(handler, PATH, FORM)

    assert answer.status == 202
    assert aws.queued() == []
    (message,) = aws.dead_lettered()
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["error_kind"] == "permanent"
    assert attributes["error_field"] == "cPartnerAgreement"
    assert attributes["error_provider"] == "espocrm"
    assert attributes["attempts"] == "1"
    assert str(parse_operation(message["Body"]).operation_id) == answer.body["operationId"]


def test_with_neither_crm_nor_queue_the_client_retries_and_the_log_can_recover_it(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, log_output: io.StringIO
) -> None:
    espocrm.fail_next(Failure.CONNECTION_REFUSED)
    boto3.client("sqs").delete_queue(QueueUrl=aws.queue_url)

    answer = post(handler, PATH, FORM)

    assert answer.status == 503
    assert answer.body["error"]["code"] == "temporarily_unavailable"
    assert answer.headers["retry-after"]
    logged = log_output.getvalue()
    assert "+905321234567" not in logged
    assert "ayse.yilmaz@example.com" not in logged
    recovered: list[Any] = []
    assert recovery.recover_from_log_lines(logged.splitlines(), recovered.append) == 1
    assert str(recovered[0].operation_id) == answer.body["error"]["operationId"]
    assert recovered[0].payload.email == "ayse.yilmaz@example.com"


def test_an_idempotency_key_replays_the_first_answer(handler: ModuleType, espocrm: SimulatedEspoCrm) -> None:
    key = {"Idempotency-Key": "form-7d2f9c"}
    first = post(handler, PATH, FORM, headers=key)
    replay = post(handler, PATH, FORM, headers=key)

    assert (replay.status, replay.body) == (first.status, first.body)
    assert first.body["status"] == "received"
    assert espocrm.router["lead.create"].call_count == 1
    assert espocrm.router["note.create"].call_count == 0, "the replay did not reach the CRM at all"

    reused = post(handler, PATH, {**FORM, "name": "Someone Else"}, headers=key)
    assert (reused.status, reused.body["error"]["code"]) == (422, "idempotency_key_reused")


def test_a_retry_after_a_503_keeps_its_operation_id(handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws) -> None:
    key = {"Idempotency-Key": "form-retry-1"}
    espocrm.fail_next(Failure.CONNECTION_REFUSED)
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=aws.queue_url)
    failed = post(handler, PATH, FORM, headers=key)
    assert failed.status == 503

    retried = post(handler, PATH, FORM, headers=key)

    assert retried.status == 201
    assert retried.body["operationId"] == failed.body["error"]["operationId"]


@pytest.mark.parametrize(
    ("body", "status", "code", "fields"),
    [
        ('{"name": "Ayşe",', 400, "invalid_json", None),
        ("[" * 100 + "]" * 100, 400, "invalid_json", None),
        ({"name": "Ayşe"}, 422, "invalid_request", ["body"]),
        ({**FORM, "phone": "12"}, 422, "invalid_request", ["phone"]),
        ({**FORM, "email": "nope", "user_type": "robot"}, 422, "invalid_request", ["email", "user_type"]),
        ({**FORM, "attribution": {"referral_code": "<script>"}}, 422, "invalid_request", ["attribution.referral_code"]),
        ({**FORM, "unexpected": 1}, 422, "invalid_request", ["unexpected"]),
        ([1, 2], 422, "invalid_request", ["body"]),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, body: Any, status: int, code: str, fields: Any
) -> None:
    answer = post(handler, PATH, body)

    assert answer.status == status
    assert ErrorBody.model_validate(answer.body).error.code == code
    if fields is not None:
        assert sorted(problem["field"] for problem in answer.body["error"]["fields"]) == fields
    assert espocrm.leads() == []
    assert aws.queued() == []


@pytest.mark.parametrize("email", ["ayşe@gmail.com", "ali..veli@example.com", "user.@example.com"])
def test_an_email_the_crm_would_refuse_is_a_422_naming_it(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws, email: str
) -> None:
    """Issue #12: these were answered 202 and dead-lettered, EspoCRM refusing them (PHP's
    FILTER_VALIDATE_EMAIL); the visitor can fix them, so they are refused here, by name."""
    answer = post(handler, PATH, {**FORM, "email": email})

    assert (answer.status, answer.body["error"]["code"]) == (422, "invalid_request")
    (problem,) = answer.body["error"]["fields"]
    assert problem["field"] == "email"
    assert "before the @" in problem["message"]
    assert espocrm.leads() == []
    assert aws.queued() == []
    assert aws.dead_lettered() == []


def test_an_internationalised_domain_is_kept_in_the_form_the_crm_takes(
    handler: ModuleType, espocrm: SimulatedEspoCrm
) -> None:
    answer = post(handler, PATH, {**FORM, "email": "Ayse@Bücher.de"})

    assert answer.status == 201
    (lead,) = espocrm.leads()
    assert lead["emailAddress"] == "ayse@xn--bcher-kva.de"


def test_a_phone_the_crm_does_not_know_yet_still_delivers_the_lead(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws
) -> None:
    """Benin's ten-digit numbers (2024) are valid, but EspoCRM 8.4.2's libphonenumber predates them
    (fixture 41): the lead is created without its phone field, the number in its description."""
    answer = post(handler, PATH, {**FORM, "phone": "+229 01 95 12 34 56"})

    assert (answer.status, answer.body["status"]) == (201, "received")
    (lead,) = espocrm.leads()
    assert lead["phoneNumber"] is None
    assert "Phone: +2290195123456" in lead["description"].split("\n")
    assert lead["emailAddress"] == "ayse.yilmaz@example.com"
    assert aws.queued() == aws.dead_lettered() == []


def test_bodies_must_be_json_and_small(handler: ModuleType) -> None:
    assert post(handler, PATH, "name=Ayse", headers={"content-type": "application/x-www-form-urlencoded"}).status == 415
    huge = {**FORM, "message": "x" * 40_000}
    answer = post(handler, PATH, huge)
    assert (answer.status, answer.body["error"]["code"]) == (413, "body_too_large")


def test_a_base64_encoded_body_is_read(handler: ModuleType, espocrm: SimulatedEspoCrm) -> None:
    assert post(handler, PATH, FORM, force_base64=True).status == 201


def test_no_secret_or_personal_data_is_logged(
    handler: ModuleType, espocrm: SimulatedEspoCrm, log_output: io.StringIO
) -> None:
    post(handler, PATH, FORM)
    espocrm.fail_next(Failure.UNAUTHORIZED, times=5)
    post(handler, PATH, FORM)
    espocrm.reject_attribute("cReferralCode")
    post(handler, PATH, FORM)

    logged = log_output.getvalue()
    assert logged
    for private in (ESPOCRM_KEY, "+905321234567", "ayse.yilmaz@example.com", "Yılmaz"):
        assert private not in logged


def test_a_create_that_got_no_answer_waits_until_it_could_have_landed(
    handler: ModuleType, espocrm: SimulatedEspoCrm, aws: Aws
) -> None:
    """The CRM may still run a create whose answer never came (it reached a busy server): retried
    at once, the worker would search before it lands and create the lead a second time."""
    espocrm.router["lead.create"].side_effect = httpx.ReadTimeout("no answer")

    answer = post(handler, PATH, FORM)

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert aws.queued() == [], "the worker does not see it yet"
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
