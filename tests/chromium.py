"""Debian's Chromium for the browser tests, driven by Playwright (``executable_path``: Playwright
downloads nothing). The browser resolves only the names a test maps to loopback; every other name
fails to resolve, so nothing a page does can leave the machine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; make test installs it)"
)
AGENCY_HOSTS = "MAP *.agency.test 127.0.0.1"
"""``www.agency.test`` (the site) and ``go.agency.test`` (the API), both this machine."""


@contextmanager
def chromium(*mapped: str) -> Iterator[Browser]:
    """A headless Chromium that resolves 127.0.0.1 and the ``mapped`` host rules, nothing else."""
    from playwright.sync_api import sync_playwright

    rules = ", ".join([*mapped, "MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1"])
    arguments = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--host-resolver-rules={rules}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=arguments, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def only_to(context: BrowserContext, url: str) -> None:
    """Let the context's requests reach ``url``'s host and port only; every other one is aborted as a
    blocked request (so a 302 to a messenger is observed, and the navigation it starts fails here)."""
    from playwright.sync_api import Route

    allowed = urlsplit(url).netloc

    def route(request_route: Route) -> None:
        if urlsplit(request_route.request.url).netloc == allowed:
            request_route.continue_()
        else:
            request_route.abort("blockedbyclient")

    context.route("**/*", route)
