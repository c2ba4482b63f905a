"""``python -m crm_bridge.migrate plan`` wired to both CRMs (#23): the seeded agency portal read by the
portal reader (every record counted, paced), EspoCRM's schema read through its API (the simulator, and
the real 8.4.2), the plan and the provisioning file written, and that file taken as it is by
``python -m infra.espocrm.provision --plan``: the names and types the plan gives are ones it creates.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.migrate.__main__ import EXIT_USAGE, run
from crm_bridge.migrate.plan import MigrationPlan
from crm_bridge.migrate.schema import EnumOptions, Provisioning
from infra.espocrm import provision
from tests.infra_espocrm.admin_simulator import ADMIN_PASSWORD, SITE, EspoAdminSimulator
from tests.migration.portal import AgencyPortal, seed_agency_portal
from tests.migration.test_espocrm_target import RealAdmin, live_role_kept
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

SCALE = 0.02
"""About 40 leads, 16 contacts, 12 deals: every kind of field filled somewhere, read in a few requests."""
API_KEY = "plan-espo-key-3b7e1a"
API_SITE = "https://crm-api.example.test"
"""The simulated API user's EspoCRM: another host than the admin simulator's (each router answers its own)."""
CLOSING_STATUS = "No reply for 30 days"
"""The seeded portal's custom lead status of failure semantics: a new option that closes a lead."""


@dataclass
class World:
    bitrix24: SimulatedBitrix24
    seeded: AgencyPortal
    env: dict[str, str]
    owner: str
    """The EspoCRM user who gets the records of people who left."""
    workdir: Path
    real: RealEspoCrm | None
    admin: EspoAdminSimulator | None
    """EspoCRM's admin API for provisioning when the target is simulated (a fresh install's fields)."""

    def plan(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        files = ["--out", str(self.workdir / "plan.json"), "--provisioning", str(self.workdir / "provisioning.json")]
        code = run(["plan", *files, *args], out, self.env)
        return code, out.getvalue()

    def provision(self, provisioning: Provisioning, *args: str) -> tuple[int, str]:
        """``provision --plan FILE`` as an operator runs it, on the real server or the admin simulator."""
        path = self.workdir / f"provision-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(provisioning.to_json()), encoding="utf-8")
        out = io.StringIO()
        if self.admin is None:
            assert self.real is not None
            code = provision.run(["--url", self.real.site.url, "--plan", str(path), *args], out, io.StringIO())
        else:
            with self.admin:
                code = provision.run(["--url", SITE, "--plan", str(path), *args], out, io.StringIO())
        return code, out.getvalue()

    def lead_status(self) -> dict[str, Any]:
        """Lead.status as EspoCRM's field manager has it now."""
        if self.admin is not None:
            return self.admin.entity_fields["Lead"]["status"]
        assert self.real is not None
        admin = RealAdmin(self.real)
        try:
            return dict(admin.request("GET", "Admin/fieldManager/Lead/status").json())
        finally:
            admin.close()


@pytest.fixture(params=["simulator", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    real: RealEspoCrm | None = request.getfixturevalue("real_espocrm") if request.param == "real-espocrm" else None
    with SimulatedBitrix24(rate_per_second=None) as bitrix24:
        seeded = seed_agency_portal(bitrix24, scale=SCALE)
        env = {"BITRIX24_WEBHOOK_URL": bitrix24.webhook_url, "BITRIX24_REQUESTS_PER_SECOND": "5"}
        if real is None:
            monkeypatch.setenv(provision.PASSWORD_VARIABLE, ADMIN_PASSWORD)
            with SimulatedEspoCrm(api_key=API_KEY, migration_role=True, base_url=API_SITE) as espocrm:
                espocrm.seed_user("office", "Agency Office", "office@agency.example")
                env |= {"ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": API_KEY}
                yield World(bitrix24, seeded, env, "office", tmp_path, None, EspoAdminSimulator(stock=True))
            return
        bitrix24.router.route(host="127.0.0.1").pass_through()  # the real server is on loopback
        monkeypatch.setenv(provision.PASSWORD_VARIABLE, real.site.admin_password)
        admin = RealAdmin(real)
        owner = f"office.{uuid.uuid4().hex[:8]}"
        admin.seed_user(owner, "Agency Office", f"{owner}@agency.example", active=True)
        env |= {"ESPOCRM_URL": real.site.url, "ESPOCRM_API_KEY": real.api_key}
        world = World(bitrix24, seeded, env, owner, tmp_path, real, None)
        try:
            with live_role_kept(admin):
                # The operator's first step: the migration role, without which EspoCRM's schema is not readable.
                code, out = world.provision(Provisioning())
                assert code == 0, out
                yield world
        finally:
            admin.close()


def test_the_plan_command_counts_places_and_writes_what_provisioning_takes(world: World) -> None:
    code, out = world.plan("--count", "--default-owner", world.owner)

    assert code == 0, out
    plan = MigrationPlan.from_json((world.workdir / "plan.json").read_bytes())
    leads = next(entity for entity in plan.entities if entity.target == "Lead")
    key = next(placement for placement in leads.placements if placement.field == "ID")
    assert key.filled == len(world.seeded.ids["lead"])  # every lead read, none twice
    assert f"ID 'ID' [{key.filled} filled] → cSourceRecord" in out
    assert "UTM_TERM" in leads.empty  # no seeded lead fills it: nothing placed for it
    assert not any(field.source_field == "UTM_TERM" for field in plan.custom_fields if field.entity == "Lead")
    assert "lead → Lead (" in out
    assert f"→ {world.owner} (default owner (left))" in out
    assert plan.currencies == ("EUR", "TRY", "USD")  # deals' CURRENCY_ID, money values "1500|EUR"
    written = Provisioning.from_json(json.loads((world.workdir / "provisioning.json").read_text(encoding="utf-8")))
    assert written == plan.provisioning()
    status = _lead_status_options(written)
    if status is None:  # the real server keeps its state: an earlier move there added the status already
        assert world.real is not None
        assert CLOSING_STATUS in world.lead_status()["options"]
    else:
        assert status.not_actual == (CLOSING_STATUS,)

    dry_code, dry_out = world.provision(written, "--dry-run")

    assert dry_code == 0, dry_out
    assert "  ! " not in dry_out
    for field in written.fields:
        where = "" if field.entity == "Lead" else f"{field.entity}."
        assert f"create field {where}{field.name} (" in dry_out or f"field {where}{field.name} (" in dry_out, field
    if status is not None:
        assert f"{CLOSING_STATUS} close records (notActualOptions)" in dry_out


def test_the_plan_closing_statuses_close_leads_once_provisioned_and_a_rerun_changes_nothing(world: World) -> None:
    assert world.plan("--count", "--default-owner", world.owner)[0] == 0
    written = Provisioning.from_json(json.loads((world.workdir / "provisioning.json").read_text(encoding="utf-8")))
    # The real server gets the options and the fields of the types only a move creates (urlMultiple,
    # array): all of them would take minutes (the dry run checks their names and types).
    lists = tuple(field for field in written.fields if field.type in {"urlMultiple", "array"})
    wanted = written if world.real is None else Provisioning(lists, written.enum_options)

    code, out = world.provision(wanted)
    again, rerun = world.provision(wanted)

    assert (code, again) == (0, 0), out + rerun
    assert "Nothing to change." in rerun
    if _lead_status_options(written) is not None:  # else an earlier move on the real server added it
        assert f"; {CLOSING_STATUS} close records" in rerun
    status = world.lead_status()
    assert CLOSING_STATUS in status["options"]
    assert status["notActualOptions"] == ["Converted", "Recycled", "Dead", CLOSING_STATUS]
    if world.real is None:  # the real server keeps its state: an earlier move there made them already
        assert "urlMultiple" in {field.type for field in lists}  # the websites (WEB) of contacts and companies
    for field in lists:
        where = "" if field.entity == "Lead" else f"{field.entity}."
        assert f"  = field {where}{field.name} ({field.type}) exists" in rerun


def _lead_status_options(provisioning: Provisioning) -> EnumOptions | None:
    """What provisioning adds to Lead.status, if the plan found options to add."""
    return next(
        (item for item in provisioning.enum_options if (item.entity, item.attribute) == ("Lead", "status")), None
    )


@pytest.mark.parametrize("world", ["simulator"], indirect=True)  # the portal's side decides it
def test_a_field_the_plan_cannot_place_stops_the_command_naming_it(world: World) -> None:
    world.bitrix24.entities.add_user_field("lead", "UF_CRM_ROOM", "resourcebooking", "Consultation room")

    code, out = world.plan("--default-owner", world.owner)

    assert code == EXIT_USAGE
    assert "lead.UF_CRM_ROOM ('Consultation room'): Bitrix24 type 'resourcebooking' has no place in EspoCRM" in out
    assert not (world.workdir / "plan.json").exists()
    assert not (world.workdir / "provisioning.json").exists()
