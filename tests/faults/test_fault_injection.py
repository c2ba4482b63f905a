"""Every lead reaches the CRM exactly once while it is down, flaps and recovers; nothing private leaks.

One seeded run (see tests/faults/scenario.py) shared by the tests of this module; they each check
one promise against what the run left behind. ``make reliability`` reruns it and writes the
figures into docs/reliability.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.faults.crm import FaultyEspoCrm
from tests.faults.scenario import REJECTED_ATTRIBUTE, Figures, build_arrivals, leaked, private_values, run, verify
from tests.faults.system import captured_output, running_system
from tests.infra.sam import sam_template

SEED = int(os.environ.get("FAULT_SEED", "20240815"))
API_KEY = "fault-run-espo-api-key-5f1c9e"
HMAC_SECRET = "fault-run-hmac-secret-a83b27d4"
CLIENT_TIMEOUT_SECONDS = 0.05
WALL_TIME_LIMIT_SECONDS = 150.0
"""A guard against the run growing out of bounds (it takes about a minute here), not a benchmark."""
REPORT = os.environ.get("RELIABILITY_REPORT")
"""Set by ``make reliability``: the document to write the figures into."""


@dataclass
class FaultRun:
    figures: Figures
    problems: list[str]
    logs: str
    stdout: str
    dead_letter_queue_depth: int
    waiting: int
    private_values: list[str]


@pytest.fixture(scope="module")
def fault_run() -> FaultRun:
    crm = FaultyEspoCrm(
        free_port(), API_KEY, hmac_secret=HMAC_SECRET, seed=SEED, client_timeout_seconds=CLIENT_TIMEOUT_SECONDS
    )
    crm_environment = {
        "CRM_PROVIDER": "espocrm",
        "ESPOCRM_URL": crm.base_url,
        "ESPOCRM_API_KEY": API_KEY,
        "ESPOCRM_HMAC_SECRET": HMAC_SECRET,
        "CRM_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS),
        "CRM_SYNC_BUDGET_MS": "300",
    }
    crm.sim.reject_attribute(REJECTED_ATTRIBUTE)
    arrivals = build_arrivals(SEED)
    started = time.perf_counter()
    try:
        with (
            pytest.MonkeyPatch.context() as env,
            running_system(env, crm_environment, seed=SEED) as system,
            captured_output(env) as captured,
        ):
            submitted, simulated = run(system, crm, arrivals, SEED)
            wall = time.perf_counter() - started
            figures, problems = verify(system, crm, submitted, system.dead_letters())
            result = FaultRun(
                replace(figures, seed=SEED, simulated_seconds=simulated, wall_seconds=wall),
                problems,
                captured.logs.getvalue(),
                captured.stdout.getvalue(),
                system.dead_letter_queue_depth(),
                system.waiting(),
                private_values(arrivals, API_KEY, HMAC_SECRET),
            )
    finally:
        crm.stop()
    print("\n".join(f"{name}: {value}" for name, value in result.figures.rows()))
    return result


def test_every_good_operation_is_in_the_crm_exactly_once(fault_run: FaultRun) -> None:
    assert fault_run.problems[:20] == []
    assert (fault_run.figures.lost, fault_run.figures.duplicates) == (0, 0)
    assert fault_run.figures.delivered_once == fault_run.figures.good_operations
    assert fault_run.waiting == 0


def test_the_poison_operations_and_nothing_else_are_dead_lettered_and_alarm(fault_run: FaultRun) -> None:
    assert fault_run.figures.dead_lettered == fault_run.figures.poison_operations == 50
    assert fault_run.figures.dead_lettered_good == 0
    alarm = sam_template()["Resources"]["DeadLetterQueueAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible",
        "GreaterThanOrEqualToThreshold",
    )
    assert fault_run.dead_letter_queue_depth >= alarm["Threshold"]


def test_the_website_never_saw_a_server_error(fault_run: FaultRun) -> None:
    assert set(fault_run.figures.answers) <= {201, 202, 302}
    assert fault_run.figures.stack_traces == 0


def test_logs_and_metrics_hold_no_secret_and_no_contact(fault_run: FaultRun) -> None:
    assert "CrmBridge" in fault_run.stdout, "the metrics were captured"
    assert "operation delivered" in fault_run.logs, "the logs were captured"
    assert leaked(fault_run.private_values, fault_run.logs, fault_run.stdout) == []


def test_the_run_is_bounded(fault_run: FaultRun) -> None:
    assert fault_run.figures.wall_seconds < WALL_TIME_LIMIT_SECONDS
    if REPORT:
        write_report(Path(REPORT), fault_run.figures)


def write_report(path: Path, figures: Figures) -> None:
    """Replace the figures table between the markers of docs/reliability.md."""
    start, end = "<!-- figures:start -->", "<!-- figures:end -->"
    text = path.read_text(encoding="utf-8")
    table = "\n".join(["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in figures.rows())])
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{start}\n{table}\n{end}{after}", encoding="utf-8")
