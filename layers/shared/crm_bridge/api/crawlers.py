"""Who fetched a ``/go/{channel}`` link: a person, or a link previewer, crawler or script.

Partners paste these links into messengers and social networks, whose previewers fetch them, and
crawlers follow them; each still gets its 302, but only a person's click may become a lead. The User-
Agent is a claim anyone can copy: this keeps honest machines out of the CRM, it is not a defence.

Cheap on purpose: the redirect is the cold start visitors feel most. Substring checks answer first
(the previewers partners' links meet, HTTP libraries: ~0.2 ms to import, a few microseconds a call),
and a plain browser ends the check there. Only what is left (an unusual User-Agent, or a browser's
with a bot's hints) meets crawlerdetect's list (JayBizzle/Crawler-Detect, 1,400+ patterns), imported
then: its regular expression takes ~25 ms to compile, which a person's request never pays.
"""

from __future__ import annotations

import re
from typing import Final

_PREVIEWERS: Final = (
    "telegrambot",
    "facebookexternalhit",
    "facebot",
    "facebookcatalog",
    "meta-externalfetcher",
    "slackbot",
    "slack-imgproxy",
    "twitterbot",
    "linkedinbot",
    "discordbot",
    "skypeuripreview",
    "microsoftpreview",
    "googlebot",
    "google-inspectiontool",
    "apis-google",
    "google-read-aloud",
    "googleother",
    "bingbot",
    "bingpreview",
    "msnbot",
    "applebot",
    "yadirectfetcher",
    "baiduspider",
    "duckduckbot",
    "duckassistbot",
    "pinterestbot",
    "redditbot",
    "embedly",
    "vkshare",
    "line-poker",
    "snap url preview",
    "snapurlpreview",
    "cardyb",
    "zoombot",
    "kakaotalk-scrap",
    "google favicon",
)
"""Previewers and search engines' bots, by their own tokens (lower case). Apps whose in-app browsers
are people carry other ones: Telegram-Android/, Instagram, FBAN/FB_IAB/MetaIAB, Line/, Snapchat/,
KAKAOTALK. Google's favicon fetcher is a plain Chrome's User-Agent with ``Google Favicon`` after it."""

_PREVIEWER_STARTS: Final = ("whatsapp/", "pinterest/", "viber", "mastodon/", "http.rb/")
"""Previewers known by how their User-Agent starts: [Pinterest/iOS] elsewhere is its in-app browser."""

_YANDEX: Final = re.compile(r"\byandex(?!search/)\w*/")
"""YandexBot/, YandexMobileBot/, YandexImages/...; YandexSearch/ is the Yandex app's browser."""

_SCRIPTS: Final = (
    "curl/",
    "wget/",
    "python-requests/",
    "python-httpx/",
    "python-urllib/",
    "aiohttp/",
    "go-http-client/",
    "okhttp/",
    "libwww-perl/",
    "node-fetch",
    "axios/",
    "postmanruntime/",
    "scrapy/",
    "apache-httpclient/",
    "headlesschrome",
    "chrome-lighthouse",
    "powershell/",
)
"""HTTP libraries, shells and headless browsers: a program, whatever it was after (and ``java/...``
first). Lighthouse (PageSpeed Insights) appends ``Chrome-Lighthouse`` to a plain Chrome's User-Agent;
PowerShell's ``Invoke-WebRequest`` sends ``PowerShell/7...`` or ``WindowsPowerShell/5.1...``."""

_BROWSER_STARTS: Final = tuple(
    f"mozilla/5.0 ({platform}"
    for platform in ("windows nt", "macintosh", "x11", "linux", "android", "iphone", "ipad", "ipod")
)
_BROWSER_ENGINES: Final = (") applewebkit/", ") gecko/")
"""How every mainstream browser, and the in-app browsers, start their User-Agent."""

_BOT_HINTS: Final = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "scrap",
    "preview",
    "fetch",
    "archiv",
    "headless",
    "http:",
    "https:",
    "compatible",
    "@",
)
"""What a crawler dressed as a browser appends: ``(compatible; XBot/1.0; +https://...)``."""


def automated_reason(method: str, user_agent: str | None) -> str | None:
    """Why the request is not a person's click, or None when it is one.

    ``"head"`` (a HEAD request, whatever it claims), ``"no_user_agent"`` (missing or blank),
    ``"previewer"`` (the named previewers and search engines), ``"script"`` (HTTP libraries,
    headless browsers), ``"crawler"`` (the long tail, from crawlerdetect's list).
    """
    if method.upper() == "HEAD":
        return "head"
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "no_user_agent"
    if (
        any(token in agent for token in _PREVIEWERS)
        or agent.startswith(_PREVIEWER_STARTS)
        or ("yandex" in agent and _YANDEX.search(agent))
    ):
        return "previewer"
    if agent.startswith("java/") or any(token in agent for token in _SCRIPTS):
        return "script"
    if _plain_browser(agent):
        return None
    return "crawler" if _listed_crawler(agent) else None


def _plain_browser(agent: str) -> bool:
    """A mainstream browser's User-Agent (lower case) with nothing a crawler appends."""
    return (
        agent.startswith(_BROWSER_STARTS)
        and any(engine in agent for engine in _BROWSER_ENGINES)
        and not any(hint in agent for hint in _BOT_HINTS)
    )


def _listed_crawler(agent: str) -> bool:
    """crawlerdetect's verdict (its patterns ignore case). Imported here: a plain browser never needs it."""
    from crawlerdetect import CrawlerDetect  # type: ignore[import-untyped]  # no py.typed

    return bool(CrawlerDetect().is_crawler(agent))
