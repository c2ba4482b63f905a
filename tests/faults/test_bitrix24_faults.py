"""The same promises with Bitrix24 as the CRM, smaller: exactly once, and its webhook token never shown.

Bitrix24's webhook URL carries its token, so it is the secret most at risk of a log line; its
failures are its own (503 QUERY_LIMIT_EXCEEDED, 429 OPERATION_TIME_LIMIT with a minute's wait, 401
for a re-issued webhook, 5xx and timeouts before and after the call ran). The simulator answers in
process (respx); the scenario, the worker, the queue and the count are the ones of the EspoCRM run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.faults.crm import FlakyBitrix24
from tests.faults.scenario import Figures, build_arrivals, leaked, private_values, run, verify
from tests.faults.system import captured_output, running_system

SEED = 4242
TOKEN = "b24faultrun0token0x5d8e1c"
REJECTED_FIELD = "UF_CRM_UNIVERSITY"


@dataclass
class BitrixRun:
    figures: Figures
    problems: list[str]
    logs: str
    stdout: str
    private: list[str]


@pytest.fixture(scope="module")
def bitrix_run() -> Iterator[BitrixRun]:
    arrivals = build_arrivals(
        SEED, applications=150, clicks=150, poison_count=8, anonymous_sessions=45, known_visitor_clicks=20
    )
    crm = FlakyBitrix24(token=TOKEN, seed=SEED)
    with crm:
        crm.reject_attribute(REJECTED_FIELD)
        environment = {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": crm.webhook_url}
        started = time.perf_counter()
        with (
            pytest.MonkeyPatch.context() as env,
            running_system(env, environment, seed=SEED) as system,
            captured_output(env) as captured,
        ):
            submitted, _ = run(system, crm, arrivals, SEED)
            figures, problems = verify(system, crm, submitted, system.dead_letters(), rejected_field=REJECTED_FIELD)
        figures.wall_seconds = time.perf_counter() - started
        yield BitrixRun(
            figures,
            problems,
            captured.logs.getvalue(),
            captured.stdout.getvalue(),
            private_values(arrivals, TOKEN, crm.webhook_url),
        )


def test_every_good_operation_reaches_bitrix24_exactly_once(bitrix_run: BitrixRun) -> None:
    assert bitrix_run.problems[:20] == []
    assert (bitrix_run.figures.lost, bitrix_run.figures.duplicates) == (0, 0)
    assert bitrix_run.figures.dead_lettered == bitrix_run.figures.poison_operations == 8
    assert set(bitrix_run.figures.answers) <= {201, 202, 302}
    assert sum(count for name, count in bitrix_run.figures.faults.items() if "after_write" in name) > 0


def test_the_webhook_token_and_contacts_never_reach_logs_or_metrics(bitrix_run: BitrixRun) -> None:
    assert "credentials" in bitrix_run.logs or "Wrong authorization" in bitrix_run.logs, "401s were logged"
    assert leaked(bitrix_run.private, bitrix_run.logs, bitrix_run.stdout) == []
