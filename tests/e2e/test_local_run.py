"""``make run`` with nothing configured: the sandbox CRM, the queue, the worker, the DLQ, the pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.local.sandbox import SandboxStore
from infra.local.stack import STACK_NAME
from tests.e2e.conftest import ROOT, LocalRun, SandboxView, json_body, sandbox_leads, wait_for
from tests.user_agents import BROWSER

APPLICATION = {
    "name": "Zeynep Kaya",
    "phone": "+90 533 987 65 43",
    "email": "zeynep.kaya@example.com",
    "user_type": "student",
    "program": "Architecture",
    "consent": True,
    "attribution": {"referral_code": "PARTNER-7", "utm_source": "instagram"},
}
HELD = "click held: its visitor session started on that request"
"""The worker's console line for a click it holds (crm_bridge.worker.processor)."""
PERSONAL_DATA = ("Zeynep", "Kaya", "+905339876543", "533 987 65 43", "zeynep.kaya@example.com")


def test_an_application_becomes_a_lead_in_the_sandbox(sandbox_run: LocalRun) -> None:
    with sandbox_run.client() as client:
        answer = client.post("/api/v1/applications", json=APPLICATION, headers={"Idempotency-Key": "e2e-app-1"})
        replay = client.post("/api/v1/applications", json=APPLICATION, headers={"Idempotency-Key": "e2e-app-1"})

    assert answer.status_code == 201, answer.text
    body = json_body(answer)
    assert body == {"status": "received", "operationId": body["operationId"]}
    assert json_body(replay) == body, "the idempotency table (DynamoDB in moto) replays the first answer"
    (lead,) = [lead for lead in sandbox_leads(sandbox_run) if "+905339876543" in lead["phones"]]
    assert lead["phones"] == ["+905339876543"]
    assert lead["referral_code"] == "PARTNER-7"
    assert "SANDBOX, not a real CRM" in sandbox_run.console


def test_a_click_goes_through_the_queue_and_the_worker_to_the_sandbox(sandbox_run: LocalRun) -> None:
    click = {"channel": "whatsapp", "session_id": "e2e-session-0001", "attribution": {"utm_source": "e2e"}}
    with sandbox_run.client() as client:
        answer = client.post("/api/v1/messenger-events", json=click)
    assert answer.status_code == 202, answer.text
    operation = json_body(answer)["operationId"]

    lead = wait_for(
        lambda: next(
            (ld for ld in sandbox_leads(sandbox_run) if ld.get("visitor_session_id") == "e2e-session-0001"), None
        ),
        20,
        "the worker to create the visitor's lead",
    )
    assert lead["messenger_channel"] == "whatsapp"
    wait_for(lambda: f"op {operation[:8]}" in sandbox_run.console and "done" in sandbox_run.console, 10, "the console")
    wait_for(sandbox_run.queue_is_empty, 10, "the queue to be empty")


def test_an_application_completes_the_lead_of_the_visitors_earlier_click(sandbox_run: LocalRun) -> None:
    """The applications function reads the visitor's session: the anonymous lead of their click becomes
    the applicant's, and no second lead is made (a phone and no e-mail of the module's other leads)."""
    session = "e2e-session-applies"
    with sandbox_run.client() as client:
        click = client.post("/api/v1/messenger-events", json={"channel": "telegram", "session_id": session})
        assert click.status_code == 202, click.text
        wait_for(lambda: SandboxView(sandbox_run).lead_of_session(session), 20, "the click's anonymous lead")
        # The worker records the session's lead after the CRM made it: until then an application waits (202).
        wait_for(sandbox_run.queue_is_empty, 20, "the click's delivery, its session's lead recorded")
        answer = client.post(
            "/api/v1/applications",
            json=APPLICATION | {"phone": "+90 533 111 22 44", "email": None, "session_id": session},
        )

    assert answer.status_code == 201, answer.text
    (lead,) = SandboxView(sandbox_run).leads_of_session(session)
    assert lead.phones == ["+905331112244"]


def test_an_application_brings_the_click_of_its_visitors_partner_link_tap(sandbox_run: LocalRun) -> None:
    """A tap on a partner's /go link starts a session nothing vouches for yet: its click is held beside
    the session, no lead. The visitor's application with that session writes the click onto the
    applicant's lead, and the applications function drops what it held."""
    held_before = sandbox_run.console.count(HELD)  # the run is shared: other tests' taps may be held too
    with sandbox_run.client() as client:
        tap = client.get("/go/telegram", params={"ref": "PARTNER-77"}, headers={"User-Agent": BROWSER})
        assert tap.status_code == 302
        session = tap.cookies["visitor_session"]
        wait_for(lambda: sandbox_run.console.count(HELD) > held_before, 20, "the worker to hold the tap's click")
        wait_for(sandbox_run.queue_is_empty, 20, "the tap's delivery over")
        assert SandboxView(sandbox_run).lead_of_session(session) is None, "nothing shows a person yet"
        answer = client.post(
            "/api/v1/applications",
            json=APPLICATION | {"phone": "+90 533 111 22 55", "email": None, "session_id": session},
        )

    assert answer.status_code == 201, answer.text
    view = SandboxView(sandbox_run)
    (lead,) = [lead for lead in sandbox_leads(sandbox_run) if "+905331112255" in (lead.get("phones") or [])]
    notes = view.notes(lead["id"])
    assert sum("Telegram" in note and "PARTNER-77" in note for note in notes) == 1, notes


def test_the_redirect_answers_302_with_the_code_and_cookies(sandbox_run: LocalRun) -> None:
    with sandbox_run.client() as client:
        answer = client.get(
            "/go/telegram", params={"ref": "PARTNER-42", "utm_source": "partner"}, headers={"User-Agent": BROWSER}
        )

    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert (location.hostname, location.path) == ("t.me", "/crm_bridge_demo_bot")
    assert parse_qs(location.query) == {"start": ["PARTNER-42"]}
    cookies = answer.headers.get_list("set-cookie")
    assert len(cookies) == 2, "each cookie is its own Set-Cookie header"
    assert any(cookie.startswith("ref=PARTNER-42;") for cookie in cookies)
    assert any(cookie.startswith("visitor_session=") for cookie in cookies)


def test_poison_ends_in_the_dead_letter_queue(sandbox_run: LocalRun) -> None:
    """What the CRM refuses (a validation error) and what is no operation at all: parked, with why."""
    store = SandboxStore(sandbox_run.data_dir / "sandbox.sqlite3")
    store.reject_attribute("referral_code")
    try:
        refused = {"channel": "telegram", "session_id": "e2e-poison-0001", "attribution": {"referral_code": "BAD-1"}}
        with sandbox_run.client() as client:
            answer = client.post("/api/v1/messenger-events", json=refused)
        assert answer.status_code == 202
        sandbox_run.aws("sqs").send_message(
            QueueUrl=sandbox_run.state["CRM_QUEUE_URL"], MessageBody='{"not": "an operation"}'
        )

        parked = sandbox_run.dead_letters(
            wait_for_at_least=2,
            until=lambda messages: {"referral_code", "invalid_operation"} <= set(_by_reason(messages)),
        )
    finally:
        store.accept_attribute("referral_code")

    reasons = _by_reason(parked)
    refused_message = reasons["referral_code"]
    assert refused_message["MessageAttributes"]["operation_id"]["StringValue"] == json_body(answer)["operationId"]
    assert refused_message["MessageAttributes"]["error_kind"]["StringValue"] == "permanent"
    assert json.loads(reasons["invalid_operation"]["Body"]) == {"not": "an operation"}, "kept byte for byte"
    assert not any(lead.get("visitor_session_id") == "e2e-poison-0001" for lead in sandbox_leads(sandbox_run))
    wait_for(lambda: "DEAD-LETTERED" in sandbox_run.console, 10, "the console to report the dead letter")


def test_the_operator_inspects_the_dead_letter_queue_of_the_stack(sandbox_run: LocalRun) -> None:
    """``make dlq-inspect STACK=...`` with the operator's rights (the stack's OperatorPolicy): the queues
    from the stack's outputs, the dead letters counted and grouped by reason, and left in place."""
    sandbox_run.aws("sqs").send_message(QueueUrl=sandbox_run.state["CRM_QUEUE_URL"], MessageBody="not an operation")
    wait_for(lambda: sandbox_run.status()["queues"]["dead_letter"]["waiting"], 20, "a dead letter to inspect")
    environment = {name: value for name, value in sandbox_run.state.items() if name.startswith("AWS_")}
    inspected = subprocess.run(  # noqa: S603 - the layer's own command, fixed arguments
        [sys.executable, "-m", "crm_bridge.delivery.dead_letters", "inspect", "--stack", STACK_NAME, "--json"],
        env={"PATH": os.environ["PATH"], **environment},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert (report["visible"], report["sampled"]) == (1, 1), report
    (reason,) = report["reasons"]
    assert (reason["kind"], reason["reason"].split(":")[0]) == ("permanent", "invalid operation")


def test_the_demo_page_and_swagger_ui_are_served_from_here(sandbox_run: LocalRun) -> None:
    with sandbox_run.client() as client:
        page = client.get("/")
        docs = client.get("/docs")
        spec = client.get("/docs", params={"format": "json"})
        bundle = client.get("/docs/swagger-ui-bundle.min.js")
        missing = client.get("/api/v1/nothing-here")

    assert page.status_code == 200
    assert 'id="application-form"' in page.text
    assert all(f'id="go-{channel}"' in page.text for channel in ("telegram", "whatsapp", "instagram"))
    assert docs.status_code == 200
    assert "/docs/swagger-ui-bundle.min.js" in docs.text
    assert "http" not in docs.text.split("<script src=")[1][:10], "no CDN"
    assert set(spec.json()["paths"]) >= {"/api/v1/applications", "/go/{channel}"}
    assert bundle.status_code == 200
    assert len(bundle.content) > 100_000
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})


def test_the_console_shows_operations_but_no_personal_data(sandbox_run: LocalRun) -> None:
    with sandbox_run.client() as client:
        answer = client.post("/api/v1/applications", json=APPLICATION)
    console = sandbox_run.console

    assert "POST /api/v1/applications  received" in console
    assert f"POST /api/v1/applications  201 delivered (op {json_body(answer)['operationId'][:8]})" in console
    for private in PERSONAL_DATA:
        assert private not in console, private


def _by_reason(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Dead letters by their error code, or by the field the CRM refused."""
    return {
        message["MessageAttributes"].get("error_code", {}).get("StringValue")
        or message["MessageAttributes"].get("error_field", {}).get("StringValue", "?"): message
        for message in messages
    }
