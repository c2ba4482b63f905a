"""Properties through the real code paths: the redirect function's answer, and SQS itself.

test_redirect_and_envelope_properties.py checks the pieces (``target_url``, ``dump_operation``); here
the same promises hold end to end: whatever a link carries, the real ``/go/{channel}`` handler answers
a 302 to the configured host (or a JSON 404) with no header or cookie an attacker shaped; and any valid
operation, sent to the queue (moto) and received back, is the operation that was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.delivery import OperationQueue
from crm_bridge.models import (
    Application,
    MessengerActivity,
    MessengerClickOperation,
    Operation,
    Origin,
    UpsertLeadOperation,
    parse_operation,
)
from infra.local.http_events import http_api_event
from tests.api.conftest import invoke
from tests.aws_setup import iam_set_aside
from tests.faults.system import System, running_system
from tests.user_agents import BROWSER

HOSTS = {"telegram": "t.me", "whatsapp": "wa.me", "instagram": "www.instagram.com"}
HOSTILE = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            "https://evil.example/",
            "//evil.example",
            "PARTNER-1\r\nSet-Cookie: admin=1",
            "PARTNER-1\r\nLocation: https://evil.example",
            "%0d%0aSet-Cookie:%20a=b",
            "a@evil.example",
            "PARTNER-1; Domain=evil.example",
            "\u202eelpmaxe.live",
            "../../etc/passwd",
        ]
    ),
)
SAFE_COOKIE = re.compile(r"(ref|visitor_session)=[A-Za-z0-9_-]+; .*")
SQS_FORBIDDEN = re.compile("[\ufffe\uffff\ud800-\udfff]")


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    with pytest.MonkeyPatch.context() as env, running_system(env, {}, seed=3) as running:
        yield running


@given(
    channel=st.one_of(st.sampled_from(list(HOSTS)), HOSTILE.filter(lambda text: "/" not in text)),
    query=st.dictionaries(
        st.sampled_from(["ref", "utm_source", "utm_campaign", "gclid", "fbclid", "next", "redirect"]), HOSTILE
    ),
    cookie_ref=HOSTILE,
    session=HOSTILE,
    referer=HOSTILE,
)
def test_the_redirect_handler_cannot_be_steered_or_made_to_set_a_header(
    system: System, channel: str, query: dict[str, str], cookie_ref: str, session: str, referer: str
) -> None:
    headers = {
        "host": "api.agency.example",
        "cookie": f"ref={cookie_ref}; visitor_session={session}",
        "referer": referer,
        "user-agent": BROWSER,
    }
    event = http_api_event(
        "GET",
        f"/go/{channel}",
        route_key="GET /go/{channel}",
        path_parameters={"channel": channel},
        query=urlencode(query),
        headers=headers,
    )

    answer = invoke(system.redirect, event)

    values = [*answer.headers.values(), *answer.cookies]
    assert not [value for value in values if any(char in value for char in "\r\n\x00")], values
    if channel not in HOSTS:
        assert answer.status == 404
        assert answer.body["error"]["code"] == "not_found"
        return
    assert answer.status == 302
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc) == ("https", HOSTS[channel])
    assert all(SAFE_COOKIE.fullmatch(cookie) for cookie in answer.cookies), answer.cookies


TEXT = st.text(max_size=200)
APPLICATIONS = st.fixed_dictionaries(
    {"name": st.one_of(TEXT, st.sampled_from(["Ayşe Yılmaz", "İsmail Çağlar", "محمد علي", "Zoë 👩\u200d🎓"]))},
    optional={
        "phone": st.sampled_from(["+905321234567", "0532 123 45 67", "+7 916 123-45-67", "+1 202 555 0143"]),
        "email": st.sampled_from(["ayse@example.com", "Jane.Doe@Example.COM", "ivan@пример.рф"]),
        "user_type": st.sampled_from(["student", "parent", "other"]),
        "preferred_language": st.sampled_from(["tr", "en", "ru", "pt-br"]),
        "program": TEXT,
        "university": TEXT,
        "message": st.text(max_size=2000),
        "consent": st.booleans(),
        "session_id": st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
        "attribution": st.fixed_dictionaries(
            {},
            optional={
                "referral_code": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True),
                "utm_source": TEXT,
                "utm_campaign": TEXT,
                "gclid": st.from_regex(r"[A-Za-z0-9_\-.~]{1,100}", fullmatch=True),
            },
        ),
    },
)
CLICKS = st.fixed_dictionaries(
    {
        "channel": st.sampled_from(list(HOSTS)),
        "session_id": st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
    },
    optional={
        "lead_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "page": st.from_regex(r"/[!-~]{0,100}", fullmatch=True),
        "occurred_at": st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
        "attribution": st.fixed_dictionaries({}, optional={"utm_term": TEXT, "utm_content": TEXT}),
    },
)


def operation_from(kind: str, data: dict[str, Any]) -> Operation | None:
    try:
        if kind == "application":
            return UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=Application.model_validate(data))
        return MessengerClickOperation(origin=Origin.MESSENGER_API, payload=MessengerActivity.model_validate(data))
    except ValidationError:
        return None


@pytest.fixture(scope="module")
def queue(system: System) -> OperationQueue:
    """A queue of its own (the redirects above left their clicks on the operations queue), which no
    role of the stack may touch: made and used with IAM set aside."""
    with iam_set_aside():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="round-trip")["QueueUrl"]
    return OperationQueue(url, system.aws.dlq_url, client=sqs)


@given(st.one_of(APPLICATIONS.map(lambda data: ("application", data)), CLICKS.map(lambda data: ("click", data))))
def test_any_valid_operation_comes_back_from_sqs_unchanged(
    system: System, queue: OperationQueue, sent: tuple[str, dict[str, Any]]
) -> None:
    operation = operation_from(*sent)
    if operation is None:
        return

    with iam_set_aside():
        queue.enqueue(operation)
        sqs = queue.client
        (message,) = sqs.receive_message(QueueUrl=queue.queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=0)[
            "Messages"
        ]
        sqs.delete_message(QueueUrl=queue.queue_url, ReceiptHandle=message["ReceiptHandle"])

    assert not SQS_FORBIDDEN.search(message["Body"]), "SQS accepts no such character"
    assert parse_operation(message["Body"]) == operation
    assert message["MessageAttributes"]["operation_id"]["StringValue"] == str(operation.operation_id)
    assert json.loads(message["Body"])["kind"] == operation.kind.value
