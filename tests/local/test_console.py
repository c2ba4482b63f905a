"""What the console of ``make run`` says about an answer: only what the answer and the functions' own
lines show (not a click it cannot know was queued, nor a lead the answer does not name)."""

from __future__ import annotations

import io
import json

from infra.local.console import Console


def test_a_declined_click_is_not_said_to_be_queued() -> None:
    """The redirect answers a previewer as it answers a person; its own log line says it declined."""
    stream = io.StringIO()
    console = Console(stream, colour=False)
    declined = {"level": "INFO", "message": "click not recorded: not a person", "reason": "previewer"}

    console.function_output("RedirectFunction", "stdout", json.dumps(declined))
    console.answered("GET", "/go/telegram", 302, {"location": "https://t.me/bot?start=P-1"}, b"", 3.0)

    assert "click not recorded: not a person  [reason previewer]" in stream.getvalue()
    assert "GET /go/telegram  302 redirect to t.me/bot (3 ms)" in stream.getvalue()
    assert "queued" not in stream.getvalue()


def test_an_application_in_the_crm_is_shown_by_its_operation() -> None:
    """The application's answer names no lead: the console shows what it has, the operation."""
    stream = io.StringIO()
    body = json.dumps({"status": "received", "operationId": "6f1c1f3e-0000-4000-8000-000000000001"}).encode()

    Console(stream, colour=False).answered("POST", "/api/v1/applications", 201, {}, body, 812.0)

    assert "POST /api/v1/applications  201 delivered (op 6f1c1f3e) (812 ms)" in stream.getvalue()
    assert "lead" not in stream.getvalue()
