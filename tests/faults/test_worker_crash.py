"""The worker dies after the CRM accepted a write, before SQS heard the message was done.

Lambda's poller then acknowledges nothing of the batch: every message comes back once the queue's
visibility timeout has run out (the :class:`tests.faults.system.Clock` makes it run out). The one
delivered before the crash is replayed from the idempotency store without calling the CRM; the one
whose write the crash cut off finds that write in the CRM and adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crm_bridge.models import Operation
from crm_bridge.providers import ProviderResult
from infra.espocrm.local import free_port
from tests.faults.crm import FaultyEspoCrm
from tests.faults.system import System, running_system
from tests.infra.sam import sam_template

API_KEY = "crash-test-espo-key-77d0a1"
APPLICATION = {"name": "Ayşe Yılmaz", "phone": "0532 123 45 67", "email": "ayse@example.com", "consent": True}
SECOND = {"name": "Oğuz Kılıç", "phone": "+90 533 765 43 21", "consent": True}
CLICK = {"channel": "telegram", "session_id": "crash-test-session-01", "page": "/"}


class WorkerDied(BaseException):
    """The Lambda runtime going away (timeout, out of memory): nothing in the handler can catch it."""


@pytest.fixture
def crm() -> Iterator[FaultyEspoCrm]:
    stub = FaultyEspoCrm(free_port(), API_KEY)
    yield stub
    stub.stop()


@pytest.fixture
def system(crm: FaultyEspoCrm) -> Iterator[System]:
    environment = {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": crm.base_url, "ESPOCRM_API_KEY": API_KEY}
    with pytest.MonkeyPatch.context() as env, running_system(env, environment, seed=7) as running:
        yield running


def dies_after_write(
    deliver: Callable[[Operation, str], ProviderResult], on_call: int
) -> Callable[..., ProviderResult]:
    calls = 0

    def deliver_then_maybe_die(operation: Operation, crm: str) -> ProviderResult:
        nonlocal calls
        calls += 1
        result = deliver(operation, crm)
        if calls == on_call:
            raise WorkerDied("the CRM has the write; the worker never reports it")
        return result

    return deliver_then_maybe_die


def posts(crm: FaultyEspoCrm) -> int:
    return sum(call.request.method in ("POST", "PUT") for call in crm.sim.router.calls)


@pytest.mark.parametrize("second", ["application", "first click of a session", "click on the applicant's lead"])
def test_a_worker_dying_after_the_write_duplicates_nothing(
    system: System, crm: FaultyEspoCrm, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    applicants_session = {"session_id": CLICK["session_id"]} if second == "click on the applicant's lead" else {}
    assert system.submit_application(APPLICATION | applicants_session, "crash-1").status == 202  # CRM down: queued
    if second == "application":
        assert system.submit_application(SECOND, "crash-2").status == 202
    else:
        assert system.click(CLICK).status == 202
    crm.start()
    worker = system.worker.worker
    monkeypatch.setattr(worker.delivery, "_deliver", dies_after_write(worker.delivery._deliver, on_call=2))

    with pytest.raises(WorkerDied):
        system.poller.poll()

    leads_before, posts_before = _leads_and_notes(crm), posts(crm)
    assert system.waiting() == 2, "nothing was acknowledged"
    monkeypatch.undo()
    system.clock.advance(int(sam_template()["Resources"]["OperationsQueue"]["Properties"]["VisibilityTimeout"]) + 1)

    assert system.work() == 2
    assert system.waiting() == 0
    assert posts(crm) == posts_before, "the redelivery wrote nothing to the CRM"
    assert _leads_and_notes(crm) == leads_before
    assert system.dead_letters() == []
    phones = [item["phoneNumber"] for lead in crm.sim.leads() for item in lead["phoneNumberData"]]
    assert sorted(set(phones)) == sorted(phones), "one lead per phone"


def _leads_and_notes(crm: FaultyEspoCrm) -> dict[str, Any]:
    return {lead_id: (lead["description"], notes) for lead_id, (lead, notes) in crm.sim.records().items()}
