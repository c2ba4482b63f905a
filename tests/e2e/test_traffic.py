"""Real traffic on the whole system (``make run``): link previewers, crawlers and ``HEAD`` requests,
a scripted flood, and, mixed in, people who browse the demo site with the snippet in Chromium and
click WhatsApp; then a hostile part aimed at the people: their ``/go`` links copied and opened by
others, forged ``session_started`` claims, clicks claiming 30 different hours, and applications
probing who applied. Over the sandbox and the real EspoCRM (docs/traffic.md says what must hold).

``make test`` runs a tenth of the full mix; ``make traffic`` runs it all (10,000 machine requests,
5,000 scripted clicks, 200 people, 1,000 hostile requests) and writes the figures into docs/traffic.md.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from crm_bridge.delivery.execute import CLICKS_PER_SESSION_PER_HOUR
from tests.chromium import chromium, needs_chromium, only_to
from tests.e2e.conftest import (
    CrmView,
    EspoCrmView,
    LocalRun,
    SandboxView,
    espocrm_settings,
    person_user_agent,
    start_runner,
    wait_for,
)
from tests.real_crm.espocrm import EspoCrmAdminClient
from tests.real_crm.fixtures import RealEspoCrm
from tests.unit.test_crawlers import CRAWLERS, PREVIEWERS
from tests.user_agents import BROWSER

REPORT = os.environ.get("TRAFFIC_REPORT")
"""Set by ``make traffic``: the document whose figures section the full run rewrites."""
SCALE = 1.0 if REPORT else 0.1
MACHINE_REQUESTS = int(10_000 * SCALE)
SCRIPTED_CLICKS = int(5_000 * SCALE)
PEOPLE = int(200 * SCALE)
HOSTILE = int(1_000 * SCALE)
"""Requests of the hostile part, a quarter of each kind (copied links, forged claims, spread clock, probes)."""
REPLAYED_SHARE = 0.1
"""Of the scripted clicks: replays of one made-up session (the rest follow the link with no cookie)."""
FOREIGN_SHARE = 0.05
"""Of the scripted clicks: click reports from a page of another site."""
FLOOD_THREADS = 8
REPLAYED_SESSION = "scripted-replay-0001"
SPREAD_SESSION = "spread-clock-0001"
MACHINES = [str(param.values[0]) for param in (*PREVIEWERS, *CRAWLERS)]
FIGURES_START = "<!-- traffic figures: make traffic rewrites this section -->"
FIGURES_END = "<!-- end of traffic figures -->"

pytestmark = needs_chromium


@pytest.fixture(scope="module", params=["sandbox", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def traffic_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalRun, CrmView]]:
    """A runner of its own without the routes' throttles (``LOCAL_THROTTLING=off``): this run checks
    what reaches the CRM; at this rate API Gateway would answer much of the flood 429 (checked below)."""
    settings = {"LOCAL_THROTTLING": "off"}
    admin: EspoCrmAdminClient | None = None
    if request.param == "real-espocrm":
        real: RealEspoCrm = request.getfixturevalue("real_espocrm")
        settings |= espocrm_settings(real)
        admin = real.admin()
    run = start_runner(tmp_path_factory.mktemp(f"traffic-{request.param}"), settings)
    try:
        yield run, (SandboxView(run) if admin is None else EspoCrmView(admin))
    finally:
        code = run.stop()
        if admin is not None:
            admin.close()
        assert code == 0, f"the runner did not stop cleanly:\n{run.console}"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as browser:
        yield browser


@dataclass
class Flood:
    """What the machines and the script were answered."""

    machine_answers: Counter[int] = field(default_factory=Counter)
    machine_cookies: int = 0
    scripted_answers: Counter[int] = field(default_factory=Counter)
    minted_sessions: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def machine_request(client: httpx.Client, number: int, flood: Flood) -> None:
    """A previewer's or a crawler's fetch of a partner's link; every tenth a HEAD (a link checker)."""
    channel = ("whatsapp", "telegram", "instagram")[number % 3]
    method = "HEAD" if number % 10 == 0 else "GET"
    user_agent = BROWSER if method == "HEAD" else MACHINES[number % len(MACHINES)]
    answer = client.request(
        method, f"/go/{channel}", params={"ref": f"PARTNER-{number % 7}"}, headers={"User-Agent": user_agent}
    )
    with flood.lock:
        flood.machine_answers[answer.status_code] += 1
        flood.machine_cookies += len(answer.headers.get_list("set-cookie"))


def scripted_click(client: httpx.Client, number: int, flood: Flood) -> None:
    """A script posing as a browser: it follows the link without a cookie, replays one made-up
    session, or reports clicks from a page of another site."""
    share = (number % 100) / 100
    if share < FOREIGN_SHARE:
        answer = client.post(
            "/api/v1/messenger-events",
            json={"channel": "whatsapp", "session_id": f"forged-{number:08d}"},
            headers={"Origin": "https://clicks-for-sale.example", "User-Agent": BROWSER},
        )
    elif share < FOREIGN_SHARE + REPLAYED_SHARE:
        answer = client.get(
            "/go/whatsapp",
            params={"ref": "PARTNER-0"},
            headers={"User-Agent": BROWSER, "Cookie": f"visitor_session={REPLAYED_SESSION}"},
        )
    else:
        answer = client.get("/go/whatsapp", params={"ref": "PARTNER-0"}, headers={"User-Agent": BROWSER})
        minted = answer.cookies.get("visitor_session")
        if minted:
            with flood.lock:
                flood.minted_sessions.append(minted)
    with flood.lock:
        flood.scripted_answers[answer.status_code] += 1


def run_flood(run: LocalRun, flood: Flood) -> None:
    """Every machine request and scripted click, from a few threads, each with its own connection."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=run.url, timeout=30, follow_redirects=False)
            clients.append(local.client)
        return local.client  # type: ignore[no-any-return]

    jobs = [(machine_request, n) for n in range(MACHINE_REQUESTS)] + [
        (scripted_click, n) for n in range(SCRIPTED_CLICKS)
    ]
    random.Random(15).shuffle(jobs)  # noqa: S311 - interleaved, the same way every run

    def send(request: Callable[[httpx.Client, int, Flood], None], number: int) -> None:
        request(client(), number, flood)

    with ThreadPoolExecutor(FLOOD_THREADS, thread_name_prefix="flood") as pool:
        for outcome in [pool.submit(send, request, number) for request, number in jobs]:
            outcome.result()
    for opened in clients:
        opened.close()


def visit(browser: object, run: LocalRun, number: int) -> str:
    """A person on the demo site, through a partner's link, who clicks WhatsApp; their session."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)

    context = browser.new_context(user_agent=person_user_agent(browser.version))
    only_to(context, run.url)
    try:
        page = context.new_page()
        page.goto(f"{run.url}/?ref=PARTNER-{number % 7}&utm_source=instagram&utm_campaign=person-{number}")
        session = str(page.evaluate("CrmBridge.sessionId()"))
        with page.expect_response(lambda response: "/go/whatsapp" in response.url) as redirect:
            page.click("#go-whatsapp")
        assert redirect.value.status == 302
        return session
    finally:
        context.close()


@dataclass
class Hostile:
    """What the hostile part sent and was answered."""

    copied_links: int = 0
    copied_answers: Counter[int] = field(default_factory=Counter)
    forged_answers: Counter[int] = field(default_factory=Counter)
    spread_answers: Counter[int] = field(default_factory=Counter)
    applicants: dict[str, str] = field(default_factory=dict)
    """Phone of a person who applied -> their e-mail."""
    probe_answers: dict[str, Counter[tuple[int, str, tuple[str, ...]]]] = field(
        default_factory=lambda: {"known": Counter(), "unknown": Counter()}
    )
    """By whether the phone had applied: (status, answer's status, its keys) -> how many."""
    known_probes: list[str] = field(default_factory=list)
    """The addresses of the probes that used an applicant's phone: on no lead afterwards."""


def run_hostile(run: LocalRun, people: list[str], hostile: Hostile) -> None:
    """The part of the mix aimed at people: a quarter each of copied links, forged ``session_started``,
    a clock spread over 30 hours, and applications probing whether a phone applied."""
    share = HOSTILE // 4
    now = datetime.now(UTC)
    run_number = random.randrange(100, 1000)  # noqa: S311 - phones and addresses of this run only, on a shared CRM
    with httpx.Client(base_url=run.url, timeout=30, follow_redirects=False) as client:
        for number in range(share):
            # A person's /go link with their session on it, copied: opened elsewhere, or posted on another site.
            referer = {} if number % 2 else {"Referer": "https://forum.example/thread/42"}
            answer = client.get(
                "/go/whatsapp",
                params={"vs": people[number % len(people)], "ref": "PARTNER-0"},
                headers={"User-Agent": BROWSER, **referer},
            )
            hostile.copied_links += 1
            hostile.copied_answers[answer.status_code] += 1
        for number in range(share):
            forged = {"channel": "telegram", "session_id": f"forged-started-{number % 5}", "session_started": True}
            hostile.forged_answers[client.post("/api/v1/messenger-events", json=forged).status_code] += 1
        for number in range(share):
            claimed = (now - timedelta(hours=number % 30)).isoformat()
            spread = {"channel": "instagram", "session_id": SPREAD_SESSION, "occurred_at": claimed}
            hostile.spread_answers[client.post("/api/v1/messenger-events", json=spread).status_code] += 1
        applicants = max(1, share // 10)
        for number in range(applicants):
            phone, email = f"+90533{run_number}{number:04d}", f"applicant.{run_number}.{number}@example.com"
            application = {"name": f"Applicant {number}", "phone": phone, "email": email, "consent": True}
            assert client.post("/api/v1/applications", json=application).status_code in (201, 202)
            hostile.applicants[phone] = email
        known = list(hostile.applicants)
        for number in range(share - applicants):
            # The prober's own name and address, with a phone that applied or one that did not.
            group = "known" if number % 2 == 0 else "unknown"
            phone = known[number % len(known)] if group == "known" else f"+90535{run_number}{number:04d}"
            email = f"probe.{run_number}.{number}@evil.example"
            probe = {"name": "Probe Person", "phone": phone, "email": email, "consent": True}
            answer = client.post("/api/v1/applications", json=probe)
            if group == "known":
                hostile.known_probes.append(email)
            body = answer.json()
            hostile.probe_answers[group][(answer.status_code, str(body.get("status")), tuple(sorted(body)))] += 1


def test_people_are_leads_once_and_machines_and_floods_make_none(
    traffic_run: tuple[LocalRun, CrmView], browser: object
) -> None:
    run, crm = traffic_run
    leads_before = crm.lead_count()
    ignored_before = run.console.count("click not recorded: not a person")
    flood = Flood()
    started = time.monotonic()

    flooding = threading.Thread(target=run_flood, args=(run, flood), name="flood")
    flooding.start()
    people = [visit(browser, run, number) for number in range(PEOPLE)]
    flooding.join()
    hostile = Hostile()
    run_hostile(run, people, hostile)
    sent_seconds = time.monotonic() - started
    # A wait, not a measure (the figures below are): moto's queue slows as its backlog grows, so the full mix
    # on a 2-core machine drains at a few clicks a second.
    wait_for(run.queue_is_empty, 300 + 0.25 * (SCRIPTED_CLICKS + PEOPLE + HOSTILE), "the worker to drain the clicks")
    drained_seconds = time.monotonic() - started

    # Machines: the redirect, and nothing else.
    assert flood.machine_answers == Counter({302: MACHINE_REQUESTS})
    assert flood.machine_cookies == 0

    def ignored() -> int:
        return run.console.count("click not recorded: not a person") - ignored_before

    # The redirect's log lines reach the console on their own way (the function's output), not the queue's.
    wait_for(lambda: ignored() >= MACHINE_REQUESTS, 30, "the redirect's log line for each machine")
    assert ignored() == MACHINE_REQUESTS, "each is logged (and counted) as not a person"

    # The people: each one lead, the click on it, and nothing of the copies of their links.
    merged = split = 0
    for number, session in enumerate(people):
        leads = crm.leads_of_session(session)
        split += len(leads) > 1
        (lead,) = leads
        assert lead.referral_code == f"PARTNER-{number % 7}"
        assert 'Clicked "message us on WhatsApp"' in str(crm.fields(lead.id).get("description", ""))
        merged += any("message us on" in note for note in crm.notes(lead.id))
    assert (merged, split) == (0, 0), "a copied link wrote onto its person's lead, or a person is two leads"
    assert hostile.copied_answers == Counter({302: hostile.copied_links})

    # Forged claims of what only /go knows: refused. The spread clock: one hour's cap.
    assert hostile.forged_answers == Counter({422: HOSTILE // 4})
    assert all(crm.leads_of_session(f"forged-started-{n}") == [] for n in range(5))
    (spread,) = crm.leads_of_session(SPREAD_SESSION)
    spread_written = 1 + len(crm.notes(spread.id))
    assert spread_written <= CLICKS_PER_SESSION_PER_HOUR * 2, "the cap, per hour of the server's clock"

    # Probes: one answer whoever applied before; the applicants' leads keep their own contacts.
    answer_keys = ("operationId", "status")
    shapes = {(201, "received", answer_keys), (202, "queued", answer_keys)}
    assert set(hostile.probe_answers["known"]) | set(hostile.probe_answers["unknown"]) <= shapes
    for phone, email in hostile.applicants.items():
        (applicant,) = crm.leads_with_email(email)
        assert applicant.phones == [phone], "one lead per applicant: the probes went onto it, as notes"
    assert not any(crm.leads_with_email(email) for email in hostile.known_probes), "a prober's address on a lead"
    dead_letters = run.status()["queues"]["dead_letter"]["waiting"]
    assert dead_letters == 0

    # The script: sessions it never brings back make no lead; one replayed session one lead, capped.
    foreign = sum(1 for n in range(SCRIPTED_CLICKS) if (n % 100) / 100 < FOREIGN_SHARE)
    assert flood.scripted_answers == Counter({302: SCRIPTED_CLICKS - foreign, 403: foreign})
    for session in flood.minted_sessions[:: max(1, len(flood.minted_sessions) // 50)]:
        assert crm.leads_of_session(session) == []
    (replayed,) = crm.leads_of_session(REPLAYED_SESSION)
    replayed_notes = len(crm.notes(replayed.id))
    assert replayed_notes <= CLICKS_PER_SESSION_PER_HOUR * 2, "the cap, per hour the run spans"
    created = crm.lead_count() - leads_before
    applicants = len(hostile.applicants)
    unknown_probes = sum(hostile.probe_answers["unknown"].values())
    expected = PEOPLE + 1 + 1 + applicants + unknown_probes
    assert created == expected, (
        f"{created} leads for {PEOPLE} people, one replayed session, one spread clock, {applicants} applicants "
        f"and {unknown_probes} probes of phones nobody applied with"
    )

    figures = {
        "crm": crm.provider,
        "machine requests (previewers, crawlers, HEAD)": f"{MACHINE_REQUESTS}: all 302, 0 cookies, 0 queued",
        "scripted clicks": (
            f"{SCRIPTED_CLICKS}: {len(flood.minted_sessions)} without a session (held), "
            f"{sum(1 for n in range(SCRIPTED_CLICKS) if FOREIGN_SHARE <= (n % 100) / 100 < FOREIGN_SHARE + REPLAYED_SHARE)}"
            f" replaying one session ({replayed_notes + 1} written: its lead and {replayed_notes} notes),"
            f" {foreign} from another site (403)"
        ),
        "people (Chromium, the snippet)": f"{PEOPLE}: {PEOPLE} leads, each once, with the click",
        "hostile: copied /go links with a person's vs= (opened elsewhere, or from another site)": (
            f"{hostile.copied_links}: all 302, each a new visitor (held); 0 notes on the people's leads"
        ),
        "hostile: forged session_started": f"{HOSTILE // 4}: all 422, nothing queued",
        "hostile: one session's clicks claiming 30 different hours": (
            f"{HOSTILE // 4}: {spread_written} written (the cap counts by the server's clock)"
        ),
        "hostile: applications probing who applied": (
            f"{applicants} applicants, then {sum(hostile.probe_answers['known'].values())} probes with their phones "
            f"and {unknown_probes} with new ones: answers {_answers(hostile.probe_answers['known'])} and "
            f"{_answers(hostile.probe_answers['unknown'])}; 0 prober addresses on an applicant's lead"
        ),
        "people merged / split / dead letters": f"{merged} / {split} / {dead_letters}",
        "leads created": (
            f"{created} ({PEOPLE} people + 1 replayed session + 1 spread clock + {applicants} applicants"
            f" + {unknown_probes} probes of new phones)"
        ),
        "time": f"sent in {sent_seconds:.0f} s, drained after {drained_seconds:.0f} s",
    }
    print("\n".join(f"traffic[{crm.provider}]: {name}: {value}" for name, value in figures.items()))
    if REPORT:
        write_figures(Path(REPORT), figures)


def _answers(counted: Counter[tuple[int, str, tuple[str, ...]]]) -> str:
    """``201 received x 120, 202 queued x 3``: the answers a group of probes got, by kind."""
    return ", ".join(f"{status} {kind} x {count}" for (status, kind, _), count in sorted(counted.items()))


def write_figures(document: Path, figures: dict[str, str]) -> None:
    """Replace this CRM's table in the document's figures section (between the markers)."""
    text = document.read_text(encoding="utf-8")
    start, end = text.index(FIGURES_START) + len(FIGURES_START), text.index(FIGURES_END)
    tables = {
        match.group(1): match.group(0) for match in re.finditer(r"(?ms)^#### (\S+)\n.*?(?=^#### |\Z)", text[start:end])
    }
    rows = "\n".join(f"| {name} | {value} |" for name, value in figures.items() if name != "crm")
    tables[figures["crm"]] = f"#### {figures['crm']}\n\n| | |\n| --- | --- |\n{rows}\n\n"
    section = "\n\n" + "".join(tables[name] for name in sorted(tables))
    document.write_text(text[:start] + section + text[end:], encoding="utf-8")


def test_a_burst_beyond_a_routes_throttle_is_answered_429_and_the_console_says_so(sandbox_run: LocalRun) -> None:
    """The template's per-route throttles, as the local gateway applies them (API Gateway's answer):
    the redirect's burst passes, the rest of a burst is a 429 that reaches no function."""
    burst = 50  # RedirectBurstLimit's default, refilled at 20/s

    def fetch(_: int) -> int:
        with sandbox_run.client() as client:
            return client.get("/go/whatsapp", headers={"User-Agent": MACHINES[0]}).status_code

    # As many at once as the burst: the first wave empties the bucket, and the next ones arrive faster
    # than it refills however slow the machine (8 at a time on a loaded machine arrived at ~20/s: no 429).
    with ThreadPoolExecutor(burst) as pool:
        answers = Counter(pool.map(fetch, range(4 * burst)))
    with sandbox_run.client() as client:
        health = client.get("/api/v1/crm/test").status_code

    assert answers[302] >= burst
    assert answers[429] >= 1
    assert set(answers) == {302, 429}
    assert health == 200, "each route has its own throttle"
    assert "429 throttled: the route's limit (20/s, burst 50)" in sandbox_run.console
