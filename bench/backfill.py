"""The backfill's rate (issue 16): Bitrix24's leads into EspoCRM, within the portal's request budget.

The source is the Bitrix24 simulator with the real portal's limit (a leaky bucket, 2 requests/s,
a burst of 50) seeded like an agency's portal (tests/migration/agency.py); the target the EspoCRM
simulator. The floor is the time the source's requests need at 2 a second: the backfill reads a page
ahead while it writes, so its writes should hide behind the pacing.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.backfill import Backfill
from crm_bridge.providers import build_provider
from crm_bridge.settings import CrmProviderName, load_settings
from tests.migration.agency import seed_portal
from tests.simulators.bitrix24 import RATE_PER_SECOND, SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

_KEY = "bench-espocrm-key-0123456789"


@dataclass(frozen=True)
class BackfillResult:
    leads: int
    seconds: float
    source_requests: int
    refused: int
    """Requests the portal's limit refused (503 QUERY_LIMIT_EXCEEDED): the pacing should leave none."""
    target_requests: int
    counts: dict[str, int]

    @property
    def floor_seconds(self) -> float:
        return self.source_requests / RATE_PER_SECOND

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else 0.0

    @property
    def rate(self) -> float:
        return self.leads / self.seconds if self.seconds else 0.0


def measure_backfill(leads: int) -> BackfillResult:
    with (
        SimulatedBitrix24() as bitrix24,
        SimulatedEspoCrm(api_key=_KEY) as espocrm,
        tempfile.TemporaryDirectory() as workdir,
    ):
        seed_portal(bitrix24, leads)
        env = {
            "CRM_PROVIDER": "espocrm",
            "ESPOCRM_URL": espocrm.base_url,
            "ESPOCRM_API_KEY": _KEY,
            "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url,
            "BITRIX24_REQUESTS_PER_SECOND": str(RATE_PER_SECOND),
        }
        settings = load_settings(env)
        mapping = load_field_mapping()
        source = build_provider(settings, mapping, name=CrmProviderName.BITRIX24)
        target = build_provider(settings, mapping)
        bitrix24.reset_counts()
        if bitrix24.limit is not None:  # a portal nobody has called for a while
            bitrix24.limit.reset()
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
