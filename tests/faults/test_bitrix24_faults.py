"""The same promises with Bitrix24 as the CRM, smaller: exactly once, and its webhook token never shown.

Bitrix24's webhook URL carries its token, so it is the secret most at risk of a log line; its
failures are its own (503 QUERY_LIMIT_EXCEEDED, 429 OPERATION_TIME_LIMIT with a minute's wait, 401
for a re-issued webhook, 5xx and timeouts before and after the call ran). The simulator answers in
process (respx); the scenario, the worker, the queue and the count are the ones of the EspoCRM run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.crm import FlakyBitrix24
from tests.faults.scenario import FaultRun, build_arrivals, leaked, run_and_count

SEED = 4242
TOKEN = "b24faultrun0token0x5d8e1c"


@pytest.fixture(scope="module")
def bitrix_run() -> Iterator[FaultRun]:
    arrivals = build_arrivals(
        # No odd applications: Bitrix24 stores long values and unknown list items that EspoCRM refuses.
        SEED,
        applications=150,
        clicks=150,
        odd_count=0,
        poison_count=8,
        anonymous_sessions=45,
        known_visitor_clicks=20,
    )
    crm = FlakyBitrix24(token=TOKEN, seed=SEED)
    with crm:
        environment = {"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": crm.webhook_url}
        yield run_and_count(crm, environment, arrivals, SEED, "bitrix24", (TOKEN, crm.webhook_url))


def test_every_good_operation_reaches_bitrix24_exactly_once(bitrix_run: FaultRun) -> None:
    assert bitrix_run.problems[:20] == []
    assert (bitrix_run.figures.lost, bitrix_run.figures.duplicates) == (0, 0)
    assert bitrix_run.figures.dead_lettered == bitrix_run.figures.poison_operations == 8
    assert set(bitrix_run.figures.answers) <= {201, 202, 302}
    assert sum(count for name, count in bitrix_run.figures.faults.items() if "after_write" in name) > 0


def test_the_webhook_token_and_contacts_never_reach_logs_or_metrics(bitrix_run: FaultRun) -> None:
    assert "credentials" in bitrix_run.logs or "Wrong authorization" in bitrix_run.logs, "401s were logged"
    assert leaked(bitrix_run.private_values, bitrix_run.logs, bitrix_run.stdout) == []
