"""No input moves a redirect off its configured host; any valid operation survives the queue; the
redirect's plain-Python rules and envelope agree with the pydantic models on every input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.api.redirects import load_redirect_settings, ref_cookie, target_url
from crm_bridge.envelope import click_message
from crm_bridge.errors import SettingsError
from crm_bridge.models import (
    Application,
    Attribution,
    Channel,
    MessengerActivity,
    MessengerClickOperation,
    Origin,
    UpsertLeadOperation,
    dump_operation,
    parse_operation,
)
from crm_bridge.models.attribution import Touch
from crm_bridge.normalization import ATTRIBUTION_RULES, page_location, valid_attribution_tags

TARGETS = load_redirect_settings(
    {
        "CRM_QUEUE_URL": "q",
        "CRM_DLQ_URL": "d",
        "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
        "REDIRECT_WHATSAPP_NUMBER": "905321112233",
        "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
    }
).targets
HOSTS = {Channel.TELEGRAM: "t.me", Channel.WHATSAPP: "wa.me", Channel.INSTAGRAM: "www.instagram.com"}
HOSTILE = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["https://evil.example", "//evil.example", "x\r\nSet-Cookie: a=b", "a@evil.example", "%0d%0a"]),
)


@given(
    channel=st.sampled_from(list(Channel)),
    ref=HOSTILE,
    cookie_ref=HOSTILE,
    tags=st.dictionaries(
        st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "gclid", "fbclid"]), HOSTILE, max_size=5
    ),
)
def test_no_input_changes_the_redirect_host_or_injects_a_header(
    channel: Channel, ref: str, cookie_ref: str, tags: dict[str, str]
) -> None:
    code = valid_attribution_tags({"referral_code": ref}).get("referral_code") or valid_attribution_tags(
        {"referral_code": cookie_ref}
    ).get("referral_code")
    attribution = valid_attribution_tags({"referral_code": code, **tags})
    location = target_url(channel, attribution.get("referral_code"), TARGETS)

    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc) == ("https", HOSTS[channel])
    assert not any(char in location for char in "\r\n\x00 ")
    if code:
        cookie = ref_cookie(code)
        assert not any(char in str(cookie) for char in "\r\n")
        assert str(cookie).startswith(f"ref={code};")


APPLICATIONS = st.builds(
    lambda name, phone, email, message, ref: {
        "name": name,
        "phone": phone,
        "email": email,
        "message": message,
        "consent": True,
        "attribution": {"referral_code": ref},
    },
    name=st.sampled_from(["Ayşe Yılmaz", "Иван", "Zoë", "محمد"]),
    phone=st.sampled_from(["+905321234567", "0532 123 45 67", "+1 202 555 0143", None]),
    email=st.sampled_from(["a@b.co", "Jane.Doe@Example.com"]),
    message=st.text(max_size=500),
    ref=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
)


@given(APPLICATIONS)
def test_any_valid_application_operation_round_trips_through_the_queue(data: dict[str, object]) -> None:
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=Application.model_validate(data))
    assert parse_operation(dump_operation(operation)) == operation


@given(
    channel=st.sampled_from(list(Channel)),
    session=st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
    page=st.one_of(st.none(), st.from_regex(r"/[a-z0-9/_-]{0,50}", fullmatch=True)),
    campaign=st.one_of(st.none(), st.text(max_size=100)),
)
def test_any_valid_click_operation_round_trips_through_the_queue(
    channel: Channel, session: str, page: str | None, campaign: str | None
) -> None:
    activity = MessengerActivity(
        channel=channel, session_id=session, page=page, attribution=Attribution(utm_campaign=campaign)
    )
    operation = MessengerClickOperation(origin=Origin.REDIRECT, payload=activity)
    assert parse_operation(dump_operation(operation)) == operation


TAG_VALUES = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="ascii"), max_size=80),
    # Lone surrogates too: an event's JSON can carry one as a \ud800 escape (hypothesis leaves them out by default).
    st.text(alphabet=st.characters(exclude_categories=()), max_size=80),
    st.builds(
        lambda before, half, after: before + half + after, st.text(), st.characters(categories=["Cs"]), st.text()
    ),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.builds(lambda pad, text: pad + text + pad, st.sampled_from(["", " ", "\t", "\u200b", "\ufeff"]), st.text()),
    st.integers(min_value=4090, max_value=4100).map(lambda n: " " * (n - 3) + "abc"),
)


def test_the_rules_cover_the_attribution_model_field_by_field() -> None:
    assert tuple(ATTRIBUTION_RULES) == tuple(Attribution.model_fields)


@given(name=st.sampled_from(list(ATTRIBUTION_RULES)), value=TAG_VALUES)
def test_the_redirects_tag_rules_agree_with_the_attribution_model(name: str, value: str) -> None:
    """What the redirect keeps of a tag is exactly what the model would accept, normalised alike."""
    try:
        expected = Attribution.model_validate({name: value}).present()
    except ValidationError:
        expected = {}
    assert valid_attribution_tags({name: value}) == expected


PAGES = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"/[!-~]{0,60}", fullmatch=True),
    st.builds(lambda n: "/" + "a" * n, st.integers(min_value=2040, max_value=2050)),
)


@given(page=PAGES)
def test_the_redirects_page_rule_agrees_with_the_messenger_model(page: str) -> None:
    try:
        expected = MessengerActivity(channel=Channel.TELEGRAM, session_id="session-0001", page=page).page
    except ValidationError:
        expected = None
    assert page_location(page) == (expected or None)


@given(
    channel=st.sampled_from(list(Channel)),
    session=st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),
    page=st.one_of(st.none(), st.from_regex(r"/[!-~]{0,50}", fullmatch=True)),
    tags=st.dictionaries(st.sampled_from(list(ATTRIBUTION_RULES)), TAG_VALUES, max_size=15),
    correlation_id=st.one_of(st.none(), st.text(min_size=1, max_size=128)),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_the_redirects_click_is_the_envelope_the_models_write(
    channel: Channel,
    session: str,
    page: str | None,
    tags: dict[str, str],
    correlation_id: str | None,
    moment: datetime,
) -> None:
    attribution = valid_attribution_tags(tags)
    message = click_message(
        channel=channel,
        session_id=session,
        last_touch=attribution,
        page=page,
        occurred_at=moment,
        origin=Origin.REDIRECT,
        correlation_id=correlation_id,
    )
    queued = parse_operation(message.body)  # whatever the redirect queues, the worker reads, every tag kept
    assert isinstance(queued, MessengerClickOperation)
    assert (queued.payload.last_touch.tags() if queued.payload.last_touch else {}) == attribution
    modelled = MessengerClickOperation(
        operation_id=UUID(message.operation_id),
        created_at=moment,
        origin=Origin.REDIRECT,
        correlation_id=correlation_id,
        payload=MessengerActivity(
            channel=channel,
            session_id=session,
            page=page,
            occurred_at=moment,
            last_touch=Touch(**attribution) if attribution else None,
        ),
    )

    assert message.body == modelled.model_dump_json(), "byte for byte what pydantic writes"
    assert parse_operation(message.body) == modelled
    assert message.attributes() == modelled.message().attributes()


def test_a_click_truncates_an_overlong_request_id_instead_of_failing() -> None:
    message = click_message(
        channel=Channel.TELEGRAM,
        session_id="session-0001",
        last_touch={},
        page=None,
        occurred_at=datetime.now(UTC),
        origin=Origin.REDIRECT,
        correlation_id="r" * 500,
    )
    assert len(json.loads(message.body)["correlation_id"]) == 128
    parse_operation(message.body)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("REDIRECT_TELEGRAM_URL", "http://t.me/agency_bot", "REDIRECT_TELEGRAM_URL: must be an https:// URL"),
        ("REDIRECT_INSTAGRAM_URL", "", "REDIRECT_INSTAGRAM_URL: is not set"),
        ("REDIRECT_WHATSAPP_NUMBER", "+90 532", "REDIRECT_WHATSAPP_NUMBER: must be the number's 7-15 digits"),
        ("REDIRECT_WHATSAPP_REF_SUFFIX", "code:", "REDIRECT_WHATSAPP_REF_SUFFIX: must be at most 100 characters"),
        ("CRM_QUEUE_URL", "", "CRM_QUEUE_URL: is not set"),
    ],
)
def test_redirect_settings_name_each_bad_variable(variable: str, value: str, problem: str) -> None:
    environment = {
        "CRM_QUEUE_URL": "q",
        "CRM_DLQ_URL": "d",
        "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
        "REDIRECT_WHATSAPP_NUMBER": "905321112233",
        "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
    }
    with pytest.raises(SettingsError, match="invalid configuration: ") as refused:
        load_redirect_settings(environment | {variable: value})
    assert problem in str(refused.value)
    assert value not in str(refused.value) or not value, "the value itself is not echoed"
