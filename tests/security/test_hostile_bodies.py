"""Every POST route refuses a hostile body fast, with a JSON 4xx naming the problem, queuing nothing.

tests/api/test_applications.py checks a few of these on the applications route; here every POST route
of the template gets the whole list: oversized, wrong or missing content types, invalid and non-UTF-8
JSON, absurdly nested JSON, and JSON of the wrong shape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from crm_bridge.api.schemas import ErrorBody
from infra.local.http_events import http_api_event
from tests.api.conftest import Answer, invoke
from tests.faults.system import System, running_system

ROUTES = {"/api/v1/applications": "applications", "/api/v1/messenger-events": "messenger"}
FAST_SECONDS = 0.5
MAX_BODY_BYTES = 32_768
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with pytest.MonkeyPatch.context() as env, running_system(env, {}, seed=5) as running:
        yield running


def send(system: System, path: str, body: str | bytes, headers: dict[str, str], **event: Any) -> tuple[Answer, float]:
    """POST exactly these headers (no content type unless given) through the route's real handler."""
    started = time.perf_counter()
    request = http_api_event("POST", path, route_key=f"POST {path}", headers=headers, body=body, **event)
    answer = invoke(getattr(system, ROUTES[path]), request)
    return answer, time.perf_counter() - started


HOSTILE: list[Any] = [
    pytest.param('{"name": "' + "a" * MAX_BODY_BYTES + '"}', JSON, {}, 413, "body_too_large", id="over-the-limit"),
    pytest.param("x" * 6_000_000, JSON, {}, 413, "body_too_large", id="six-megabytes"),
    pytest.param("é" * (MAX_BODY_BYTES // 2 + 1), JSON, {}, 413, "body_too_large", id="over-the-limit-in-utf8-bytes"),
    pytest.param('{"a": 1}', {"content-type": "text/plain"}, {}, 415, "unsupported_media_type", id="text-plain"),
    pytest.param("a=1", {"content-type": "application/x-www-form-urlencoded"}, {}, 415, None, id="form"),
    pytest.param(
        "--b\r\n\r\n--b--", {"content-type": "multipart/form-data; boundary=b"}, {}, 415, None, id="multipart"
    ),
    pytest.param('{"a": 1}', {}, {}, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param('{"a": 1}', {"content-type": ""}, {}, 415, "unsupported_media_type", id="empty-content-type"),
    pytest.param('{"a": 1}', {"content-type": "application/jsonp"}, {}, 415, None, id="lookalike-type"),
    pytest.param("<x/>", {"content-type": "application/xml"}, {}, 415, None, id="xml"),
    pytest.param('{"name": "Ayşe",', JSON, {}, 400, "invalid_json", id="truncated"),
    pytest.param("", JSON, {}, 422, "invalid_request", id="empty"),
    pytest.param("nul", JSON, {}, 400, "invalid_json", id="not-json"),
    pytest.param('{"a": 1} trailing', JSON, {}, 400, "invalid_json", id="trailing-garbage"),
    pytest.param("\ufeff{}", JSON, {}, 400, "invalid_json", id="byte-order-mark"),
    pytest.param(b"\xff\xfe{\x00}\x00", JSON, {}, 400, "invalid_json", id="utf16-not-utf8"),
    pytest.param(b'{"name": "\xc3"}', JSON, {}, 400, "invalid_json", id="broken-utf8"),
    pytest.param("[" * 100_000 + "]" * 100_000, JSON, {}, 413, "body_too_large", id="deep-and-large"),
    pytest.param("[" * 5_000 + "]" * 5_000, JSON, {}, 400, "invalid_json", id="deeply-nested-array"),
    pytest.param('{"a":' * 3_000 + "1" + "}" * 3_000, JSON, {}, 400, "invalid_json", id="deeply-nested-object"),
    pytest.param('{"attribution": ' * 40 + "{}" + "}" * 40, JSON, {}, 400, "invalid_json", id="nested-past-32"),
    pytest.param("[1, 2]", JSON, {}, 422, "invalid_request", id="array"),
    pytest.param('"text"', JSON, {}, 422, "invalid_request", id="string"),
    pytest.param("null", JSON, {}, 422, "invalid_request", id="null"),
    pytest.param('{"consent": NaN, "name": 1e999}', JSON, {}, 422, "invalid_request", id="nan-and-infinity"),
    pytest.param('{"__proto__": {"admin": true}}', JSON, {}, 422, "invalid_request", id="prototype-pollution"),
    pytest.param('{"a": 1}', JSON, {"force_base64": True}, 422, "invalid_request", id="base64-wrong-shape"),
]


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize(("body", "headers", "event", "status", "code"), HOSTILE)
def test_a_hostile_body_is_a_fast_json_4xx_and_queues_nothing(
    system: System,
    path: str,
    body: str | bytes,
    headers: dict[str, str],
    event: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    waiting = system.waiting()

    answer, seconds = send(system, path, body, headers, **event)

    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    error = ErrorBody.model_validate(answer.body).error
    assert code is None or error.code == code
    assert "Traceback" not in str(answer.body)
    assert seconds < FAST_SECONDS
    assert system.waiting() == waiting, "nothing was queued"
