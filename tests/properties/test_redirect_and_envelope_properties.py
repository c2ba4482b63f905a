"""No input moves a redirect off its configured host; any valid operation survives the queue."""

from __future__ import annotations

from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from crm_bridge.api.redirects import lenient_attribution, ref_cookie, target_url
from crm_bridge.api.settings import load_api_settings, require_redirect_targets
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

TARGETS = require_redirect_targets(
    load_api_settings(
        {
            "CRM_QUEUE_URL": "q",
            "CRM_DLQ_URL": "d",
            "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
            "REDIRECT_WHATSAPP_NUMBER": "905321112233",
            "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
        }
    )
)
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
    code = (
        lenient_attribution({"referral_code": ref}).referral_code
        or lenient_attribution({"referral_code": cookie_ref}).referral_code
    )
    attribution = lenient_attribution({"referral_code": code, **tags})
    location = target_url(channel, attribution.referral_code, TARGETS)

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
