"""Messenger clicks and partner redirects: queued at once, the visitor never kept waiting."""

from __future__ import annotations

import io
from types import ModuleType
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest

from crm_bridge.models import MessengerClickOperation, parse_operation
from infra.local.http_events import http_api_event
from tests.api.conftest import Answer, Aws, invoke, post
from tests.user_agents import BROWSER

CLICK = {
    "channel": "telegram",
    "session_id": "visitor-session-0001",
    "page": "/programs/medicine",
    "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram"},
}


def test_a_click_is_queued_for_the_worker(messenger: ModuleType, aws: Aws) -> None:
    answer = post(messenger, "/api/v1/messenger-events", CLICK)

    assert answer.status == 202
    assert answer.body["status"] == "queued"
    (message,) = aws.queued()
    operation = parse_operation(message["Body"])
    assert isinstance(operation, MessengerClickOperation)
    assert str(operation.operation_id) == answer.body["operationId"]
    assert operation.payload.session_id == "visitor-session-0001"
    assert operation.payload.referral_code() == "PARTNER-42"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "viber"}, "channel"),
        ({"session_id": "x"}, "session_id"),
        ({"page": "javascript:alert(1)"}, "page"),
        ({"lead_id": "../../etc"}, "lead_id"),
    ],
)
def test_an_invalid_click_is_refused_by_field(
    messenger: ModuleType, aws: Aws, change: dict[str, str], field: str
) -> None:
    answer = post(messenger, "/api/v1/messenger-events", {**CLICK, **change})

    assert answer.status == 422
    assert [problem["field"] for problem in answer.body["error"]["fields"]] == [field]
    assert aws.queued() == []


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({"session_started": True}, id="the redirect started the session"),
        pytest.param({"linked_session_id": "someone-elses-01"}, id="a second session of this visitor"),
        pytest.param({"lead_id": "6b0244fec9dffa4c4"}, id="the lead to write onto"),
    ],
)
def test_what_only_the_redirect_knows_cannot_be_claimed_by_a_caller(
    messenger: ModuleType, aws: Aws, claim: dict[str, object]
) -> None:
    """A caller who could say "the redirect started this session" made each click held, and past the
    held clicks' limit every further one a dead letter; one who could name a lead wrote onto anyone's."""
    answer = post(messenger, "/api/v1/messenger-events", {**CLICK, **claim})

    assert answer.status == 422
    assert [problem["field"] for problem in answer.body["error"]["fields"]] == list(claim)
    assert aws.queued() == []


@pytest.mark.parametrize("key", ["", "two words", "x" * 129, "ключ"])
def test_a_malformed_idempotency_key_is_refused_by_name(messenger: ModuleType, aws: Aws, key: str) -> None:
    answer = post(messenger, "/api/v1/messenger-events", CLICK, headers={"Idempotency-Key": key})

    assert answer.status == 422
    assert [problem["field"] for problem in answer.body["error"]["fields"]] == ["header.idempotency-key"]
    assert aws.queued() == []


def test_the_same_idempotency_key_is_the_same_click(messenger: ModuleType, aws: Aws) -> None:
    first = post(messenger, "/api/v1/messenger-events", CLICK, headers={"Idempotency-Key": "click-7d2f9c"})
    retry = post(messenger, "/api/v1/messenger-events", CLICK, headers={"Idempotency-Key": "click-7d2f9c"})

    assert first.body["operationId"] == retry.body["operationId"], "the worker delivers it once"


def test_a_click_that_cannot_be_queued_is_a_503(messenger: ModuleType, aws: Aws) -> None:
    boto3.client("sqs").delete_queue(QueueUrl=aws.queue_url)

    answer = post(messenger, "/api/v1/messenger-events", CLICK)

    assert answer.status == 503
    assert answer.body["error"]["code"] == "temporarily_unavailable"


def go(redirect: ModuleType, path: str, query: str = "", cookie: str = "", referer: str = "") -> Answer:
    headers = {"host": "api.agency.example", "user-agent": BROWSER}
    if cookie:
        headers["cookie"] = cookie
    if referer:
        headers["referer"] = referer
    channel = path.rsplit("/", 1)[-1]
    event = http_api_event(
        "GET", path, route_key="GET /go/{channel}", path_parameters={"channel": channel}, query=query, headers=headers
    )
    return invoke(redirect, event)


def cookie_named(answer: Answer, name: str) -> str:
    (cookie,) = [cookie for cookie in answer.cookies if cookie.startswith(f"{name}=")]
    return cookie


def test_telegram_carries_the_referral_code_and_sets_the_cookies(redirect: ModuleType, aws: Aws) -> None:
    answer = go(redirect, "/go/telegram", "ref=PARTNER-42&utm_source=partner&utm_campaign=autumn&gclid=abc.123")

    assert answer.status == 302
    assert answer.headers["location"] == "https://t.me/agency_bot?start=PARTNER-42"
    ref = cookie_named(answer, "ref")
    assert ref.startswith("ref=PARTNER-42;")
    for attribute in ("Path=/", "Max-Age=2592000", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attribute in ref
    session = cookie_named(answer, "visitor_session")
    assert "HttpOnly" not in session, "the site's script reports clicks with this session id"
    (message,) = aws.queued()
    operation = parse_operation(message["Body"])
    assert isinstance(operation, MessengerClickOperation)
    assert operation.payload.last_touch is not None
    assert operation.payload.last_touch.referral_code == "PARTNER-42"
    assert operation.payload.last_touch.utm_campaign == "autumn"
    assert operation.payload.last_touch.gclid == "abc.123"
    assert session.startswith(f"visitor_session={operation.payload.session_id};")


def test_whatsapp_prefills_the_message_with_the_code(redirect: ModuleType, aws: Aws) -> None:
    answer = go(redirect, "/go/whatsapp", "ref=PARTNER-42")

    target = urlsplit(answer.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "wa.me", "/905321112233")
    assert parse_qs(target.query)["text"][0].endswith("My code: PARTNER-42")


def test_the_code_comes_from_the_cookie_when_the_link_has_none(redirect: ModuleType, aws: Aws) -> None:
    answer = go(redirect, "/go/telegram", cookie="ref=PARTNER-7; visitor_session=known-session-01")

    assert answer.headers["location"] == "https://t.me/agency_bot?start=PARTNER-7"
    assert answer.cookies == [], "neither cookie needs setting again"
    assert parse_operation(aws.queued()[0]["Body"]).payload.session_id == "known-session-01"


def test_an_invalid_code_is_ignored_not_refused(redirect: ModuleType, aws: Aws) -> None:
    answer = go(redirect, "/go/telegram", "ref=" + quote("<script>alert(1)</script>"), cookie="ref=PARTNER-7")

    assert answer.status == 302
    assert answer.headers["location"] == "https://t.me/agency_bot?start=PARTNER-7"
    assert not [cookie for cookie in answer.cookies if cookie.startswith("ref=")]


@pytest.mark.parametrize(
    "query",
    [
        "ref=" + quote("https://evil.example"),
        "ref=" + quote("//evil.example"),
        "ref=" + quote("x\r\nLocation: https://evil.example"),
        "next=https://evil.example&url=//evil.example&redirect_uri=https://evil.example",
        "ref=" + quote("a@evil.example"),
    ],
)
def test_nothing_in_the_request_chooses_the_host(redirect: ModuleType, aws: Aws, query: str) -> None:
    for channel, host in (("telegram", "t.me"), ("whatsapp", "wa.me"), ("instagram", "www.instagram.com")):
        answer = go(redirect, f"/go/{channel}", query)
        assert answer.status == 302
        assert urlsplit(answer.headers["location"]).netloc == host
        assert "\n" not in answer.headers["location"]
        assert "evil" not in answer.headers["location"]


def test_an_unknown_channel_is_a_404(redirect: ModuleType, aws: Aws) -> None:
    answer = go(redirect, "/go/viber", "ref=PARTNER-42")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "not_found"
    assert aws.queued() == []


def test_the_visitor_is_redirected_even_when_the_queue_is_down(
    redirect: ModuleType, aws: Aws, log_output: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("sqs").delete_queue(QueueUrl=aws.queue_url)

    answer = go(redirect, "/go/instagram", "ref=PARTNER-42", referer="https://agency.example/programs?email=a@b.co")

    assert answer.status == 302
    assert answer.headers["location"] == "https://www.instagram.com/agency"
    logged = log_output.getvalue()
    assert "sealed for recovery" in logged
    assert "a@b.co" not in logged, "the referring page's query is not kept"
    assert '"RedirectClickNotQueued":[1.0]' in capsys.readouterr().out, "the metric an alarm can watch"
