"""Partner and messenger redirects: where ``/go/{channel}`` leads, what it remembers, what it queues.

The target host comes only from configuration; the request contributes at most a validated
referral code, placed in a query parameter. Tags from the query that fail validation are dropped
rather than refused: the visitor is redirected whatever the link looked like.

Plain Python (with Powertools' cookie type): the redirect is the cold start visitors feel most, and
pydantic with the event handler would take it to ~1.5x of what sending one SQS message costs
(docs/performance.md). The rules are the shared ones (``crm_bridge.normalization``), the click is
the envelope the worker validates (``crm_bridge.envelope``), and the settings are checked at
start-up like every other function's, each bad variable named.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from crm_bridge.api.crawlers import automated_reason
from crm_bridge.api.http import REF_COOKIE, SESSION_COOKIE, HttpProblem, HttpRequest
from crm_bridge.envelope import Channel, Origin, QueueMessage, click_message
from crm_bridge.errors import SettingsError
from crm_bridge.normalization import SESSION_ID_PATTERN, page_location, valid_attribution_tags

REF_COOKIE_MAX_AGE = 30 * 24 * 3600
SESSION_COOKIE_MAX_AGE = 365 * 24 * 3600
DEFAULT_WHATSAPP_TEXT = "Hello! I would like to know more about studying abroad."
DEFAULT_WHATSAPP_REF_SUFFIX = " My code: {ref}"

QUERY_TAGS = {
    "ref": "referral_code",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "utm_id": "utm_id",
    **{click_id: click_id for click_id in ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "yclid")},
    "ctwa_clid": "ctwa_clid",
}
"""Query parameters a link may carry, and the attribution tag each one fills."""
SESSION_QUERY = "vs"
"""The site's visitor session, added to ``/go`` links by the website snippet where the API's host
cannot read the site's cookie (an ``execute-api`` host, or no ``CookieDomain``). A link can be copied
and shared: the parameter counts only for a click made on one of the site's pages (its ``Referer``),
and it is never stored (:func:`click_sessions`)."""

_WHATSAPP_NUMBER = re.compile(r"[1-9]\d{6,14}")
_COOKIE_DOMAIN = re.compile(r"\.?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
_MAX_URL_LENGTH = 2083


@dataclass(frozen=True)
class RedirectTargets:
    """Where the /go/{channel} links lead. Only configuration decides the host: no open redirect."""

    telegram_url: str
    """Telegram bot link; the referral code goes in ?start="""
    whatsapp_number: str
    """Digits only, with country code"""
    whatsapp_text: str
    """Prefilled message"""
    whatsapp_ref_suffix: str
    """Appended when there is a referral code; {ref} is the code"""
    instagram_url: str


@dataclass(frozen=True)
class RedirectSettings:
    queue_url: str
    dead_letter_queue_url: str
    targets: RedirectTargets
    cookie_domain: str | None = None
    """``.agency.com``: the cookies /go sets are the whole site's, so the site's pages and the API on
    another host of that domain read them (None: the API's host only)."""
    site_origins: tuple[str, ...] = ()
    """The site's origins (``SITE_ORIGINS``): a ``vs`` parameter counts only on a click from their pages."""


def _https_url_problem(url: str) -> str | None:
    if not url:
        return "is not set"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or len(url) > _MAX_URL_LENGTH:
        return "must be an https:// URL"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "must be an https:// URL without spaces or control characters"
    return None


def load_redirect_settings(environ: Mapping[str, str] | None = None) -> RedirectSettings:
    """The redirect's settings from the environment; SettingsError names every bad variable."""
    env = os.environ if environ is None else environ
    names = (
        "CRM_QUEUE_URL",
        "CRM_DLQ_URL",
        "REDIRECT_TELEGRAM_URL",
        "REDIRECT_WHATSAPP_NUMBER",
        "REDIRECT_INSTAGRAM_URL",
    )
    values = {name: env.get(name, "") for name in names}
    cookie_domain = env.get("COOKIE_DOMAIN", "").strip().lower() or None
    text = env.get("REDIRECT_WHATSAPP_TEXT") or DEFAULT_WHATSAPP_TEXT
    suffix = env.get("REDIRECT_WHATSAPP_REF_SUFFIX") or DEFAULT_WHATSAPP_REF_SUFFIX
    checks = {
        "CRM_QUEUE_URL": None if values["CRM_QUEUE_URL"] else "is not set",
        "CRM_DLQ_URL": None if values["CRM_DLQ_URL"] else "is not set",
        "REDIRECT_TELEGRAM_URL": _https_url_problem(values["REDIRECT_TELEGRAM_URL"]),
        "REDIRECT_WHATSAPP_NUMBER": None
        if _WHATSAPP_NUMBER.fullmatch(values["REDIRECT_WHATSAPP_NUMBER"])
        else "must be the number's 7-15 digits with the country code and nothing else, e.g. 905321112233",
        "REDIRECT_WHATSAPP_TEXT": None if len(text) <= 500 else "must be at most 500 characters",
        "REDIRECT_WHATSAPP_REF_SUFFIX": None
        if len(suffix) <= 100 and "{ref}" in suffix
        else "must be at most 100 characters and contain {ref}",
        "REDIRECT_INSTAGRAM_URL": _https_url_problem(values["REDIRECT_INSTAGRAM_URL"]),
        "COOKIE_DOMAIN": None
        if cookie_domain is None or (_COOKIE_DOMAIN.fullmatch(cookie_domain) and len(cookie_domain) <= 253)
        else "must be a domain name such as .agency.com (the site's and the API's common domain)",
    }
    problems = [f"{name}: {problem}" for name, problem in checks.items() if problem]
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    return RedirectSettings(
        queue_url=values["CRM_QUEUE_URL"],
        dead_letter_queue_url=values["CRM_DLQ_URL"],
        targets=RedirectTargets(
            telegram_url=values["REDIRECT_TELEGRAM_URL"],
            whatsapp_number=values["REDIRECT_WHATSAPP_NUMBER"],
            whatsapp_text=text,
            whatsapp_ref_suffix=suffix,
            instagram_url=values["REDIRECT_INSTAGRAM_URL"],
        ),
        cookie_domain=cookie_domain,
        site_origins=tuple(
            origin.strip().rstrip("/").lower() for origin in env.get("SITE_ORIGINS", "").split(",") if origin.strip()
        ),
    )


def target_url(channel: Channel, referral_code: str | None, targets: RedirectTargets) -> str:
    match channel:
        case Channel.TELEGRAM:
            base = targets.telegram_url
            return f"{base}?{urlencode({'start': referral_code})}" if referral_code else base
        case Channel.WHATSAPP:
            text = targets.whatsapp_text
            if referral_code:
                text += targets.whatsapp_ref_suffix.replace("{ref}", referral_code)
            return f"https://wa.me/{targets.whatsapp_number}?{urlencode({'text': text})}"
        case Channel.INSTAGRAM:
            return targets.instagram_url


def ref_cookie(referral_code: str, domain: str | None = None) -> Cookie:
    return _cookie(REF_COOKIE, referral_code, REF_COOKIE_MAX_AGE, domain, http_only=True)


def session_cookie(session_id: str, domain: str | None = None) -> Cookie:
    """Readable by the site's script, which reports messenger clicks with the same session id."""
    return _cookie(SESSION_COOKIE, session_id, SESSION_COOKIE_MAX_AGE, domain, http_only=False)


def _cookie(name: str, value: str, max_age: int, domain: str | None, *, http_only: bool) -> Cookie:
    """Site-wide, HTTPS-only, sent on top-level navigation from other sites (a partner's link)."""
    return Cookie(
        name=name,
        value=value,
        path="/",
        domain=domain or "",
        secure=True,
        http_only=http_only,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )


def referring_page(referer: str) -> str | None:
    """The page the link was on, without its query (which may carry personal data)."""
    path = urlsplit(referer).path if referer.startswith(("http://", "https://")) else ""
    return page_location(path) if path else None


@dataclass(frozen=True)
class Redirect:
    location: str
    cookies: list[Cookie]
    click: QueueMessage | None
    """The click, for the worker to note on the visitor's lead; None when no person made it."""
    not_a_person: str | None = None
    """Why nothing is recorded (``crm_bridge.api.crawlers``): previewer, crawler, script, head, ..."""


@dataclass(frozen=True)
class ClickSessions:
    """Whose click this is: the site's session (a ``vs`` from one of its pages), the API host's own
    (its cookie, set by an earlier ``/go``), both (one visitor: the worker links them), or neither."""

    site: str | None
    own: str | None

    def linked(self) -> str | None:
        """The API host's session when the site's is the click's: the worker makes them one visitor."""
        return self.own if self.site is not None and self.own not in (None, self.site) else None


def click_sessions(request: HttpRequest, site_origins: tuple[str, ...]) -> ClickSessions:
    """The sessions a request carries. ``vs`` counts only when the link was followed from a page of
    the site (``Referer``, which a browser sets and a page of another site cannot forge): a copied
    link, opened by someone else or planted by a partner, carries no Referer of the site, so it
    cannot put that person's clicks on the visitor whose session it holds."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    own = cookie if SESSION_ID_PATTERN.fullmatch(cookie) else None
    query = request.query.get(SESSION_QUERY, "")
    site = query if SESSION_ID_PATTERN.fullmatch(query) and _from_site(request, site_origins) else None
    return ClickSessions(site=site, own=own)


def _from_site(request: HttpRequest, site_origins: tuple[str, ...]) -> bool:
    """Whether the request was a navigation from one of the site's pages, or from a page of the API's
    own host (a site served beside the API)."""
    referer = urlsplit(request.headers.get("referer") or "")
    if referer.scheme not in ("http", "https") or not referer.netloc:
        return False
    origin = f"{referer.scheme}://{referer.netloc}".lower()
    return origin in site_origins or referer.netloc.lower() == (request.headers.get("host") or "").lower()


def plan_redirect(request: HttpRequest, settings: RedirectSettings) -> Redirect:
    """Where the visitor goes, the cookies to set, the click to queue; 404 for an unknown channel."""
    channel_name = request.path_parameters.get("channel", "")
    if channel_name not in Channel.__members__.values():
        raise HttpProblem(404, "not_found", "unknown channel; use telegram, whatsapp or instagram")
    channel = Channel(channel_name)
    automated = automated_reason(request.method, request.headers.get("user-agent"))
    from_query = valid_attribution_tags({"referral_code": request.query.get("ref")}).get("referral_code")
    from_cookie = valid_attribution_tags({"referral_code": request.cookies.get(REF_COOKIE)}).get("referral_code")
    referral_code = from_query or from_cookie
    tags = {QUERY_TAGS[name]: value for name, value in request.query.items() if name in QUERY_TAGS}
    location = target_url(channel, referral_code, settings.targets)
    if automated is not None:  # a preview shows the messenger's page; no cookies, nothing queued
        return Redirect(location, [], None, not_a_person=automated)
    attribution = valid_attribution_tags(tags | {"referral_code": referral_code})
    sessions = click_sessions(request, settings.site_origins)
    known = sessions.site or sessions.own
    session_id = known or secrets.token_urlsafe(16)
    click = click_message(
        channel=channel,
        session_id=session_id,
        last_touch=attribution,
        page=referring_page(request.headers.get("referer") or ""),
        occurred_at=datetime.now(UTC),
        origin=Origin.REDIRECT,
        correlation_id=request.request_id,
        session_started=known is None,
        linked_session_id=sessions.linked(),
    )
    domain = settings.cookie_domain
    cookies = [ref_cookie(from_query, domain)] if from_query else []
    if known is None:  # only a session /go made itself becomes a cookie, never one from a link
        cookies.append(session_cookie(session_id, domain))
    return Redirect(location, cookies, click)
