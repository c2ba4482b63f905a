"""Real traffic at the edge: previewers and crawlers get the redirect and nothing else, a session the
redirect starts is marked so, cookies cross the agency's hosts, and foreign pages cannot report clicks."""

from __future__ import annotations

import io
from collections.abc import Callable
from types import ModuleType

import pytest

from crm_bridge.models import MessengerClickOperation, parse_operation
from infra.local.http_events import http_api_event
from tests.api.conftest import Answer, Aws, invoke, post
from tests.api.test_messenger_and_redirects import CLICK
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.user_agents import BROWSER

TELEGRAM_PREVIEW = "TelegramBot (like TwitterBot)"
WHATSAPP_PREVIEW = "WhatsApp/2.23.20.0"
FACEBOOK_PREVIEW = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
SCRIPT = "python-requests/2.32.3"


@pytest.fixture
def applications(load_handler: Callable[[str], ModuleType], espocrm: object) -> ModuleType:
    return load_handler("applications_api")


SITE_PAGE = "https://agency.example/programs/medicine"
"""A page of the site (the tests' SITE_ORIGINS)."""


def go(
    redirect: ModuleType,
    *,
    method: str = "GET",
    user_agent: str | None = BROWSER,
    query: str = "",
    cookie: str = "",
    referer: str = "",
) -> Answer:
    headers = {"host": "go.agency.example"}
    if user_agent is not None:
        headers["user-agent"] = user_agent
    if cookie:
        headers["cookie"] = cookie
    if referer:
        headers["referer"] = referer
    event = http_api_event(
        method,
        "/go/whatsapp",
        route_key=f"{method} /go/{{channel}}",
        path_parameters={"channel": "whatsapp"},
        query=query,
        headers=headers,
    )
    return invoke(redirect, event)


@pytest.mark.parametrize(
    ("method", "user_agent", "reason"),
    [
        ("GET", TELEGRAM_PREVIEW, "previewer"),
        ("GET", WHATSAPP_PREVIEW, "previewer"),
        ("GET", FACEBOOK_PREVIEW, "previewer"),
        ("GET", SCRIPT, "script"),
        ("GET", None, "no_user_agent"),
        ("HEAD", BROWSER, "head"),
    ],
)
def test_previews_crawlers_and_scripts_get_the_redirect_but_no_click_and_no_cookie(
    redirect: ModuleType,
    aws: Aws,
    log_output: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    method: str,
    user_agent: str | None,
    reason: str,
) -> None:
    answer = go(redirect, method=method, user_agent=user_agent, query="ref=PARTNER-42")

    assert answer.status == 302
    assert answer.headers["location"].startswith("https://wa.me/905321112233?text=")
    assert "PARTNER-42" in answer.headers["location"], "the preview shows the messenger's page with the code"
    assert answer.cookies == []
    assert aws.queued() == []
    assert f'"reason":"{reason}"' in log_output.getvalue()
    (metric,) = [line for line in capsys.readouterr().out.splitlines() if '"ClicksIgnored"' in line]
    assert f'"reason":"{reason}"' in metric


def clicks(aws: Aws) -> list[MessengerClickOperation]:
    operations = [parse_operation(message["Body"]) for message in aws.queued()]
    assert all(isinstance(operation, MessengerClickOperation) for operation in operations)
    return operations  # type: ignore[return-value]


def session_cookies(answer: Answer) -> list[str]:
    return [cookie.split(";")[0] for cookie in answer.cookies if cookie.startswith("visitor_session=")]


def test_a_session_the_redirect_starts_is_marked_and_a_known_one_is_not(redirect: ModuleType, aws: Aws) -> None:
    fresh = go(redirect, query="ref=PARTNER-42")
    from_cookie = go(redirect, cookie="visitor_session=site-session-0001")
    from_site = go(redirect, query="vs=site-session-0002&utm_source=fb", referer=SITE_PAGE)

    started = {click.payload.session_id: click.payload.session_started for click in clicks(aws)}
    assert started.pop("site-session-0001") is False
    assert started.pop("site-session-0002") is False
    ((minted, is_started),) = started.items()
    assert is_started is True
    assert session_cookies(fresh) == [f"visitor_session={minted}"]
    assert from_cookie.cookies == [], "the session cookie is there already"
    assert from_site.cookies == [], "a session from a link is never stored"


@pytest.mark.parametrize(
    "referer",
    [
        pytest.param("", id="pasted into the address bar"),
        pytest.param("https://partner.example/blog/study-abroad", id="on a partner's page"),
        pytest.param("https://agency.example.evil.example/", id="on a look-alike host"),
        pytest.param("android-app://org.telegram.messenger/", id="tapped in an app"),
    ],
)
def test_a_copied_link_does_not_make_its_opener_the_visitor_whose_session_it_carries(
    redirect: ModuleType, aws: Aws, referer: str
) -> None:
    """ "Copy link" after a tap hands ``vs`` to whoever opens it, and a partner can plant one: outside the
    site's pages the parameter is ignored, and the opener is a new visitor, with a session of their own."""
    answer = go(redirect, query="vs=site-session-0002", referer=referer)

    (click,) = clicks(aws)
    assert click.payload.session_id != "site-session-0002"
    assert click.payload.session_started is True
    assert click.payload.linked_session_id is None
    assert session_cookies(answer) == [f"visitor_session={click.payload.session_id}"]


def test_the_sites_session_and_the_api_hosts_own_are_one_visitor(redirect: ModuleType, aws: Aws) -> None:
    """A partner-link tap left the API host's cookie; the visitor then clicked a button on the site, whose
    snippet put its own session on the link: the click carries both, for the worker to link."""
    answer = go(redirect, query="vs=site-session-0002", cookie="visitor_session=tap-session-0001", referer=SITE_PAGE)

    (click,) = clicks(aws)
    assert (click.payload.session_id, click.payload.linked_session_id) == ("site-session-0002", "tap-session-0001")
    assert click.payload.session_started is False
    assert answer.cookies == [], "the API host keeps its own session; the site's is never stored"


def test_cookies_are_the_shared_domain_s_when_configured(
    load_handler: Callable[[str], ModuleType], aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOKIE_DOMAIN", ".agency.example")
    redirect = load_handler("redirect_api")

    answer = go(redirect, query="ref=PARTNER-42")

    assert {cookie.split("=", 1)[0] for cookie in answer.cookies} == {"ref", "visitor_session"}
    assert all("Domain=.agency.example" in cookie for cookie in answer.cookies)


def test_a_cookie_domain_that_is_no_domain_refuses_to_start(
    load_handler: Callable[[str], ModuleType], aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOKIE_DOMAIN", "https://agency.example/")
    with pytest.raises(Exception, match="COOKIE_DOMAIN"):
        load_handler("redirect_api")


def test_a_click_report_takes_the_session_and_code_from_the_cookies(messenger: ModuleType, aws: Aws) -> None:
    body = {"channel": "instagram"}
    answer = post(
        messenger,
        "/api/v1/messenger-events",
        body,
        headers={"cookie": "visitor_session=site-session-0003; ref=PARTNER-7"},
    )

    assert answer.status == 202
    (message,) = aws.queued()
    operation = parse_operation(message["Body"])
    assert isinstance(operation, MessengerClickOperation)
    assert operation.payload.session_id == "site-session-0003"
    assert operation.payload.referral_code() == "PARTNER-7"


def test_the_body_wins_over_the_cookies(messenger: ModuleType, aws: Aws) -> None:
    answer = post(messenger, "/api/v1/messenger-events", CLICK, headers={"cookie": "visitor_session=other-session-9"})

    assert answer.status == 202
    operation = parse_operation(aws.queued()[0]["Body"])
    assert operation.payload.session_id == "visitor-session-0001"
    assert operation.payload.referral_code() == "PARTNER-42"


def test_a_click_report_without_a_session_anywhere_names_the_field(messenger: ModuleType, aws: Aws) -> None:
    answer = post(messenger, "/api/v1/messenger-events", {"channel": "instagram"})

    assert answer.status == 422
    assert [problem["field"] for problem in answer.body["error"]["fields"]] == ["session_id"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://agency.example.evil.example"])
def test_a_page_of_another_site_cannot_report_clicks(messenger: ModuleType, aws: Aws, origin: str) -> None:
    answer = post(messenger, "/api/v1/messenger-events", CLICK, headers={"origin": origin})

    assert answer.status == 403
    assert answer.body["error"]["code"] == "origin_not_allowed"
    assert aws.queued() == []


@pytest.mark.parametrize("origin", ["https://agency.example", None])
def test_the_site_and_scripts_without_an_origin_may_report_clicks(
    messenger: ModuleType, aws: Aws, origin: str | None
) -> None:
    headers = {"origin": origin} if origin else {}
    assert post(messenger, "/api/v1/messenger-events", CLICK, headers=headers).status == 202


def test_an_application_without_consent_is_refused_naming_it(applications: ModuleType, aws: Aws) -> None:
    answer = post(applications, "/api/v1/applications", {"name": "Deniz Aydın", "phone": "+90 535 222 33 44"})

    assert answer.status == 422
    assert [problem["field"] for problem in answer.body["error"]["fields"]] == ["consent"]
    assert aws.queued() == []


def test_consent_is_optional_where_the_form_does_not_collect_it(
    load_handler: Callable[[str], ModuleType], aws: Aws, espocrm: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENT_REQUIRED", "false")
    applications = load_handler("applications_api")

    answer = post(applications, "/api/v1/applications", {"name": "Deniz Aydın", "phone": "+90 535 222 33 44"})

    assert answer.status == 201


def test_an_application_takes_the_partner_code_from_the_ref_cookie(
    applications: ModuleType, aws: Aws, espocrm: SimulatedEspoCrm
) -> None:
    """The cookie /go set on the shared domain reaches the applications route of the same site."""
    body = {"name": "Deniz Aydın", "phone": "+90 535 222 33 44", "consent": True, "last_touch": {"utm_source": "fb"}}
    answer = post(applications, "/api/v1/applications", body, headers={"cookie": "ref=PARTNER-99"})

    assert answer.status == 201
    (lead,) = espocrm.leads()
    assert (lead["cReferralCode"], lead["cUtmSource"]) == ("PARTNER-99", "fb")


def test_a_code_in_the_body_wins_over_the_ref_cookie(
    applications: ModuleType, aws: Aws, espocrm: SimulatedEspoCrm
) -> None:
    body = {
        "name": "Deniz Aydın",
        "phone": "+90 535 222 33 44",
        "consent": True,
        "first_touch": {"referral_code": "P-1"},
    }
    assert post(applications, "/api/v1/applications", body, headers={"cookie": "ref=PARTNER-99"}).status == 201
    (lead,) = espocrm.leads()
    assert lead["cReferralCode"] == lead["cFirstReferralCode"] == "P-1"
