"""The fault-injection scenario: who arrives when, what the CRM does meanwhile, and what must be true after.

Seeded and bounded. 1,000 application forms and 1,000 messenger clicks arrive through the real API
handlers over five simulated minutes, while the CRM is down (the first 30 s), then flaps (until
140 s: 5xx, hangs past the client timeout, connection resets and slow answers, before and after it
has run the request), then is healthy. 50 applications are odd: they carry a university, and the
CRM refuses the attribute it maps to; they must reach the CRM all the same, without that attribute,
its value in the lead's text. 50 messages are poison: nothing can deliver them (a deploy mix-up put
an envelope of an unknown version on the queue); they, and only they, must end in the dead-letter
queue. The worker drains the queue over the run's clock until it is empty. :func:`verify` then
counts, from the CRM's own records, each good operation's effect.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pytest

from tests.faults.crm import LeadRecord, Phase
from tests.faults.system import System, captured_output, running_system

APPLICATIONS = 1000
CLICKS = 1000
ODD = 50
POISON = 50
ANONYMOUS_SESSIONS = 300
KNOWN_VISITOR_CLICKS = 150
REDIRECT_SHARE = 0.25
"""Anonymous clicks that arrive as a partner redirect (``GET /go/{channel}``) rather than a POST."""
REJECTED_ATTRIBUTE = "cUniversity"
"""The CRM refuses this attribute; only the odd applications fill the field mapped to it."""
UNIVERSITY = "Boğaziçi Üniversitesi"
POISON_VERSION = 99
"""An operation envelope version no crm-bridge knows."""
TICK_SECONDS = 10.0
DOWN_UNTIL = 30.0
FLAPPING_UNTIL = 140.0
ARRIVALS_UNTIL = 300.0
MAX_SIMULATED_SECONDS = 6 * 3600.0
VISITOR_SESSION = re.compile(r"^Visitor session: (\S+)$", re.MULTILINE)
OPERATION_MARKER = re.compile(r"^crm-bridge operation ([0-9a-f-]{36})$", re.MULTILINE)
REPEAT_NOTE = "Submitted the application form again."

_FIRST_NAMES = ("Ayşe", "Mehmet", "İsmail", "Ğülşen", "Наталья", "Дмитрий", "محمد", "Zoë", "Çağla", "Oğuz")
_LAST_NAMES = ("Yılmaz", "Öztürk", "Şahin", "Иванова", "Кузнецов", "الفارسي", "Brontë", "Doğan", "Kılıç")
_CHANNELS = ("telegram", "whatsapp", "instagram")


class FaultyCrm(Protocol):
    """What the scenario needs of a simulated CRM: phases to go through, its leads, its fault counts."""

    @property
    def faults(self) -> dict[str, int]:
        """Requests by the fault they met."""
        ...

    def set_phase(self, phase: Phase) -> None: ...

    def settle(self) -> None:
        """Let the requests the CRM is still to run late land (before the clock moves on)."""
        ...

    def view(self) -> list[LeadRecord]: ...


def phase_at(seconds: float) -> Phase:
    if seconds < DOWN_UNTIL:
        return Phase.DOWN
    return Phase.FLAPPING if seconds < FLAPPING_UNTIL else Phase.RECOVERED


@dataclass(frozen=True)
class Arrival:
    kind: str  # "application" | "click" | "redirect" | "known-click" | "poison"
    number: int
    body: dict[str, Any]
    session_id: str | None = None
    idempotency_key: str | None = None
    odd: bool = False

    @property
    def e164(self) -> str:
        return str(self.body["_e164"])


def _phone(number: int) -> tuple[str, str]:
    """The number as a person typed it, in one of many formats, and its E.164 form."""
    digits = f"{2_000_000 + number:07d}"
    formats = (
        (f"+90 532 {digits[:3]} {digits[3:5]} {digits[5:]}", f"+90532{digits}"),
        (f"0532 {digits[:3]} {digits[3:5]} {digits[5:]}", f"+90532{digits}"),
        (f"(0532) {digits[:3]}-{digits[3:5]}-{digits[5:]}", f"+90532{digits}"),
        (f"0090532{digits}", f"+90532{digits}"),
        (f"+90.532.{digits[:3]}.{digits[3:]}", f"+90532{digits}"),
        (f"+7 (916) {digits[:3]}-{digits[3:5]}-{digits[5:]}", f"+7916{digits}"),
    )
    return formats[number % len(formats)]


def build_arrivals(
    seed: int,
    *,
    applications: int = APPLICATIONS,
    clicks: int = CLICKS,
    odd_count: int = ODD,
    poison_count: int = POISON,
    anonymous_sessions: int = ANONYMOUS_SESSIONS,
    known_visitor_clicks: int = KNOWN_VISITOR_CLICKS,
) -> list[Arrival]:
    """Every arrival of the run, in arrival order."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible scenario
    odd = set(rng.sample(range(applications), odd_count))
    arrivals: list[Arrival] = []
    for number in range(applications):
        typed, e164 = _phone(number)
        body: dict[str, Any] = {
            "name": f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            "phone": typed,
            "user_type": rng.choice(("student", "parent", "other")),
            "program": rng.choice(("Medicine", "Law", "Computer Science", "İşletme")),
            "consent": True,
            "attribution": {"referral_code": f"PARTNER-{number % 17}", "utm_source": "instagram"},
            "session_id": f"applicant-{seed}-{number:05d}",
            "_e164": e164,
        }
        if rng.random() < 0.7:
            body["email"] = rng.choice((f"applicant.{number}@example.com", f"Applicant.{number}@Example.COM"))
        if number in odd:
            body["university"] = UNIVERSITY
        key = f"fault-{seed}-application-{number}"
        arrivals.append(Arrival("application", number, body, idempotency_key=key, odd=number in odd))
    sessions = [f"anon-{seed}-{index:05d}" for index in range(anonymous_sessions)]
    anonymous = clicks - known_visitor_clicks
    session_of = sessions + [rng.choice(sessions) for _ in range(anonymous - len(sessions))]
    for number, session_id in enumerate(session_of):
        kind = "redirect" if rng.random() < REDIRECT_SHARE else "click"
        arrivals.append(Arrival(kind, number, _click_body(rng, session_id), session_id=session_id))
    for number in range(anonymous, clicks):
        session_id = f"known-{seed}-{number:05d}"
        arrivals.append(Arrival("known-click", number, _click_body(rng, session_id), session_id=session_id))
    for number in range(poison_count):
        operation_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = {"version": POISON_VERSION, "kind": "lead.upsert", "operation_id": operation_id, "payload": {}}
        arrivals.append(Arrival("poison", number, body))
    rng.shuffle(arrivals)
    return arrivals


def _click_body(rng: random.Random, session_id: str) -> dict[str, Any]:
    return {
        "channel": rng.choice(_CHANNELS),
        "session_id": session_id,
        "page": rng.choice(("/", "/programs/medicine", "/universities/istanbul")),
        "attribution": {"referral_code": f"PARTNER-{rng.randrange(17)}"},
    }


@dataclass
class Submitted:
    """What the website was told, and what it sent, for the count at the end."""

    answers: Counter[int] = field(default_factory=Counter)
    bodies_with_a_stack_trace: int = 0
    applications: list[Arrival] = field(default_factory=list)
    poison_operations: list[str] = field(default_factory=list)
    clicks_by_session: Counter[str] = field(default_factory=Counter)
    click_operations: list[str] = field(default_factory=list)
    applicant_sessions: list[str] = field(default_factory=list)

    def note(self, status: int, body: Any) -> None:
        self.answers[status] += 1
        if "Traceback" in str(body):
            self.bodies_with_a_stack_trace += 1


def submit(system: System, arrival: Arrival, submitted: Submitted, rng: random.Random) -> None:
    """One arrival through its real handler, as the website sends it (poison: straight onto the queue)."""
    if arrival.kind == "poison":
        operation_id = str(arrival.body["operation_id"])
        system.sqs.send_message(
            QueueUrl=system.aws.queue_url,
            MessageBody=json.dumps(arrival.body),
            MessageAttributes={"operation_id": {"DataType": "String", "StringValue": operation_id}},
        )
        submitted.poison_operations.append(operation_id)
        return
    if arrival.kind == "application":
        body = {name: value for name, value in arrival.body.items() if not name.startswith("_")}
        answer = system.submit_application(body, arrival.idempotency_key)
        submitted.note(answer.status, answer.body)
        submitted.applications.append(arrival)
        if answer.status < 400:
            submitted.applicant_sessions.append(body["session_id"])
        return
    assert arrival.session_id is not None
    session_id = arrival.session_id
    if arrival.kind == "known-click" and submitted.applicant_sessions:
        session_id = rng.choice(submitted.applicant_sessions)  # a visitor who applied, clicking later
    if arrival.kind == "redirect":
        answer = system.go(arrival.body["channel"], session_id=session_id, query="ref=PARTNER-3")
        submitted.note(answer.status, answer.body)
    else:
        answer = system.click(arrival.body | {"session_id": session_id})
        submitted.note(answer.status, answer.body)
        if answer.status == 202:
            submitted.click_operations.append(answer.body["operationId"])
    if answer.status < 400:
        submitted.clicks_by_session[session_id] += 1


def run(system: System, crm: FaultyCrm, arrivals: list[Arrival], seed: int) -> tuple[Submitted, float]:
    """Arrivals and worker, tick by tick of the clock, until every arrival is in and the queue is
    empty. Returns what was submitted and the simulated seconds it took."""
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible choice of known leads
    submitted = Submitted()
    pending = iter(enumerate(arrivals))
    upcoming = next(pending, None)
    per_second = len(arrivals) / ARRIVALS_UNTIL
    for tick in itertools.count():
        now = tick * TICK_SECONDS
        crm.set_phase(phase_at(now))
        while upcoming is not None and upcoming[0] < (now + TICK_SECONDS) * per_second:
            submit(system, upcoming[1], submitted, rng)
            upcoming = next(pending, None)
        system.work()
        crm.settle()  # a write runs late by a moment of real time, never by a whole tick of the clock
        if upcoming is None and system.waiting() == 0:
            return submitted, now
        if now > MAX_SIMULATED_SECONDS:
            raise AssertionError(f"the queue still holds {system.waiting()} operations after {now:.0f} s")
        system.clock.advance(TICK_SECONDS)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Figures:
    seed: int
    operations: int
    good_operations: int
    odd_applications: int
    poison_operations: int
    delivered_once: int
    lost: int
    duplicates: int
    dead_lettered: int
    dead_lettered_good: int
    repeat_notes: int
    answers: dict[int, int]
    stack_traces: int
    faults: dict[str, int]
    worker_receives: int
    most_receives: int
    simulated_seconds: float
    wall_seconds: float
    leads: int

    def rows(self) -> list[tuple[str, str]]:
        faults = ", ".join(f"{name} {count}" for name, count in self.faults.items() if count and name != "none")
        answers = ", ".join(f"{status}: {count}" for status, count in sorted(self.answers.items()))
        return [
            ("seed", str(self.seed)),
            ("operations (applications + clicks)", str(self.operations)),
            (
                "good operations (odd applications among them) / poison",
                f"{self.good_operations} ({self.odd_applications}) / {self.poison_operations}",
            ),
            ("good operations in the CRM exactly once", str(self.delivered_once)),
            ("lost", str(self.lost)),
            ("duplicates", str(self.duplicates)),
            ("dead-lettered (all poison)", f"{self.dead_lettered} (good ones: {self.dead_lettered_good})"),
            ("spurious repeat-submission notes", str(self.repeat_notes)),
            ("leads in the CRM", str(self.leads)),
            ("API answers", answers),
            ("answers with a stack trace", str(self.stack_traces)),
            ("CRM requests that met a fault", faults),
            ("worker receives (most for one message)", f"{self.worker_receives} ({self.most_receives})"),
            ("simulated time to an empty queue", f"{self.simulated_seconds:.0f} s"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]


def verify(
    system: System,
    crm: FaultyCrm,
    submitted: Submitted,
    dead_letters: list[dict[str, Any]],
) -> tuple[Figures, list[str]]:
    """Count each operation's effect in the CRM; the figures, and what is wrong (empty when nothing)."""
    problems: list[str] = []
    leads_by_phone: Counter[str] = Counter()
    session_leads: Counter[str] = Counter()
    session_records: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    holders: defaultdict[str, list[str]] = defaultdict(list)
    repeat_notes = 0
    records = crm.view()
    for lead in records:
        leads_by_phone.update(set(lead.phones))
        if lead.session_id:
            session_leads[lead.session_id] += 1
        for text in lead.texts:
            session_records.update(VISITOR_SESSION.findall(text))
            markers.update(OPERATION_MARKER.findall(text))
            for op in OPERATION_MARKER.findall(text):  # where each copy is, should one be duplicated
                holders[op].append(f"lead of session {lead.session_id or '(none)'} with {len(lead.phones)} phones")
        repeat_notes += sum(note.startswith(REPEAT_NOTE) for note in lead.notes)

    lost = duplicates = once = 0

    def count(what: str, found: int, expected: int = 1) -> None:
        nonlocal lost, duplicates, once
        if found < expected:
            lost += expected - found
            problems.append(f"lost: {what} ({found} of {expected})")
        elif found > expected:
            duplicates += found - expected
            problems.append(f"duplicated: {what} ({found} times, {expected} expected)")
        once += min(found, expected)

    texts_by_phone: defaultdict[str, list[str]] = defaultdict(list)
    for lead in records:
        for phone in lead.phones:
            texts_by_phone[phone] += lead.texts
    for arrival in submitted.applications:
        count(f"application {arrival.number}", leads_by_phone[arrival.e164])
        if arrival.odd and not any(UNIVERSITY in text for text in texts_by_phone[arrival.e164]):
            problems.append(f"odd application {arrival.number}: the refused value is not kept on its lead")
    for session_id, clicks in submitted.clicks_by_session.items():
        count(f"clicks of session {session_id}", session_records[session_id], clicks)
    for session_id, leads in session_leads.items():
        if leads > 1:
            problems.append(f"session {session_id} has {leads} minimal leads")
    if markers:  # activities carry their operation id: each may appear once at most
        problems.extend(
            f"operation {op} recorded {n} times: on {'; '.join(holders[op])}" for op, n in markers.items() if n > 1
        )
        problems.extend(f"click {op} not in the CRM" for op in submitted.click_operations if not markers[op])
    if repeat_notes:
        problems.append(f"{repeat_notes} repeat-submission notes, but nobody submitted twice")

    poison_operations = set(submitted.poison_operations)
    parked = Counter(_attribute(message, "operation_id") for message in dead_letters)
    for message in dead_letters:
        operation = _attribute(message, "operation_id")
        if operation not in poison_operations:
            problems.append(f"dead-lettered, but not poison: {operation} ({_attribute(message, 'error_reason')})")
        elif (_attribute(message, "error_kind"), _attribute(message, "error_code")) != (
            "permanent",
            "invalid_operation",
        ):
            problems.append(f"poison {operation} dead-lettered without its reason: {message['MessageAttributes']}")
    problems.extend(f"poison {operation} not dead-lettered" for operation in poison_operations - set(parked))
    problems.extend(f"dead-lettered {n} times: {op}" for op, n in parked.items() if n > 1)
    if submitted.answers.keys() - {201, 202, 302}:
        problems.append(f"unexpected answers: {dict(submitted.answers)}")

    figures = Figures(
        seed=0,
        operations=len(submitted.applications) + sum(submitted.clicks_by_session.values()) + len(poison_operations),
        good_operations=len(submitted.applications) + sum(submitted.clicks_by_session.values()),
        odd_applications=sum(arrival.odd for arrival in submitted.applications),
        poison_operations=len(poison_operations),
        delivered_once=once,
        lost=lost,
        duplicates=duplicates,
        dead_lettered=len(dead_letters),
        dead_lettered_good=sum(
            _attribute(message, "operation_id") not in poison_operations for message in dead_letters
        ),
        repeat_notes=repeat_notes,
        answers=dict(submitted.answers),
        stack_traces=submitted.bodies_with_a_stack_trace,
        faults=dict(crm.faults),
        worker_receives=sum(system.poller.receives.values()),
        most_receives=max(system.poller.receives.values(), default=0),
        simulated_seconds=0.0,
        wall_seconds=0.0,
        leads=len(records),
    )
    return figures, problems


def private_values(arrivals: list[Arrival], *secrets: str) -> list[str]:
    """Every secret, and every phone number and e-mail address as typed and as normalised."""
    values = list(secrets)
    for arrival in arrivals:
        values.extend(str(arrival.body[name]) for name in ("phone", "_e164", "email") if name in arrival.body)
        if "email" in arrival.body:
            values.append(str(arrival.body["email"]).lower())
    return values


def leaked(private: list[str], *outputs: str) -> list[str]:
    return sorted({value for value in private for output in outputs if value in output})


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else str(value["StringValue"])


@dataclass
class FaultRun:
    """What one run left behind, for the tests to check one promise each."""

    crm: str
    figures: Figures
    problems: list[str]
    logs: str
    stdout: str
    dead_letter_queue_depth: int
    waiting: int
    private_values: list[str]


def run_and_count(
    crm: FaultyCrm,
    crm_environment: dict[str, str],
    arrivals: list[Arrival],
    seed: int,
    name: str,
    secrets: tuple[str, ...],
) -> FaultRun:
    """The whole scenario against one CRM, counted from the CRM's own records at the end."""
    started = time.perf_counter()
    with (
        pytest.MonkeyPatch.context() as env,
        running_system(env, crm_environment, seed=seed) as system,
        captured_output(env) as captured,
    ):
        submitted, simulated = run(system, crm, arrivals, seed)
        wall = time.perf_counter() - started
        figures, problems = verify(system, crm, submitted, system.dead_letters())
        result = FaultRun(
            name,
            replace(figures, seed=seed, simulated_seconds=simulated, wall_seconds=wall),
            problems,
            captured.logs.getvalue(),
            captured.stdout.getvalue(),
            system.dead_letter_queue_depth(),
            system.waiting(),
            private_values(arrivals, *secrets),
        )
    print(f"\n{name}:\n" + "\n".join(f"{label}: {value}" for label, value in result.figures.rows()))
    return result
