"""A rollback rehearsal: dual-write on, primary and shadow swapped and swapped back while operations
wait in the queue and in the dead-letter queue; then everything drained and redriven, and the two
CRMs reconciled. 0 lost and 0 duplicated, in either CRM.

The whole system runs in one process (tests/faults/system.py: moto's queues and tables, the real
handlers, the worker driven as Lambda's poller drives it); the CRMs are the EspoCRM and Bitrix24
simulators. A "deploy" is :func:`tests.faults.system.redeploy`: new containers, new environment.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from crm_bridge.delivery.dead_letters import redrive
from crm_bridge.migrate.__main__ import run
from tests.faults.system import System, redeploy, running_system
from tests.simulators.base import Failure, SimulatedCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

API_KEY = "rehearsal-espo-key-5d2c1b"
SEED = 16
BACKOFF_STEP_SECONDS = 3600.0


@dataclass
class Rehearsal:
    system: System
    env: pytest.MonkeyPatch
    espocrm: SimulatedEspoCrm
    bitrix24: SimulatedBitrix24
    crm_environment: dict[str, str]
    operations: dict[str, list[str]] = field(default_factory=dict)
    """E-mail -> the operation ids the API answered for that person."""
    sessions: list[str] = field(default_factory=list)

    def apply(self, number: int, *, expect: int) -> None:
        email = f"person{number}@example.com"
        answer = self.system.submit_application(
            {"name": f"Person {number}", "email": email, "phone": f"+90532{number:07d}", "consent": True}
        )
        assert answer.status == expect, answer.body
        self.operations.setdefault(email, []).append(answer.body["operationId"])

    def click(self, session: str) -> None:
        answer = self.system.click({"channel": "telegram", "session_id": session, "page": "/programs"})
        assert answer.status == 202, answer.body
        self.sessions.append(session)

    def deploy(self, primary: str, shadow: str) -> None:
        self.system = redeploy(self.system, seed=SEED, CRM_PROVIDER=primary, CRM_SHADOW_PROVIDER=shadow)

    def drain(self) -> None:
        """What the worker does over the next days: every retry's time comes, until the queue is empty."""
        for _ in range(60):
            self.system.work()
            if not self.system.waiting():
                return
            self.system.clock.advance(BACKOFF_STEP_SECONDS)
        raise AssertionError("the queue never emptied")

    def dead_letters_for(self) -> list[str]:
        """Which CRM each dead letter is for."""
        return [message["MessageAttributes"]["provider"]["StringValue"] for message in self.system.dead_letters()]


@pytest.fixture
def rehearsal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rehearsal]:
    with SimulatedBitrix24(rate_per_second=None) as bitrix24, SimulatedEspoCrm(api_key=API_KEY) as espocrm:
        environment = {
            "ESPOCRM_URL": espocrm.base_url,
            "ESPOCRM_API_KEY": API_KEY,
            "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url,
            "CRM_PROVIDER": "bitrix24",
            "CRM_SHADOW_PROVIDER": "espocrm",
        }
        with running_system(monkeypatch, environment, seed=SEED) as system:
            yield Rehearsal(system, monkeypatch, espocrm, bitrix24, environment)


def _texts(lead: dict[str, Any], timeline: list[str], text_attribute: str) -> str:
    return "\n".join([str(lead.get(text_attribute) or ""), *timeline])


def _espocrm_email(lead: dict[str, Any]) -> object:
    return lead.get("emailAddress")


def _bitrix24_email(lead: dict[str, Any]) -> object:
    return (lead.get("EMAIL") or [{}])[0].get("VALUE")


def _assert_each_person_once_with_every_operation(rehearsal: Rehearsal) -> None:
    crms: tuple[tuple[SimulatedCrm, Callable[[dict[str, Any]], object], str], ...] = (
        (rehearsal.espocrm, _espocrm_email, "description"),
        (rehearsal.bitrix24, _bitrix24_email, "COMMENTS"),
    )
    for crm, email_of, text in crms:
        leads = crm.leads()
        by_email: dict[str, list[dict[str, Any]]] = {}
        for lead in leads:
            by_email.setdefault(str(email_of(lead)), []).append(lead)
        for email, operations in rehearsal.operations.items():
            assert len(by_email.get(email, [])) == 1, f"{crm.provider_name}: one lead for {email}"
            (lead,) = by_email[email]
            written = _texts(lead, crm.timeline(str(lead.get("id") or lead.get("ID"))), text)
            for operation in operations:
                assert written.count(f"crm-bridge operation {operation}") == 1, (crm.provider_name, email, operation)
        anonymous = [lead for lead in leads if str(email_of(lead)) == "None"]
        assert len(anonymous) == len(rehearsal.sessions), f"{crm.provider_name}: one lead per visitor session"


def test_a_rollback_rehearsal_loses_nothing_and_doubles_nothing(rehearsal: Rehearsal, tmp_path: Any) -> None:
    # The dual-write week: Bitrix24 primary, EspoCRM shadow.
    for number in range(1, 6):
        rehearsal.apply(number, expect=201)
    rehearsal.click("rehearsal-session-0001")
    rehearsal.drain()
    # EspoCRM's admin breaks a field: the shadow's copies are refused and dead-lettered, the primary's fine.
    rehearsal.espocrm.reject_attribute("description")
    for number in range(6, 9):
        rehearsal.apply(number, expect=201)
    rehearsal.drain()
    assert rehearsal.dead_letters_for() == ["espocrm"] * 3
    # Bitrix24 answers 500 to the next applications: they are queued (named bitrix24), their shadow copies too.
    rehearsal.bitrix24.fail_next(Failure.SERVER_ERROR, times=3)
    for number in range(9, 12):
        rehearsal.apply(number, expect=202)
    rehearsal.click("rehearsal-session-0002")
    assert rehearsal.system.waiting() == 3 * 2 + 2

    # The switch, with all of that waiting: EspoCRM primary, Bitrix24 shadow.
    rehearsal.deploy("espocrm", "bitrix24")
    rehearsal.apply(12, expect=202)  # EspoCRM still refuses its text: the primary's copy is dead-lettered
    rehearsal.apply(3, expect=201)  # person 3 applies again: a note, no text to refuse
    rehearsal.espocrm.accept_attribute("description")  # fixed
    rehearsal.drain()
    for number in range(13, 16):
        rehearsal.apply(number, expect=201)
    assert sorted(rehearsal.dead_letters_for()) == ["espocrm"] * 4
    redrive(rehearsal.system.sqs, rehearsal.system.aws.dlq_url, rehearsal.system.aws.queue_url, wait_seconds=0)

    # The rollback, with the redriven copies and a Bitrix24 hiccup still waiting.
    rehearsal.bitrix24.fail_next(Failure.TIMEOUT, times=2)
    rehearsal.apply(16, expect=201)
    rehearsal.click("rehearsal-session-0003")
    rehearsal.system.work()
    assert rehearsal.system.waiting() > 0
    rehearsal.deploy("bitrix24", "espocrm")
    rehearsal.apply(17, expect=201)
    rehearsal.drain()
    assert rehearsal.system.dead_letters() == []

    _assert_each_person_once_with_every_operation(rehearsal)
    environment = {key: value for key, value in rehearsal.crm_environment.items() if not key.startswith("CRM_")}
    for source, target in (("bitrix24", "espocrm"), ("espocrm", "bitrix24")):
        out = io.StringIO()
        code = run(
            ["reconcile", "--from", source, "--to", target, "--report", str(tmp_path / f"{source}.csv")],
            out,
            environment,
        )
        assert code == 0, out.getvalue()
        assert f"only in {source} 0, only in {target} 0, field differences 0" in out.getvalue()
