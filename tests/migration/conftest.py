"""Both CRMs of a migration: the Bitrix24 simulator as the agency's old portal, and EspoCRM as the new
one (the real server where the harness runs it, marked ``real_espocrm``; the simulator always)."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.__main__ import run
from crm_bridge.providers import CrmProvider, build_provider
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.providers.records import CrmLead, LeadReader
from crm_bridge.settings import CrmProviderName, load_settings
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

ESPOCRM_API_KEY = "migration-espo-key-7c1d9e"
BITRIX24_TOKEN = "migration0bitrix0token42"
REQUESTS_PER_SECOND = "5"
"""Bitrix24's pace in these tests (an Enterprise portal's): the bench measures the usual 2."""


@dataclass
class Migration:
    """The two CRMs, the settings the command reads, and where its files go."""

    bitrix24: SimulatedBitrix24
    espocrm: SimulatedEspoCrm | None
    """The simulator when the target is simulated (its backdoor sees every request); None: the real one."""
    env: dict[str, str]
    workdir: Path
    providers: list[CrmProvider] = field(default_factory=list)

    def run(self, *args: str) -> tuple[int, str]:
        """``python -m crm_bridge.migrate ARGS`` with both CRMs configured; (exit code, output)."""
        out = io.StringIO()
        code = run(list(args), out, self.env)
        return code, out.getvalue()

    def backfill(self, *args: str, source: str = "bitrix24", target: str = "espocrm") -> tuple[int, str]:
        files = ["--checkpoint", str(self.workdir / f"{source}-{target}.json"), "--no-progress"]
        if "--report" not in args:
            files += ["--report", str(self.workdir / f"{source}-{target}.csv")]
        return self.run("backfill", "--from", source, "--to", target, *files, *args)

    def provider(self, name: str) -> CrmProvider:
        """A provider of either CRM, as the live flow builds it."""
        settings = load_settings({**self.env, "CRM_PROVIDER": name})
        provider = build_provider(settings, load_field_mapping(), name=CrmProviderName(name))
        self.providers.append(provider)
        return provider

    def leads(self, name: str) -> list[CrmLead]:
        """Every lead of a CRM with its notes, read as the migration reads it."""
        reader = self.provider(name)
        assert isinstance(reader, LeadReader)
        leads: list[CrmLead] = []
        cursor: str | None = None
        while True:
            page = reader.read_leads(after=cursor, since=None)
            leads += page.leads
            if page.cursor is None:
                return leads
            cursor = page.cursor


def kill_after_notes(monkeypatch: pytest.MonkeyPatch, notes: int) -> None:
    """The operator's Ctrl-C (or a crash) in the middle of a lead: after its create, between its notes."""
    original = EspoCrmProvider._add_note
    written = Counter[str]()

    def add_note(self: EspoCrmProvider, record_id: str, text: str) -> str:
        written["notes"] += 1
        if written["notes"] == notes:
            raise KeyboardInterrupt
        return original(self, record_id, text)

    monkeypatch.setattr(EspoCrmProvider, "_add_note", add_note)


def report_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(encoding="utf-8") as file:
        return list(csv.DictReader(file))


def snapshot(leads: Sequence[CrmLead]) -> list[tuple[Any, ...]]:
    """What a person sees of the leads, without the ids and times a run assigns."""
    return sorted(
        (
            lead.copied_from or lead.created_by_operation() or "",
            lead.first_name,
            lead.last_name,
            tuple(sorted(lead.phones)),
            tuple(sorted(lead.emails)),
            lead.status,
            tuple(sorted((str(name), str(value)) for name, value in lead.values.items())),
            tuple(note.text for note in lead.notes),
        )
        for lead in leads
    )


def _empty(real: RealEspoCrm) -> None:
    """A migration reads and compares whole CRMs: the session's server starts this test with no lead
    (another test's leftovers would be leads "only in EspoCRM"). It is a throwaway server by contract."""
    admin = real.admin()
    try:
        for lead_id in admin.lead_ids(since="2000-01-01 00:00:00"):
            admin.request("DELETE", f"Lead/{lead_id}")
    finally:
        admin.close()


@pytest.fixture(params=["espocrm", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def migration(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Migration]:
    # The real server first: the simulator's router answers every request made while it runs.
    real: RealEspoCrm | None = request.getfixturevalue("real_espocrm") if request.param == "real-espocrm" else None
    with SimulatedBitrix24(token=BITRIX24_TOKEN, rate_per_second=None) as bitrix24:
        env = {"BITRIX24_WEBHOOK_URL": bitrix24.webhook_url, "BITRIX24_REQUESTS_PER_SECOND": REQUESTS_PER_SECOND}
        if real is not None:
            bitrix24.router.route(host="127.0.0.1").pass_through()  # the real server is on loopback
            _empty(real)
            proxy = real.proxy()
            state = real.state(proxy)
            world = Migration(
                bitrix24, None, env | {"ESPOCRM_URL": real.site.url, "ESPOCRM_API_KEY": real.api_key}, tmp_path
            )
            try:
                yield world
            finally:
                for provider in world.providers:
                    provider.close()
                proxy.close()
                state.clean()
        else:
            with SimulatedEspoCrm(api_key=ESPOCRM_API_KEY) as espocrm:
                world = Migration(
                    bitrix24,
                    espocrm,
                    env | {"ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": ESPOCRM_API_KEY},
                    tmp_path,
                )
                yield world
                for provider in world.providers:
                    provider.close()
