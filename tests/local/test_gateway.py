"""The gateway turns real HTTP into genuine HTTP API v2 events and Lambda answers back into HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.local.console import Console
from infra.local.functions import Invocation
from infra.local.gateway import Gateway
from infra.local.template import Route


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: Invocation = Invocation(True, {"statusCode": 204}, 1.0)

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        self.events.append(event | {"function": function})
        return self.answer


@pytest.fixture
def served() -> Iterator[tuple[httpx.Client, Recorder, io.StringIO]]:
    recorder, console = Recorder(), io.StringIO()
    routes = [Route("GET", "/go/{channel}", "Redirect"), Route("POST", "/api/v1/files", "Upload")]
    gateway = Gateway(routes, recorder, Console(console), port=0)
    gateway.start()
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as client:
        yield client, recorder, console
    gateway.stop()


def test_a_request_becomes_an_http_api_v2_event(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    client.get("/go/tele%20gram?ref=P-1&utm_source=a&utm_source=b", headers={"Cookie": "ref=OLD; visitor_session=abc"})

    (event,) = recorder.events
    assert event["function"] == "Redirect"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /go/{channel}"
    assert event["rawPath"] == "/go/tele%20gram"
    assert event["pathParameters"] == {"channel": "tele gram"}
    assert event["rawQueryString"] == "ref=P-1&utm_source=a&utm_source=b"
    assert event["queryStringParameters"] == {"ref": "P-1", "utm_source": "a,b"}
    assert event["cookies"] == ["ref=OLD", "visitor_session=abc"]
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "GET"


def test_a_binary_body_arrives_base64_encoded(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    client.post("/api/v1/files", content=b"\x00\xff", headers={"content-type": "application/octet-stream"})
    client.post("/api/v1/files", json={"a": "ç"})

    binary, text = recorder.events
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"
    assert (text["isBase64Encoded"], text["body"]) == (False, '{"a":"ç"}')


def test_the_answer_comes_back_with_every_cookie_and_a_decoded_body(
    served: tuple[httpx.Client, Recorder, io.StringIO],
) -> None:
    client, recorder, console = served
    recorder.answer = Invocation(
        True,
        {
            "statusCode": 302,
            "headers": {"Location": "https://t.me/bot?start=P-1", "Cache-Control": "no-store"},
            "cookies": ["ref=P-1; Path=/; Secure", "visitor_session=xyz; Path=/"],
            "body": base64.b64encode(b"moved").decode(),
            "isBase64Encoded": True,
        },
        1.0,
    )

    answer = client.get("/go/telegram")

    assert answer.status_code == 302
    assert answer.headers["location"] == "https://t.me/bot?start=P-1"
    assert answer.headers.get_list("set-cookie") == ["ref=P-1; Path=/; Secure", "visitor_session=xyz; Path=/"]
    assert answer.content == b"moved"
    assert answer.headers["apigw-requestid"]
    assert "GET /go/telegram  302 redirect to t.me/bot" in console.getvalue()
    assert "P-1" not in console.getvalue().split("redirect to")[1], "the console leaves the query out"


def test_failures_are_answered_as_api_gateway_answers_them(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    recorder.answer = Invocation(False, {"errorType": "ValueError", "errorMessage": "boom"}, 1.0)
    crashed = client.get("/go/telegram")
    recorder.answer = Invocation(False, {"errorType": "Sandbox.Timedout", "errorMessage": "timed out"}, 1.0)
    timed_out = client.get("/go/telegram")
    recorder.answer = Invocation(True, {"plain": "object"}, 1.0)
    inferred = client.get("/go/telegram")
    unknown = client.get("/nothing")
    wrong_method = client.post("/go/telegram", json={})

    assert (crashed.status_code, crashed.json()) == (500, {"message": "Internal Server Error"})
    assert (timed_out.status_code, timed_out.json()) == (503, {"message": "Service Unavailable"})
    assert (inferred.status_code, inferred.json()) == (200, {"plain": "object"})
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not Found"})
    assert wrong_method.status_code == 404
