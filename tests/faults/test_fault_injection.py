"""Every lead reaches the CRM exactly once while it is down, flaps and recovers; nothing private leaks.

Twice: against the EspoCRM simulator behind a faulty loopback server, and against the real EspoCRM
behind a fault proxy (tests/real_crm), whose plan adds writes the server runs after the client gave up.

One seeded run (see tests/faults/scenario.py) shared by the tests of this module; they each check
one promise against what the run left behind. ``make reliability`` reruns it and writes the
figures into docs/reliability.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.espocrm.local import free_port
from tests.faults.crm import FLAPPING, Fault, FaultyEspoCrm
from tests.faults.scenario import (
    ANONYMOUS_SESSIONS,
    APPLICATIONS,
    CLICKS,
    KNOWN_VISITOR_CLICKS,
    ODD,
    POISON,
    REJECTED_ATTRIBUTE,
    Arrival,
    FaultRun,
    Figures,
    build_arrivals,
    leaked,
    run_and_count,
)
from tests.infra.sam import sam_template
from tests.real_crm.espocrm import RealEspoCrmProxy, RealFaultyEspoCrm
from tests.real_crm.fixtures import RealEspoCrm

SEED = int(os.environ.get("FAULT_SEED", "20240815"))
API_KEY = "fault-run-espo-api-key-5f1c9e"
HMAC_SECRET = "fault-run-hmac-secret-a83b27d4"
CLIENT_TIMEOUT_SECONDS = 0.2
"""Against the simulator: well above its answers (a few ms, tens on a loaded machine), so that what times
out is the plan's faults, not the machine's load: at 50 ms a loaded machine lost many more answers to
writes than the plan does, and the run's figures depended on what else the machine ran."""
REAL_CLIENT_TIMEOUT_SECONDS = 0.5
"""Against the real EspoCRM: well above its answers here (tens of ms), so only the plan's faults time out."""
REPORT = os.environ.get("RELIABILITY_REPORT")
"""Set by ``make reliability``: the document to write the figures into, after the full runs."""
REAL_SCALE = 1.0 if REPORT else 0.2
"""The real server's run in ``make test`` is a fifth of the full one (``make reliability``)."""
REAL_FLAPPING: dict[Fault, float] = {**FLAPPING, Fault.NONE: FLAPPING[Fault.NONE] - 0.03, Fault.LATE_WRITE: 0.03}
"""The flapping plan, plus requests the real server runs after the client gave up."""
LATE_WRITE_SECONDS = 3.0
"""How late such a request runs: queued behind busy PHP workers, it lands after the retry has begun."""


@pytest.fixture(scope="module", params=["simulator", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def fault_run(request: pytest.FixtureRequest) -> Iterator[FaultRun]:
    if request.param == "simulator":
        crm = FaultyEspoCrm(
            free_port(), API_KEY, hmac_secret=HMAC_SECRET, seed=SEED, client_timeout_seconds=CLIENT_TIMEOUT_SECONDS
        )
        crm.sim.reject_attribute(REJECTED_ATTRIBUTE)
        environment = {
            "CRM_PROVIDER": "espocrm",
            "ESPOCRM_URL": crm.base_url,
            "ESPOCRM_API_KEY": API_KEY,
            "ESPOCRM_HMAC_SECRET": HMAC_SECRET,
            "CRM_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS),
            "CRM_SYNC_BUDGET_MS": "300",
        }
        try:
            yield run_and_count(crm, environment, build_arrivals(SEED), SEED, "simulator", (API_KEY, HMAC_SECRET))
        finally:
            crm.stop()
        return
    real: RealEspoCrm = request.getfixturevalue("real_espocrm")
    proxy = RealEspoCrmProxy(
        free_port(),
        real.site.url,
        seed=SEED,
        client_timeout_seconds=REAL_CLIENT_TIMEOUT_SECONDS,
        weights=REAL_FLAPPING,
        late_write_seconds=LATE_WRITE_SECONDS,
    )
    state = real.state(proxy)
    state.reject_attribute(REJECTED_ATTRIBUTE)
    environment = {
        "CRM_PROVIDER": "espocrm",
        "ESPOCRM_URL": proxy.base_url,
        "ESPOCRM_API_KEY": real.api_key,
        "CRM_TIMEOUT_SECONDS": str(REAL_CLIENT_TIMEOUT_SECONDS),
        "CRM_SYNC_BUDGET_MS": "1500",
    }
    try:
        yield run_and_count(
            RealFaultyEspoCrm(proxy, state),
            environment,
            scaled_arrivals(REAL_SCALE),
            SEED,
            "real-espocrm",
            (real.api_key,),
        )
    finally:
        proxy.close()
        state.clean()


def scaled_arrivals(scale: float) -> list[Arrival]:
    return build_arrivals(
        SEED,
        applications=round(APPLICATIONS * scale),
        clicks=round(CLICKS * scale),
        odd_count=round(ODD * scale),
        poison_count=round(POISON * scale),
        anonymous_sessions=round(ANONYMOUS_SESSIONS * scale),
        known_visitor_clicks=round(KNOWN_VISITOR_CLICKS * scale),
    )


def test_every_good_operation_is_in_the_crm_exactly_once(fault_run: FaultRun) -> None:
    assert fault_run.problems[:20] == []
    assert (fault_run.figures.lost, fault_run.figures.duplicates) == (0, 0)
    assert fault_run.figures.delivered_once == fault_run.figures.good_operations
    assert fault_run.waiting == 0


def test_the_poison_operations_and_nothing_else_are_dead_lettered_and_alarm(fault_run: FaultRun) -> None:
    assert fault_run.figures.dead_lettered == fault_run.figures.poison_operations > 0
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


def test_retries_settle_far_from_the_dead_letter_queue(fault_run: FaultRun) -> None:
    """Every good operation got through within half the receives the queue allows: faults of this
    density cost a few retries, never a day of them. (The wall time is a figure, never asserted.)"""
    max_receives = int(sam_template()["Parameters"]["MaxReceiveCount"]["Default"])
    assert fault_run.figures.most_receives <= max_receives // 2
    if REPORT:
        write_report(Path(REPORT), fault_run.figures, fault_run.crm)


def write_report(path: Path, figures: Figures, crm: str) -> None:
    """Replace the figures table of this CRM between its markers in docs/reliability.md."""
    tag = "figures" if crm == "simulator" else f"{crm}-figures"
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    text = path.read_text(encoding="utf-8")
    table = "\n".join(["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in figures.rows())])
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(f"{before}{start}\n{table}\n{end}{after}", encoding="utf-8")
