"""A configured EspoCRM that is down, then up: the application waits on the queue and arrives once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.espocrm.local import free_port
from tests.e2e.conftest import LocalRun, json_body, start_runner, wait_for
from tests.e2e.stub_crm import StubEspoCrm

API_KEY = "e2e-espo-key-7d3f9a1c2b"
APPLICATION = {
    "first_name": "Elif",
    "last_name": "Demir",
    "phone": "+90 544 111 22 33",
    "email": "elif.demir@example.com",
    "consent": True,
    "attribution": {"referral_code": "PARTNER-9"},
}


@pytest.fixture
def espocrm() -> Iterator[StubEspoCrm]:
    stub = StubEspoCrm(free_port(), API_KEY)  # not started: the CRM is down
    yield stub
    stub.stop()


@pytest.fixture
def espocrm_run(tmp_path: Path, espocrm: StubEspoCrm) -> Iterator[LocalRun]:
    run = start_runner(
        tmp_path, {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": API_KEY}
    )
    yield run
    assert run.stop() == 0, f"the runner did not stop cleanly:\n{run.console}"


def test_an_application_queued_while_the_crm_is_down_is_delivered_once_when_it_is_up(
    espocrm_run: LocalRun, espocrm: StubEspoCrm
) -> None:
    with espocrm_run.client() as client:
        answer = client.post("/api/v1/applications", json=APPLICATION, headers={"Idempotency-Key": "e2e-down-up"})
    assert answer.status_code == 202, answer.text
    operation = json_body(answer)["operationId"]
    wait_for(lambda: "retrying later" in espocrm_run.console, 20, "the worker's first attempt to fail and back off")

    espocrm.start()
    wait_for(espocrm.sim.leads, 30, "the worker to deliver the queued application")
    wait_for(espocrm_run.queue_is_empty, 10, "the queue to be empty")

    (lead,) = espocrm.sim.leads()
    assert lead["phoneNumber"] == "+905441112233"
    assert lead["cReferralCode"] == "PARTNER-9"
    assert espocrm.sim.router["lead.create"].call_count == 1, "exactly one create reached the CRM"
    assert f"op {operation[:8]}" in espocrm_run.console
    assert "EspoCRM at http://127.0.0.1" in espocrm_run.console
    assert "ESPOCRM_API_KEY kept in the local SSM" in espocrm_run.console
    assert API_KEY not in espocrm_run.console
    assert not any(private in espocrm_run.console for private in ("Elif", "Demir", "elif.demir@example.com"))
