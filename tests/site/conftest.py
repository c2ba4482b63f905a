"""The website snippet (site/crm-bridge.js) in Debian's headless chromium, on pages of a tiny site.

The site is an in-test HTTP server on 127.0.0.1 that the browser reaches by two names,
``www.agency.test`` and ``go.agency.test`` (``--host-resolver-rules``; every other name fails to
resolve), so the snippet's ``.agency.test`` cookie can be checked from the other host. It serves the
snippet, one page on every other GET path (its head chosen by the path, or set by the test), and
records every request, answering the API calls the snippet makes with the next status a test queued
(``"drop"`` closes the connection without an answer) and the API's body for it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.chromium import AGENCY_HOSTS, chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

SNIPPET = Path(__file__).parents[2] / "site" / "crm-bridge.js"
API_PATHS = ("/api/v1/applications", "/api/v1/messenger-events")
ANSWERS = {201: "received", 202: "queued"}
"""The API's body for a submission it took (with an ``operationId``); another status answers an error."""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agency</title>
{script}
</head><body>
<a id="about" href="/about">About us</a>
<a id="telegram" href="/go/telegram">Telegram</a>
<form id="apply" data-consent-version="privacy-2024-05">
  <input name="name"><input name="email"><input name="phone">
  <input type="checkbox" name="consent"><button id="submit" type="submit">Apply</button>
</form>
</body></html>
"""
SCRIPT = '<script src="/crm-bridge.js" data-api="" data-cookie-domain=".agency.test"></script>'
BARE_SCRIPT = '<script src="/crm-bridge.js"></script>'
"""On /bare/... pages: no data attributes, the page configures the snippet itself (or not at all)."""
INIT_SCRIPT = '<script>CrmBridge.init({cookieDomain: ".agency.test", lifetimeDays: 30});</script>'
"""After BARE_SCRIPT on /bare/init/... pages."""


@dataclass(frozen=True)
class Seen:
    method: str
    host: str
    path: str
    """With its query."""
    headers: dict[str, str]
    body: Any


@dataclass
class Site:
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    answers: deque[tuple[int | str, dict[str, str]]] = field(default_factory=deque)
    """What the API paths answer next, in order; 201 once they run out."""
    head: str | None = None
    """The snippet's markup in every page's head, whatever the path (None: chosen by the path)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/", host: str = "www") -> str:
        return f"http://{host}.agency.test:{self.port}{path}"

    def answer(self, *answers: int | str | tuple[int, dict[str, str]]) -> None:
        with self.lock:
            for item in answers:
                self.answers.append(item if isinstance(item, tuple) else (item, {}))

    def api_calls(self, path: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.method == "POST" and seen.path == path]

    def pages(self) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.method == "GET" and seen.path != "/crm-bridge.js"]

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.answers.clear()
            self.head = None


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # One connection per request: Chromium silently resends a request whose reused keep-alive
        # connection closed without an answer, which would hide a "drop" from the snippet.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _record(self, body: Any) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            with site.lock:
                site.seen.append(Seen(self.command, headers.get("host", ""), self.path, headers, body))

        def _send(self, status: int, content_type: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._record(None)
            if urlsplit(self.path).path == "/crm-bridge.js":
                self._send(200, "text/javascript; charset=utf-8", SNIPPET.read_bytes())
            else:
                path = urlsplit(self.path).path
                script = SCRIPT if not path.startswith("/bare/") else BARE_SCRIPT
                if path.startswith("/bare/init/"):
                    script += INIT_SCRIPT
                script = script if site.head is None else site.head
                self._send(200, "text/html; charset=utf-8", PAGE.format(script=script).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._record(json.loads(raw) if raw else None)
            if self.path not in API_PATHS:
                self._send(404, "application/json", b'{"error": "not_found"}')
                return
            with site.lock:
                status, headers = site.answers.popleft() if site.answers else (201, {})
            if status == "drop":  # no answer at all: the browser's fetch rejects
                self.close_connection = True
                return
            assert isinstance(status, int)
            operation = f"op-{len(site.seen)}"
            answer = (
                {"status": ANSWERS[status], "operationId": operation} if status in ANSWERS else {"error": "refused"}
            )
            self._send(status, "application/json", json.dumps(answer).encode(), headers)

    return Handler


@pytest.fixture(scope="module")
def site_server() -> Iterator[Site]:
    site = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site(site_server: Site) -> Site:
    site_server.reset()
    return site_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(AGENCY_HOSTS) as browser:
        yield browser


@pytest.fixture
def context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    """A fresh browser profile that may reach the two site hosts and nothing else (checked at the end)."""
    allowed = {f"www.agency.test:{site.port}", f"go.agency.test:{site.port}"}
    elsewhere: list[str] = []

    def record(url: str) -> None:
        if urlsplit(url).scheme in {"http", "https"} and urlsplit(url).netloc not in allowed:
            elsewhere.append(url)

    context = browser.new_context()
    context.on("request", lambda request: record(request.url))
    try:
        yield context
    finally:
        context.close()
    assert elsewhere == [], f"the snippet reached beyond the site: {elsewhere}"


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab of the context; a script error on any of its pages fails the test."""
    errors: list[str] = []
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], f"script errors on the page: {errors}"
