"""The backfill's rate (issue 16): Bitrix24's leads into EspoCRM, within the portal's request budget.

The source is the Bitrix24 simulator with the real portal's limit (:mod:`bench.paced`) seeded like an
agency's portal (tests/migration/agency.py); the target the EspoCRM simulator. The floor is the time
the source's requests need at 2 a second: the backfill reads a page ahead while it writes, so its
writes should hide behind the pacing.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.paced import API_KEY, PacedRun, at_rest, environment
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.backfill import Backfill
from crm_bridge.providers import build_provider
from crm_bridge.settings import CrmProviderName, load_settings
from tests.migration.agency import seed_portal
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm


@dataclass(frozen=True)
class BackfillResult(PacedRun):
    leads: int
    counts: dict[str, int]

    @property
    def rate(self) -> float:
        return self.leads / self.seconds if self.seconds else 0.0


def measure_backfill(leads: int) -> BackfillResult:
    with (
        SimulatedBitrix24() as bitrix24,
        SimulatedEspoCrm(api_key=API_KEY) as espocrm,
        tempfile.TemporaryDirectory() as workdir,
    ):
        seed_portal(bitrix24, leads)
        settings = load_settings(environment(bitrix24, espocrm))
        mapping = load_field_mapping()
        source = build_provider(settings, mapping, name=CrmProviderName.BITRIX24)
        target = build_provider(settings, mapping)
        at_rest(bitrix24)
        backfill = Backfill(source, target, Path(workdir) / "checkpoint.json", Path(workdir) / "report.csv")
        started = time.monotonic()
        try:
            backfill.run()
        finally:
            source.close()
            target.close()
        seconds = time.monotonic() - started
        return BackfillResult(
            leads=sum(backfill.counts.values()),
            seconds=seconds,
            source_requests=bitrix24.requests,
            refused=bitrix24.rate_limited,
            target_requests=len(espocrm.router.calls),
            counts=dict(Counter(backfill.counts)),
        )
