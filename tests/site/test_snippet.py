"""site/crm-bridge.js in a real browser: what it remembers of a visitor's arrivals, what it sends, and
the /go links it decorates (tests/site/conftest.py serves the pages and records the API calls)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

from tests.chromium import needs_chromium
from tests.site.conftest import BARE_SCRIPT, SCRIPT, Site

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = needs_chromium

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
FAST = "{retryDelaysMs: [10, 10, 10]}"
"""Options that make the snippet's retries quick."""


def touches(page: Page) -> dict[str, Any]:
    result = page.evaluate("CrmBridge.touches()")
    assert isinstance(result, dict)
    return result


def stored(context: BrowserContext, site: Site, name: str = "crm_bridge_touch") -> dict[str, Any]:
    """A cookie as the other host (go.agency.test) sees it: the snippet's cookies are domain-wide."""
    cookies = [cookie for cookie in context.cookies(site.url(host="go")) if cookie.get("name") == name]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def touch_cookie(context: BrowserContext, site: Site) -> dict[str, Any]:
    value = json.loads(unquote(stored(context, site)["value"]))
    assert isinstance(value, dict)
    return value


def set_touch_cookie(context: BrowserContext, value: str) -> None:
    context.add_cookies([{"name": "crm_bridge_touch", "value": value, "domain": ".agency.test", "path": "/"}])


def our_cookies(context: BrowserContext) -> list[tuple[str, str]]:
    """The snippet's cookies on every host: (name, domain)."""
    found = [(cookie.get("name", ""), cookie.get("domain", "")) for cookie in context.cookies()]
    return sorted(cookie for cookie in found if cookie[0] in {"crm_bridge_touch", "visitor_session"})


def decorate(page: Page, url: str) -> str:
    result = page.evaluate("(url) => CrmBridge.decorate(url)", url)
    assert isinstance(result, str)
    return result


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def within_seconds(text: str, seconds: float = 30) -> bool:
    return abs(datetime.fromisoformat(text) - datetime.now(UTC)) < timedelta(seconds=seconds)


# ---- first and last touch --------------------------------------------------------------------------------


def test_the_first_touch_stays_while_a_new_tagged_arrival_replaces_the_last(
    site: Site, context: BrowserContext, page: Page
) -> None:
    page.goto(site.url("/?ref=PARTNER-1&utm_source=partner&utm_medium=referral&gclid=Cj0-abc_1"))
    arrival = touches(page)
    first = arrival["first"]
    assert first == {
        "referral_code": "PARTNER-1",
        "utm_source": "partner",
        "utm_medium": "referral",
        "gclid": "Cj0-abc_1",
        "landing_page": site.url("/"),
        "touched_at": first["touched_at"],
    }
    assert within_seconds(first["touched_at"])
    assert arrival["last"] == first, "a first touch is also the last"

    page.goto(site.url("/offers?utm_source=google&utm_campaign=spring&fbclid=fb.1.2"))
    now = touches(page)
    assert now["first"] == first
    assert now["last"] == {
        "utm_source": "google",
        "utm_campaign": "spring",
        "fbclid": "fb.1.2",
        "landing_page": site.url("/offers"),
        "touched_at": now["last"]["touched_at"],
    }

    cookie = stored(context, site)
    assert (cookie["domain"], cookie["path"], cookie["sameSite"], cookie["secure"]) == (
        ".agency.test",
        "/",
        "Lax",
        False,
    )
    expires = datetime.fromtimestamp(cookie["expires"], UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=1)
    assert touch_cookie(context, site) == {"f": now["first"], "l": now["last"]}


def test_internal_page_views_change_neither_touch(site: Site, context: BrowserContext, page: Page) -> None:
    page.goto(site.url("/?ref=PARTNER-2&utm_campaign=autumn"))
    arrival = touches(page)

    page.click("#about")  # an internal referrer, no tags
    page.wait_for_url("**/about")
    assert page.evaluate("document.referrer") == site.url("/?ref=PARTNER-2&utm_campaign=autumn")
    assert touches(page) == arrival
    page.goto(site.url("/contact", host="go"), referer=site.url("/about"))  # another host of the site
    assert touches(page) == arrival
    page.goto(site.url("/programs"))  # typed in: no referrer, no tags
    assert touches(page) == arrival
    assert touch_cookie(context, site) == {"f": arrival["first"], "l": arrival["last"]}


def test_a_first_touch_older_than_its_lifetime_is_replaced_and_a_younger_one_kept(
    site: Site, context: BrowserContext, page: Page
) -> None:
    def old_touch(days: int, code: str) -> str:
        touch = {
            "referral_code": code,
            "landing_page": site.url("/"),
            "touched_at": iso(datetime.now(UTC) - timedelta(days=days)),
        }
        return quote(json.dumps({"f": touch, "l": touch}))

    set_touch_cookie(context, old_touch(80, "STILL-HERE"))
    page.goto(site.url("/?ref=NEWER"))
    assert (touches(page)["first"]["referral_code"], touches(page)["last"]["referral_code"]) == ("STILL-HERE", "NEWER")

    set_touch_cookie(context, old_touch(91, "EXPIRED"))
    page.goto(site.url("/landing?ref=NEWEST"))
    now = touches(page)
    assert now["first"]["referral_code"] == "NEWEST"
    assert now["first"]["landing_page"] == site.url("/landing")
    assert now["last"] == now["first"]


def test_a_direct_first_visit_is_a_first_touch_of_its_landing_page_only(site: Site, page: Page) -> None:
    page.goto(site.url("/welcome?email=someone%40example.com"))  # no tags; its query is not kept
    first = touches(page)["first"]
    assert set(first) == {"landing_page", "touched_at"}
    assert first["landing_page"] == site.url("/welcome")

    page.goto(site.url("/?utm_source=newsletter"))
    assert (touches(page)["first"], touches(page)["last"]["utm_source"]) == (first, "newsletter")


def test_invalid_tags_are_dropped_and_text_is_cleaned_as_the_api_does(site: Site, page: Page) -> None:
    query = {
        "ref": "bad code!",
        "utm_source": "x" * 300,
        "utm_medium": "  cpc\t ",
        "utm_campaign": "spring\u202e  \u200bsale",
        "utm_term": "Cafe\u0301",  # decomposed: NFC makes it one character
        "utm_content": "\u200e\u200f",  # nothing left: absent
        "gclid": "has space",
        "msclkid": "ms-1.2_3~",
        "fbclid": "x" * 513,
    }
    page.goto(site.url("/?" + urlencode(query)))
    last = touches(page)["last"]
    assert {key: value for key, value in last.items() if key not in {"landing_page", "touched_at"}} == {
        "utm_medium": "cpc",
        "utm_campaign": "spring sale",
        "utm_term": "Café",
        "msclkid": "ms-1.2_3~",
    }


def test_a_referrer_is_remembered_only_from_outside_the_site_and_without_its_query(site: Site, page: Page) -> None:
    page.goto(site.url("/?ref=PARTNER-3"))
    first = touches(page)["first"]

    page.goto(site.url("/blog"), referer="http://partner.example/reviews/top-agencies?email=a%40b.c")
    referred = touches(page)
    assert referred["first"] == first
    assert referred["last"] == {
        # Playwright's referer is the page's document.referrer whole: the snippet drops its query.
        "referrer": "http://partner.example/reviews/top-agencies",
        "landing_page": site.url("/blog"),
        "touched_at": referred["last"]["touched_at"],
    }

    page.goto(site.url("/fees"), referer=site.url("/blog?x=1", host="go"))
    assert touches(page) == referred


def test_the_rules_match_the_api(page: Page, site: Site) -> None:
    page.goto(site.url("/"))
    results = page.evaluate(
        """() => {
        const r = CrmBridge.rules;
        const now = new Date("2024-05-01T12:00:00Z");
        const touch = r.touchFromLocation(
          "https://www.agency.com/p/?ref=%20P-1%20&utm_source=a%00b%7Fc%C2%85d%EF%BB%BF&gclid=g&wbraid=w+x",
          "https://news.example.org/item/1?token=secret#top", now, "agency.com");
        const internal = r.touchFromLocation("https://www.agency.com/", "https://blog.agency.com/a", now, "agency.com");
        const old = {touched_at: "2024-01-01T00:00:00.000Z", referral_code: "OLD"};
        return {
          touch, internal,
          codes: ["P_1", "-P", "x".repeat(64), "x".repeat(65), " ok ", "ş"].map(r.validReferralCode),
          clicks: ["a.b~c-d_e", "a b", "", "x".repeat(512), "x".repeat(513)].map(r.validClickId),
          texts: ["  a \\n\\t b  ", "\\u2066x\\u2069", "\\ufeff", "e\\u0301", "🇹🇷 ok", "é".repeat(255),
                  "é".repeat(256)].map((t) => r.cleanText(t)),
          kept: r.mergeTouches({f: old, l: old}, internal, now, 150),
          expired: r.mergeTouches({f: old, l: old}, internal, now, 90),
          delays: [["3", 500], ["3600", 500], [null, 500], ["soon", 700],
                   ["Wed, 01 May 2024 12:00:04 GMT", 500]].map(([h, f]) => r.retryDelayMs(h, f, now.getTime())),
        };
      }"""
    )
    assert results["touch"] == {
        "referral_code": "P-1",
        "utm_source": "abcd",
        "gclid": "g",
        "landing_page": "https://www.agency.com/p/",
        "referrer": "https://news.example.org/item/1",
        "touched_at": "2024-05-01T12:00:00.000Z",
    }
    assert results["internal"] == {"landing_page": "https://www.agency.com/", "touched_at": "2024-05-01T12:00:00.000Z"}
    assert results["codes"] == ["P_1", None, "x" * 64, None, "ok", None]
    assert results["clicks"] == ["a.b~c-d_e", None, None, "x" * 512, None]
    assert results["texts"] == ["a b", "x", None, "é", "🇹🇷 ok", "é" * 255, None]
    assert results["kept"]["f"]["referral_code"] == "OLD", "not attributed: the first touch stays"
    assert results["expired"]["f"] == results["expired"]["l"] == results["internal"]
    assert results["delays"] == [3000, 10000, 500, 700, 4000]


# ---- the cookies -------------------------------------------------------------------------------------------


def test_the_touch_cookie_stays_under_3500_bytes_shedding_click_ids_first(
    site: Site, context: BrowserContext, page: Page
) -> None:
    clicks = {name: name[0] * 450 for name in ("gclid", "fbclid", "msclkid", "ttclid")}
    page.goto(site.url("/?" + urlencode({"ref": "BIG", "utm_source": "ads", **clicks})))
    assert len(stored(context, site)["value"]) <= 3500
    now = touches(page)
    assert not set(clicks) & set(now["first"]), "the first touch's click ids go first"
    assert now["first"]["referral_code"] == now["last"]["referral_code"] == "BIG"
    assert {name: now["last"][name] for name in clicks} == clicks

    every_click = ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "yclid", "ctwa_clid")
    page.goto(site.url("/?" + urlencode({"utm_source": "huge", **dict.fromkeys(every_click, "z" * 512)})))
    assert len(stored(context, site)["value"]) <= 3500
    now = touches(page)
    assert now["first"]["referral_code"] == "BIG"
    assert now["last"]["utm_source"] == "huge"
    assert not set(every_click) & set(now["last"])


@pytest.mark.parametrize(
    "corrupt",
    [
        "not-json",
        "%E0%A4%A",  # not even percent-decodable
        quote(json.dumps({"f": {"referral_code": "NO-TIME"}})),
        quote(json.dumps({"f": "text", "l": 42})),
        quote(json.dumps([1, 2])),
        quote("null"),
    ],
)
def test_a_corrupt_touch_cookie_is_ignored(site: Site, context: BrowserContext, page: Page, corrupt: str) -> None:
    set_touch_cookie(context, corrupt)
    page.goto(site.url("/?ref=FRESH"))
    now = touches(page)
    assert now["first"]["referral_code"] == "FRESH"
    assert touch_cookie(context, site) == {"f": now["first"], "l": now["last"]}


def test_the_visitor_session_is_created_once_and_shared_by_the_sites_hosts(
    site: Site, context: BrowserContext, page: Page
) -> None:
    page.goto(site.url("/"))
    session = page.evaluate("CrmBridge.sessionId()")
    assert SESSION_ID.fullmatch(session)
    cookie = stored(context, site, "visitor_session")
    assert (cookie["value"], cookie["domain"], cookie["sameSite"]) == (session, ".agency.test", "Lax")
    expires = datetime.fromtimestamp(cookie["expires"], UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=365))) < timedelta(minutes=1)

    page.goto(site.url("/about?ref=X1"))
    page.goto(site.url("/", host="go"))
    assert page.evaluate("CrmBridge.sessionId()") == session

    context.clear_cookies()
    context.add_cookies([{"name": "visitor_session", "value": "bad!", "domain": ".agency.test", "path": "/"}])
    page.goto(site.url("/"))
    replaced = page.evaluate("CrmBridge.sessionId()")
    assert SESSION_ID.fullmatch(replaced)
    assert replaced != session
    assert stored(context, site, "visitor_session")["value"] == replaced


def test_a_page_may_configure_the_snippet_itself_and_configure_it_again(
    site: Site, context: BrowserContext, page: Page
) -> None:
    def cookies(host: str) -> list[tuple[str, str, str]]:
        found = context.cookies(site.url(host=host))
        return sorted((c.get("name", ""), c.get("domain", ""), c.get("value", "")) for c in found)

    page.goto(site.url("/bare/init/?ref=SELF"))  # the page's init() comes before the capture
    assert touches(page)["first"]["referral_code"] == "SELF"
    cookie = stored(context, site)
    expires = datetime.fromtimestamp(cookie["expires"], UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert [name for name, _, _ in cookies("www")] == ["crm_bridge_touch", "visitor_session"], "one of each"

    context.clear_cookies()
    page.goto(site.url("/bare/?ref=HOST-ONLY"))  # no configuration at all: host-only cookies, by default
    page.wait_for_function("document.cookie.includes('visitor_session')")
    session = page.evaluate("CrmBridge.sessionId()")
    assert cookies("go") == []
    assert [(name, domain) for name, domain, _ in cookies("www")] == [
        ("crm_bridge_touch", "www.agency.test"),
        ("visitor_session", "www.agency.test"),
    ]
    page.evaluate("CrmBridge.init({cookieDomain: 'agency.test'})")  # moved to the domain, the same values
    assert [(name, domain) for name, domain, _ in cookies("www")] == [
        ("crm_bridge_touch", ".agency.test"),
        ("visitor_session", ".agency.test"),
    ]
    assert touches(page)["first"]["referral_code"] == "HOST-ONLY"
    assert stored(context, site, "visitor_session")["value"] == session


def test_a_host_only_cookie_from_before_the_cookie_domain_gives_way_to_one_on_the_domain(
    site: Site, context: BrowserContext, page: Page
) -> None:
    def touch(days: int, **tags: str) -> dict[str, str]:
        return {**tags, "landing_page": site.url("/"), "touched_at": iso(datetime.now(UTC) - timedelta(days=days))}

    first = touch(80, referral_code="FIRST")
    older, newer = {"f": first, "l": touch(60, utm_source="stale")}, {"f": first, "l": touch(2, utm_source="recent")}
    for host_only, domain in ((older, newer), (newer, older)):
        context.clear_cookies()
        context.add_cookies(  # the host-only ones first, as a site that added data-cookie-domain later has them
            [
                {"name": "crm_bridge_touch", "value": quote(json.dumps(host_only)), "url": site.url()},
                {"name": "visitor_session", "value": "host-only-session", "url": site.url()},
                {"name": "crm_bridge_touch", "value": quote(json.dumps(domain)), "domain": ".agency.test", "path": "/"},
                {"name": "visitor_session", "value": "domain-session", "domain": ".agency.test", "path": "/"},
            ]
        )
        page.goto(site.url("/programs"))  # typed in: nothing new
        assert touches(page) == {"first": first, "last": newer["l"]}
        assert page.evaluate("CrmBridge.sessionId()") == "host-only-session", "the session the site has used"
        assert our_cookies(context) == [
            ("crm_bridge_touch", ".agency.test"),
            ("visitor_session", ".agency.test"),
        ]
        assert touch_cookie(context, site) == newer
        assert stored(context, site, "visitor_session")["value"] == "host-only-session"

        page.goto(site.url("/?utm_source=comeback"))  # the returning visitor's new arrival
        page.goto(site.url("/fees"))
        assert touches(page)["last"]["utm_source"] == "comeback"
        assert touch_cookie(context, site)["l"]["utm_source"] == "comeback"


# ---- consent ----------------------------------------------------------------------------------------------------

CONSENT_REQUIRED = {
    "data-consent": SCRIPT.replace("<script ", '<script data-consent="required" '),
    "init": BARE_SCRIPT + '<script>CrmBridge.init({cookieDomain: ".agency.test", consent: "required"});</script>',
}


def without_time(touch: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in touch.items() if key != "touched_at"}


@pytest.mark.parametrize("head", CONSENT_REQUIRED.values(), ids=CONSENT_REQUIRED)
def test_with_consent_required_nothing_is_stored_until_the_visitor_consents(
    site: Site, context: BrowserContext, page: Page, head: str
) -> None:
    site.head = head

    def stored_nothing() -> bool:
        return context.cookies() == [] and page.evaluate("localStorage.length + sessionStorage.length") == 0

    page.goto(site.url("/apply?utm_source=partner&ref=P-C"))
    arrival = touches(page)
    assert (arrival["first"]["referral_code"], arrival["first"]["utm_source"]) == ("P-C", "partner")
    assert arrival["last"] == arrival["first"]
    session = page.evaluate("CrmBridge.sessionId()")
    assert SESSION_ID.fullmatch(session)
    assert stored_nothing()

    page.evaluate("CrmBridge.submitApplication({name: 'Deniz', consent: true}, {consentVersion: 'privacy-2024-05'})")
    [call] = site.api_calls("/api/v1/applications")
    assert {
        key: call.body.get(key) for key in ("session_id", "first_touch", "last_touch", "consent", "consent_version")
    } == {
        "session_id": session,
        "first_touch": arrival["first"],
        "last_touch": arrival["last"],
        "consent": True,
        "consent_version": "privacy-2024-05",
    }
    assert within_seconds(call.body["consent_at"])
    assert call.body["consent_page"] == site.url("/apply")
    assert parse_qs(urlsplit(decorate(page, "/go/telegram")).query)["vs"] == [session], "no cookie takes it to /go"
    assert stored_nothing()

    page.evaluate("CrmBridge.consent(true)")
    cookie = touch_cookie(context, site)
    assert [without_time(cookie["f"]), without_time(cookie["l"])] == [without_time(arrival["first"])] * 2
    assert stored(context, site, "visitor_session")["value"] == session
    assert page.evaluate("CrmBridge.sessionId()") == session

    context.add_cookies([{"name": "visitor_session", "value": session, "url": site.url()}])  # a host-only one too
    page.evaluate("CrmBridge.consent(false)")
    assert our_cookies(context) == []
    assert touches(page)["first"]["referral_code"] == "P-C", "the page goes on in memory"
    page.evaluate("CrmBridge.submitApplication({name: 'Deniz'})")
    assert our_cookies(context) == []


def test_with_consent_required_the_cookies_are_not_even_read_until_the_visitor_consents(
    site: Site, context: BrowserContext, page: Page
) -> None:
    site.head = CONSENT_REQUIRED["data-consent"]
    earlier = {
        "referral_code": "EARLIER",
        "landing_page": site.url("/"),
        "touched_at": iso(datetime.now(UTC) - timedelta(days=9)),
    }
    set_touch_cookie(context, quote(json.dumps({"f": earlier, "l": earlier})))  # from a page where they consented
    context.add_cookies(
        [{"name": "visitor_session", "value": "consented-session", "domain": ".agency.test", "path": "/"}]
    )

    page.goto(site.url("/?utm_source=newsletter"))
    arrival = touches(page)
    assert (arrival["first"]["utm_source"], arrival["last"]) == ("newsletter", arrival["first"])
    assert page.evaluate("CrmBridge.sessionId()") != "consented-session"

    page.evaluate("CrmBridge.consent(true)")  # the banner, on this page too: its stored choice says accepted
    now = touches(page)
    assert (now["first"], without_time(now["last"])) == (earlier, without_time(arrival["last"]))
    assert page.evaluate("CrmBridge.sessionId()") == "consented-session"
    assert touch_cookie(context, site) == {"f": earlier, "l": now["last"]}


# ---- applications --------------------------------------------------------------------------------------------


def test_an_application_carries_the_fields_touches_session_and_consent(site: Site, page: Page) -> None:
    page.goto(site.url("/apply?ref=PARTNER-9&utm_source=partner"))
    result = page.evaluate(
        """CrmBridge.submitApplication(
          {name: "  Deniz Aydın ", email: "deniz@example.com", phone: "  ", message: "", program: "MSc",
           consent: true, extra: "not sent"},
          {consentVersion: "privacy-2024-05"})"""
    )
    assert result["status"] == 201
    assert result["body"]["status"] == "received"
    [call] = site.api_calls("/api/v1/applications")
    now = touches(page)
    body = call.body
    assert body == {
        "name": "Deniz Aydın",
        "email": "deniz@example.com",
        "program": "MSc",
        "session_id": page.evaluate("CrmBridge.sessionId()"),
        "first_touch": now["first"],
        "last_touch": now["last"],
        "consent": True,
        "consent_version": "privacy-2024-05",
        "consent_at": body["consent_at"],
        "consent_page": site.url("/apply"),
    }
    assert body["first_touch"]["referral_code"] == "PARTNER-9"
    assert within_seconds(body["consent_at"])
    assert call.headers["content-type"] == "application/json"
    assert IDEMPOTENCY_KEY.fullmatch(call.headers["idempotency-key"])

    page.evaluate("CrmBridge.init({consentVersion: 'privacy-2025-01'})")  # init again: overrides
    page.evaluate("CrmBridge.submitApplication({name: 'Ayşe', phone: '+90 532 000 00 00', consent: true})")
    page.evaluate("CrmBridge.submitApplication({name: 'Ali', phone: '+90 532 000 00 01', consent: false})")
    _, with_version, without_consent = site.api_calls("/api/v1/applications")
    assert with_version.body["consent_version"] == "privacy-2025-01"
    assert with_version.headers["idempotency-key"] != call.headers["idempotency-key"]
    assert not {"consent", "consent_version", "consent_at", "consent_page"} & set(without_consent.body)


@pytest.mark.parametrize("failure", [503, 502, 504, 429, "drop"])
def test_an_unanswered_application_is_retried_with_the_same_key_and_body(
    site: Site, page: Page, failure: int | str
) -> None:
    page.goto(site.url("/"))
    site.answer(failure, 201)
    result = page.evaluate(f"CrmBridge.submitApplication({{name: 'Deniz', email: 'd@example.com'}}, {FAST})")
    assert result["status"] == 201
    first, second = site.api_calls("/api/v1/applications")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body


def test_a_refused_application_is_not_retried(site: Site, page: Page) -> None:
    page.goto(site.url("/"))
    site.answer(422)
    result = page.evaluate(f"CrmBridge.submitApplication({{name: 'Deniz'}}, {FAST})")
    assert (result["status"], result["body"]) == (422, {"error": "refused"})
    assert len(site.api_calls("/api/v1/applications")) == 1


def test_retrying_stops_after_four_attempts(site: Site, page: Page) -> None:
    page.goto(site.url("/"))
    site.answer(503, 503, 503, 503)
    assert page.evaluate(f"CrmBridge.submitApplication({{name: 'Deniz'}}, {FAST})")["status"] == 503
    assert len(site.api_calls("/api/v1/applications")) == 4

    site.answer("drop", "drop", "drop", "drop", 201)
    outcome = page.evaluate(
        f"CrmBridge.submitApplication({{name: 'Deniz'}}, {FAST}).then(() => 'resolved', (e) => e.constructor.name)"
    )
    assert outcome == "Error"
    assert len(site.api_calls("/api/v1/applications")) == 8


def test_retry_after_is_waited_for(site: Site, page: Page) -> None:
    page.goto(site.url("/"))
    site.answer((503, {"Retry-After": "1"}), 201)
    waited = page.evaluate(
        f"""async () => {{
          const start = performance.now();
          await CrmBridge.submitApplication({{name: 'Deniz'}}, {FAST});
          return performance.now() - start;
        }}"""
    )
    assert 950 <= waited < 5000


def test_an_attached_form_reports_its_answer_and_resends_an_unanswered_submission_as_it_was(
    site: Site, page: Page
) -> None:
    page.goto(site.url("/?ref=FORM-1"))
    page.evaluate(
        f"""() => {{
          window.outcomes = [];
          const form = document.querySelector("#apply");
          form.addEventListener("crm-bridge:result", (e) => outcomes.push({{status: e.detail.status}}));
          form.addEventListener("crm-bridge:error", (e) => outcomes.push({{error: e.detail.error.message}}));
          CrmBridge.attachForm(form, {FAST});
        }}"""
    )
    page.fill("input[name=name]", "Deniz Aydın")
    page.fill("input[name=email]", "deniz@example.com")
    page.check("input[name=consent]")

    def submit(*answers: int | str) -> dict[str, Any]:
        count = page.evaluate("outcomes.length")
        site.answer(*answers)
        page.click("#submit")
        page.wait_for_function(f"outcomes.length > {count}")
        outcome = page.evaluate("outcomes[outcomes.length - 1]")
        assert isinstance(outcome, dict)
        return outcome

    def keys() -> list[str]:
        return [call.headers["idempotency-key"] for call in site.api_calls("/api/v1/applications")]

    assert submit("drop", "drop", "drop", "drop")["error"].startswith("crm-bridge:")
    assert submit(201) == {"status": 201}
    calls = site.api_calls("/api/v1/applications")
    assert len(set(keys())) == 1, "the resubmission after no answer is the same submission"
    assert all(call.body == calls[0].body for call in calls), "sent as it was, consent time and all"
    body = calls[0].body
    assert (body["name"], body["email"], body["consent"], body["consent_version"]) == (
        "Deniz Aydın",
        "deniz@example.com",
        True,
        "privacy-2024-05",
    )
    assert body["first_touch"]["referral_code"] == "FORM-1"
    assert page.url == site.url("/?ref=FORM-1"), "the form did not navigate"

    assert submit(201) == {"status": 201}
    assert keys()[-1] != keys()[-2], "answered: a new submission"

    assert submit(503, 503, 503, 503) == {"status": 503}
    assert submit(201) == {"status": 201}
    assert keys()[-1] == keys()[-2], "a 503 after every attempt: the same submission"

    assert submit(503, 503, 503, 503) == {"status": 503}
    page.fill("input[name=email]", "deniz.aydin@example.com")
    assert submit(201) == {"status": 201}
    assert keys()[-1] != keys()[-2], "other fields: another submission (the API refuses a key with another body)"


# ---- messenger links and clicks -----------------------------------------------------------------------------


def test_go_links_carry_the_visitors_tags(site: Site, page: Page) -> None:
    page.goto(site.url("/?ref=P-7&utm_source=google&utm_campaign=spring&gclid=g.1"))
    page.click("#about")
    page.wait_for_url("**/about")

    # The API is this host, in the cookie domain: the session goes to /go as its cookie, not on the link.
    decorated = urlsplit(decorate(page, "/go/telegram"))
    assert (decorated.netloc, decorated.path) == (f"www.agency.test:{site.port}", "/go/telegram")
    assert parse_qs(decorated.query) == {
        "ref": ["P-7"],
        "utm_source": ["google"],
        "utm_campaign": ["spring"],
        "gclid": ["g.1"],
    }
    own = parse_qs(urlsplit(decorate(page, site.url("/go/whatsapp?utm_source=newsletter&ref=OWN"))).query)
    assert own == {
        "ref": ["OWN"],
        "utm_source": ["newsletter"],
        "utm_campaign": ["spring"],
        "gclid": ["g.1"],
    }
    for untouched in ("/about", "/go/email", site.url("/go/telegram", host="go"), "mailto:x@example.com"):
        assert decorate(page, untouched) == untouched

    page.evaluate(  # added after the snippet ran: the capturing listener still sees the click
        "document.body.insertAdjacentHTML('beforeend', '<a id=late href=\"/go/instagram?ref=LINK\"><b>Instagram</b></a>')"
    )
    page.click("#late b")
    page.wait_for_url("**/go/instagram?**")
    [followed] = [seen for seen in site.pages() if seen.path.startswith("/go/instagram")]
    assert parse_qs(urlsplit(followed.path).query) == {
        "ref": ["LINK"],
        "utm_source": ["google"],
        "utm_campaign": ["spring"],
        "gclid": ["g.1"],
    }

    page.goto(site.url("/?utm_source=bing"))  # a later arrival without ref: the first touch's ref
    assert parse_qs(urlsplit(decorate(page, "/go/telegram")).query) == {
        "ref": ["P-7"],
        "utm_source": ["bing"],
    }


def test_the_session_goes_on_go_links_only_where_its_cookie_cannot_reach_the_api(site: Site, page: Page) -> None:
    api = f"http://go.agency.test:{site.port}"

    def vs(options: dict[str, str]) -> list[str]:
        page.evaluate("(options) => CrmBridge.init(options)", options)
        return parse_qs(urlsplit(decorate(page, f"{api}/go/telegram")).query).get("vs", [])

    page.goto(site.url("/"))
    session = page.evaluate("CrmBridge.sessionId()")
    assert vs({"api": api}) == [], "go.agency.test is in the cookie domain (.agency.test)"
    page.goto(site.url("/bare/"))  # host-only cookies, on www.agency.test
    assert vs({"api": api}) == [session]
    assert vs({"api": ""}) == [], "the API on this host has the host-only cookie"


def test_a_go_link_with_the_session_sends_the_sites_origin_as_referer_whatever_the_pages_policy(
    site: Site, page: Page
) -> None:
    api = f"http://go.agency.test:{site.port}"
    site.head = f'<meta name="referrer" content="no-referrer"><script src="/crm-bridge.js" data-api="{api}"></script>'
    page.goto(site.url("/?ref=P-R"))
    page.click("#about")
    page.wait_for_url("**/about")
    [about] = [seen for seen in site.pages() if seen.path == "/about"]
    assert "referer" not in about.headers, "the page's own policy holds for its other links"

    session = page.evaluate("CrmBridge.sessionId()")

    for channel, decorated_by_the_page in (("telegram", False), ("whatsapp", True)):
        page.goto(site.url("/about"))
        page.evaluate(
            """([url, decorated]) => document.body.append(Object.assign(document.createElement("a"),
              {id: "go", textContent: "Go", href: decorated ? CrmBridge.decorate(url) : url}))""",
            [f"{api}/go/{channel}", decorated_by_the_page],
        )
        page.click("#go")
        page.wait_for_url(f"{api}/go/{channel}?**")
        [followed] = [seen for seen in site.pages() if seen.path.startswith(f"/go/{channel}")]
        assert followed.host == f"go.agency.test:{site.port}"
        assert parse_qs(urlsplit(followed.path).query) == {"ref": ["P-R"], "vs": [session]}
        assert followed.headers.get("referer") == site.url("/"), "/go takes vs only with a Referer of the site"


def test_a_reported_click_carries_the_page_touches_and_session_and_no_lead_id(site: Site, page: Page) -> None:
    page.goto(site.url("/contact?ref=P-8&fbclid=fb.9"))
    # leadId is no option: a lead id any caller could send would write onto another person's lead.
    result = page.evaluate(f"CrmBridge.reportClick('whatsapp', {{leadId: 'L-1', ...{FAST}}})")
    assert result["status"] == 201
    [call] = site.api_calls("/api/v1/messenger-events")
    now = touches(page)
    assert call.body == {
        "channel": "whatsapp",
        "session_id": page.evaluate("CrmBridge.sessionId()"),
        "page": site.url("/contact"),
        "occurred_at": call.body["occurred_at"],
        "first_touch": now["first"],
        "last_touch": now["last"],
    }
    assert within_seconds(call.body["occurred_at"])
    assert IDEMPOTENCY_KEY.fullmatch(call.headers["idempotency-key"])
    assert call.headers["content-type"] == "application/json"
