"""``make run`` pointed at the real EspoCRM: an application, a click through ``/go``, and an outage.

The outage is the real one: EspoCRM's web server is stopped (nothing listens on its port), the
website keeps sending, then the server comes back on the same port and the queue drains into it.
What reached the CRM is read from EspoCRM itself, as its administrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from tests.e2e.conftest import EspoCrmView, LocalRun, json_body, unique_phone, wait_for
from tests.real_crm.fixtures import RealEspoCrm
from tests.user_agents import BROWSER

pytestmark = pytest.mark.real_espocrm

DRAIN_TIMEOUT_SECONDS = 90.0
"""The worker retries about 10 s after a failure, then 20 s, 40 s: a short outage drains within this."""


@pytest.fixture(scope="module")
def espocrm(real_espocrm: RealEspoCrm) -> Iterator[EspoCrmView]:
    admin = real_espocrm.admin()
    yield EspoCrmView(admin)
    admin.close()


def application(phone: str, **overrides: object) -> dict[str, object]:
    return {
        "name": "Elif Şahin",
        "phone": phone,
        "email": f"elif.{uuid4().hex[:8]}@example.com",
        "user_type": "parent",
        "program": "Dentistry",
        "consent": True,
        "attribution": {"referral_code": "PARTNER-9", "utm_source": "newsletter"},
    } | overrides


def test_an_application_is_a_lead_in_espocrm_at_once(espocrm_run: LocalRun, espocrm: EspoCrmView) -> None:
    phone = unique_phone("534")
    applied = application(phone)
    with espocrm_run.client() as client:
        answer = client.post("/api/v1/applications", json=applied)

    assert answer.status_code == 201, answer.text
    (lead,) = espocrm.leads_with_email(str(applied["email"]))  # the answer names no lead: EspoCRM does
    assert (lead.phones, lead.referral_code, lead.utm_source) == ([phone], "PARTNER-9", "newsletter")
    assert f"201 delivered (op {json_body(answer)['operationId'][:8]})" in espocrm_run.console


def test_a_click_through_go_becomes_the_visitors_lead_when_the_session_returns(
    espocrm_run: LocalRun, espocrm: EspoCrmView
) -> None:
    """The first /go of a visitor without a session is held (a previewer or a script looks the same);
    the second, with the cookie the first set, makes the lead with both clicks."""
    with espocrm_run.client() as client:
        first = client.get(
            "/go/whatsapp", params={"ref": "PARTNER-12", "utm_source": "story"}, headers={"User-Agent": BROWSER}
        )
        assert first.status_code == 302
        session_id = first.cookies["visitor_session"]
        wait_for(espocrm_run.queue_is_empty, 20, "the first click to be held")
        assert espocrm.lead_of_session(session_id) is None
        second = client.get("/go/telegram", headers={"User-Agent": BROWSER, "Cookie": f"visitor_session={session_id}"})
        assert second.status_code == 302

    lead = wait_for(lambda: espocrm.lead_of_session(session_id), 30, "the worker to create the visitor's lead")
    assert lead.referral_code is None, "the lead is the second click's; the first is a note on it"
    # The held click is written onto the lead after the lead is made (a moment later under load).
    wait_for(
        lambda: any("PARTNER-12" in note for note in espocrm.notes(lead.id)), 30, "the held click's note on the lead"
    )
    wait_for(espocrm_run.queue_is_empty, 10, "the queue to be empty")


def test_an_outage_queues_everything_and_drains_into_espocrm_when_it_is_back(
    espocrm_run: LocalRun, espocrm: EspoCrmView, real_espocrm: RealEspoCrm
) -> None:
    if real_espocrm.local is None:
        pytest.skip("stopping the CRM needs the local EspoCRM (not an instance given by ESPOCRM_URL)")
    session_id = f"outage-{uuid4().hex[:12]}"
    phone = unique_phone("534")
    real_espocrm.local.stop_web()
    try:
        with espocrm_run.client() as client:
            applied = client.post("/api/v1/applications", json=application(phone))
            clicked = client.post("/api/v1/messenger-events", json={"channel": "telegram", "session_id": session_id})
        assert (applied.status_code, json_body(applied)["status"]) == (202, "queued"), applied.text
        assert clicked.status_code == 202, clicked.text
    finally:
        real_espocrm.local.start_web()

    lead = wait_for(lambda: espocrm.lead_of_session(session_id), DRAIN_TIMEOUT_SECONDS, "the click after the outage")
    assert lead.session_id == session_id
    wait_for(espocrm_run.queue_is_empty, DRAIN_TIMEOUT_SECONDS, "the queue to drain into EspoCRM")
    admin = real_espocrm.admin()
    try:
        found = admin.request(
            "GET",
            "Lead",
            params={
                "where[0][type]": "equals",
                "where[0][attribute]": "phoneNumber",
                "where[0][value]": phone,
            },
        )
    finally:
        admin.close()
    assert found["total"] == 1, "the queued application is in EspoCRM exactly once"
    dead_letter_queue = espocrm_run.status()["queues"]["dead_letter"]
    assert dead_letter_queue["waiting"] + dead_letter_queue["in_flight"] == 0
