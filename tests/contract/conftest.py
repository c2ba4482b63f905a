"""The contract suite runs every behaviour against every provider: the EspoCRM and Bitrix24
simulators, the sandbox, and the real EspoCRM (tests/real_crm), through one reading interface."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_bridge.field_mapping import MappedField, load_field_mapping
from crm_bridge.providers import CrmProvider, build_provider
from crm_bridge.settings import load_settings
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.base import SimulatedCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.simulators.sandbox import SandboxCrm

ESPOCRM_API_KEY = "contract-espo-key-5f1e2d3c4b"
BITRIX24_TOKEN = "contract0bitrix0token0x9"


@dataclass
class Crm:
    provider: CrmProvider
    sim: SimulatedCrm
    secrets: tuple[str, ...]

    def attribute(self, field: MappedField) -> str:
        attribute = self.provider.mapping.attribute(field)
        assert attribute is not None, f"the default mapping maps {field}"
        return attribute


REAL_TIMEOUT_SECONDS = 2.0
"""The provider's timeout against the real server: its slowest answer (a first request after a
field change rebuilds EspoCRM's caches) stays well under it; a hang is 1.5 times it."""


@pytest.fixture(params=["espocrm", "bitrix24", "sandbox", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crm]:
    mapping = load_field_mapping()
    if request.param == "real-espocrm":
        real: RealEspoCrm = request.getfixturevalue("real_espocrm")
        proxy = real.proxy(client_timeout_seconds=REAL_TIMEOUT_SECONDS)
        state = real.state(proxy)
        settings = load_settings(
            {
                "CRM_PROVIDER": "espocrm",
                "ESPOCRM_URL": proxy.base_url,
                "ESPOCRM_API_KEY": real.api_key,
                "CRM_TIMEOUT_SECONDS": str(REAL_TIMEOUT_SECONDS),
            }
        )
        provider = build_provider(settings, mapping)
        try:
            yield Crm(provider, state, (real.api_key,))
        finally:
            provider.close()
            proxy.close()
            state.clean()
    elif request.param == "espocrm":
        with SimulatedEspoCrm(api_key=ESPOCRM_API_KEY) as espocrm:
            settings = load_settings(
                {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": ESPOCRM_API_KEY}
            )
            yield Crm(build_provider(settings, mapping), espocrm, (ESPOCRM_API_KEY,))
    elif request.param == "bitrix24":
        with SimulatedBitrix24(token=BITRIX24_TOKEN) as bitrix24:
            settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url})
            yield Crm(build_provider(settings, mapping), bitrix24, (BITRIX24_TOKEN, bitrix24.webhook_url))
    else:
        db_path = tmp_path / "sandbox.sqlite3"
        with SandboxCrm(db_path) as sandbox:
            settings = load_settings({"CRM_PROVIDER": "sandbox", "SANDBOX_DB_PATH": str(db_path)})
            yield Crm(build_provider(settings, mapping), sandbox, ())
