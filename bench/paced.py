"""What the migrations from Bitrix24 (the lead backfill, the whole portal's move) are measured against:
the portal's request budget. The source is the Bitrix24 simulator with the real portal's limit (a
leaky bucket, 2 requests/s, a burst of 50); the floor is the time a run's requests need at 2 a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.simulators.bitrix24 import RATE_PER_SECOND, SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

API_KEY = "bench-espocrm-key-0123456789"
"""The EspoCRM simulator's API key."""


@dataclass(frozen=True)
class PacedRun:
    seconds: float
    source_requests: int
    refused: int
    """Requests the portal's limit refused (503 QUERY_LIMIT_EXCEEDED): the pacing should leave none."""
    target_requests: int

    @property
    def floor_seconds(self) -> float:
        return self.source_requests / RATE_PER_SECOND

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.floor_seconds else 0.0


def environment(bitrix24: SimulatedBitrix24, espocrm: SimulatedEspoCrm) -> dict[str, str]:
    """Both CRMs configured as for the functions, Bitrix24 paced at the portal's limit."""
    return {
        "CRM_PROVIDER": "espocrm",
        "ESPOCRM_URL": espocrm.base_url,
        "ESPOCRM_API_KEY": API_KEY,
        "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url,
        "BITRIX24_REQUESTS_PER_SECOND": str(RATE_PER_SECOND),
    }


def at_rest(bitrix24: SimulatedBitrix24) -> None:
    """A portal nobody has called for a while (its burst available again), its requests counted from here:
    what seeding and earlier steps sent is not the measured run's."""
    bitrix24.reset_counts()
    if bitrix24.limit is not None:
        bitrix24.limit.reset()
