"""One visitor, one person, in Chromium, where the site and the API share no cookie (no ``CookieDomain``,
as with an ``execute-api`` host): the site on ``www.agency.test``, the API on ``localhost``.

The API host then has a session of its own (the cookie an earlier ``/go`` set), and the site's snippet
puts the site's session on ``/go`` links (``vs=``). A tap on a partner's link, a later click on the
site and the application are one lead, because the click carries both sessions and the worker links
them. A ``/go`` link with ``vs=`` that someone copied and opened in another browser is that other
person's click, never a note on the first visitor's lead: ``vs`` counts only on a click from the
site's pages, and it is never stored.

Over the sandbox and over the real EspoCRM.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.chromium import AGENCY_HOSTS, chromium, needs_chromium
from tests.e2e.conftest import CrmView, SeenLead, TwoHostRun, person_user_agent, unique_phone, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = needs_chromium
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(AGENCY_HOSTS, "MAP localhost 127.0.0.1") as browser:
        yield browser


def person(browser: Browser) -> BrowserContext:
    return browser.new_context(user_agent=person_user_agent(browser.version))


def open_link(context: BrowserContext, url: str, referer: str | None = None) -> None:
    """Open a /go link in a tab of its own, as a tap in another app does: the API answers 302 to the
    messenger, whose host does not resolve here."""
    from playwright.sync_api import Error

    page = context.new_page()
    with page.expect_response(lambda response: "/go/" in response.url) as answered, suppress(Error):
        page.goto(url, referer=referer)  # the messenger's host does not resolve here: the 302 is what counts
    assert answered.value.status == 302
    page.close()


def click_link(page: Page, selector: str) -> str:
    """Click a /go link of the site's page; the URL the browser requested (as the snippet decorated it)."""
    with page.expect_response(lambda response: "/go/" in response.url) as answered:
        page.click(selector)
    assert answered.value.status == 302
    return answered.value.url


def texts_of(crm: CrmView, lead_id: str) -> str:
    """The lead's own text and its notes: a first click is an anonymous lead's text, later ones notes."""
    return "\n".join([str(crm.fields(lead_id).get("description", "")), *crm.notes(lead_id)])


def lead_with(crm: CrmView, session_id: str, *needles: str) -> SeenLead:
    """The session's lead, once its text holds every needle (the worker writes a click a moment after
    the lead appears: wait for what is asserted)."""

    def probe() -> SeenLead | None:
        lead = crm.lead_of_session(session_id)
        return lead if lead is not None and all(needle in texts_of(crm, lead.id) for needle in needles) else None

    return wait_for(probe, WAIT_SECONDS, f"a lead of session {session_id} holding {needles}")


def test_a_partner_tap_the_site_a_click_and_the_application_are_one_lead(
    separate_hosts_run: TwoHostRun, browser: Browser
) -> None:
    run, crm, site, api = (
        separate_hosts_run.run,
        separate_hosts_run.crm,
        separate_hosts_run.site,
        separate_hosts_run.api,
    )
    email = f"deniz.{uuid.uuid4().hex[:10]}@example.com"
    phone = unique_phone()
    context = person(browser)
    page = context.new_page()
    try:
        # A partner's post links straight to Telegram through /go: the API host's own session, the click held.
        open_link(context, f"{api}/go/telegram?ref=PARTNER-77", referer="https://partner.example/blog/istanbul")
        (tap_session,) = [cookie["value"] for cookie in context.cookies(api) if cookie["name"] == "visitor_session"]
        # Days later (here: at once) the visitor reads the site, which keeps a session of its own.
        page.goto(f"{site}/?utm_source=newsletter&utm_campaign=winter")
        site_session = page.evaluate("CrmBridge.sessionId()")
        assert site_session != tap_session
        # A click on the site: the link carries the site's session, the request the API host's cookie.
        go_url = click_link(page, "#go-whatsapp")
        assert parse_qs(urlsplit(go_url).query)["vs"] == [site_session]
        # Then the application.
        page.goto(f"{site}/?page=apply", referer=f"{site}/")
        page.fill("#name", "Deniz Aydın")
        page.fill("#phone", phone)
        page.fill("#email", email)
        page.check("#consent")
        page.click("#submit")
        page.wait_for_function("document.querySelector('#application-result').textContent.includes('operation')")
    finally:
        context.close()

    lead = lead_with(
        crm,
        site_session,
        '"message us on Telegram"',
        "ref=PARTNER-77",
        '"message us on WhatsApp"',
        "Application form on the website.",
    )
    wait_for(run.queue_is_empty, WAIT_SECONDS, "the queue to drain")
    assert [found.id for found in crm.leads_with_email(email)] == [lead.id], "one lead for this person"
    assert crm.leads_of_session(tap_session) == [], "the tap made no lead of its own"
    text = texts_of(crm, lead.id)
    assert text.count('"message us on Telegram"') == text.count('"message us on WhatsApp"') == 1
    assert crm.lead(lead.id).phones == [phone]


def test_a_go_link_copied_into_another_browser_is_that_persons_click(
    separate_hosts_run: TwoHostRun, browser: Browser
) -> None:
    run, crm, site = separate_hosts_run.run, separate_hosts_run.crm, separate_hosts_run.site
    first, second = person(browser), person(browser)
    try:
        page = first.new_page()
        page.goto(f"{site}/?ref=PARTNER-31")
        first_session = page.evaluate("CrmBridge.sessionId()")
        copied = click_link(page, "#go-whatsapp")  # "copy link" after the tap: the URL carries vs=
        assert parse_qs(urlsplit(copied).query)["vs"] == [first_session]
        first_lead = lead_with(crm, first_session, '"message us on WhatsApp"')

        open_link(second, copied)  # pasted into another browser's address bar: no Referer of the site
        other = second.new_page()
        other.goto(f"{site}/")
        second_session = other.evaluate("CrmBridge.sessionId()")
        click_link(other, "#go-instagram")
    finally:
        first.close()
        second.close()

    second_lead = lead_with(crm, second_session, '"message us on Instagram"', '"message us on WhatsApp"')
    wait_for(run.queue_is_empty, WAIT_SECONDS, "the queue to drain")
    assert second_lead.id != first_lead.id
    first_text = texts_of(crm, first_lead.id)
    assert first_text.count('"message us on WhatsApp"') == 1, "the copied link's click is not the first visitor's"
    assert '"message us on Instagram"' not in first_text
