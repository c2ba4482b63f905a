"""The whole portal moved (#23): ``python -m crm_bridge.migrate move`` with the agency's portal at a small
scale, into the EspoCRM simulator and the real EspoCRM 8.4.2, provisioned from the plan first as an
operator does. Every seeded record is found with its links, owner, stage name, list labels, chat
handles, files and notes; a rerun writes nothing; an interrupted run resumes without duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate import move
from crm_bridge.migrate.__main__ import EXIT_INTERRUPTED, EXIT_USAGE, run
from crm_bridge.migrate.bitrix24_portal import PortalReader
from crm_bridge.migrate.espocrm_target import KEYED_ENTITIES, EspoCrmTarget, read_schema, source_key
from crm_bridge.migrate.plan import MigrationPlan, make_plan
from crm_bridge.migrate.schema import ACTIVITY_TARGETS, TARGET_ENTITY, SourceEntity
from crm_bridge.providers import build_provider
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.settings import CrmProviderName, load_settings
from tests.migration.portal import AgencyPortal, seed_agency_portal
from tests.migration.test_espocrm_target import RealAdmin, live_role_kept, provision_real, simulated_plan
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

SCALE = 0.02
BITRIX24_TOKEN = "move0bitrix0token42"
API_KEY = "move-espo-key-3b9e"


@dataclass
class World:
    """The seeded portal, a provisioned EspoCRM, the plan, and the command's environment."""

    bitrix24: SimulatedBitrix24
    portal: AgencyPortal
    espocrm: EspoCrmProvider
    plan: MigrationPlan
    env: dict[str, str]
    workdir: Path
    owners: dict[str, str]
    """Bitrix24 user id → the EspoCRM user id that owns their records."""
    requests: Counter[str]

    def move(self, *args: str) -> tuple[int, str]:
        out = io.StringIO()
        files = ["--plan", str(self.workdir / "plan.json"), "--checkpoint", str(self.workdir / "move.json")]
        code = run(["move", *files, "--report", str(self.workdir / "move.csv"), "--no-progress", *args], out, self.env)
        return code, out.getvalue()

    def report(self) -> list[dict[str, str]]:
        with (self.workdir / "move.csv").open(encoding="utf-8") as file:
            return list(csv.DictReader(file))


def _provider(env: dict[str, str], name: CrmProviderName) -> Any:
    return build_provider(load_settings({**env, "CRM_PROVIDER": "espocrm"}), load_field_mapping(), name=name)


def _planned(espocrm: EspoCrmProvider, env: dict[str, str], users: dict[str, str]) -> MigrationPlan:
    """The plan of the seeded portal as ``plan --count`` makes it (only the fields the records fill;
    the currencies they hold), Aylin paired by the users file, everyone else the office's."""
    portal = _provider(env, CrmProviderName.BITRIX24)
    assert isinstance(portal, Bitrix24Provider)
    try:
        reader = PortalReader(portal)
        source = reader.schema()
        usage = reader.usage(source)
        return make_plan(
            source,
            read_schema(espocrm),
            user_mapping={"1": users["aylin"]},
            default_owner=users["office"],
            filled=usage.filled,
            currencies=usage.currencies,
        )
    finally:
        portal.close()


@pytest.fixture(params=["simulator", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    run_id = uuid.uuid4().hex[:8]
    requests: Counter[str] = Counter()
    original = EspoCrmProvider._request

    def counted(self: EspoCrmProvider, method: str, path: str, **kwargs: Any) -> Any:
        requests[method] += 1
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(EspoCrmProvider, "_request", counted)
    real: RealEspoCrm | None = request.getfixturevalue("real_espocrm") if request.param == "real-espocrm" else None
    with SimulatedBitrix24(token=BITRIX24_TOKEN, rate_per_second=None) as bitrix24:
        portal = seed_agency_portal(bitrix24, scale=SCALE)
        env = {"BITRIX24_WEBHOOK_URL": bitrix24.webhook_url, "BITRIX24_REQUESTS_PER_SECOND": "5"}
        if real is None:
            with SimulatedEspoCrm(api_key=API_KEY, migration_role=True) as sim:
                users = {
                    "aylin": sim.seed_user(f"aylin.{run_id}", "Aylin Koç", "aylin@agency.example"),
                    "office": sim.seed_user(f"office.{run_id}", "Office", "office@agency.example"),
                }
                env |= {"ESPOCRM_URL": sim.base_url, "ESPOCRM_API_KEY": API_KEY}
                yield from _world(
                    bitrix24, portal, env, tmp_path, users, requests, lambda plan: simulated_plan(sim, plan)
                )
            return
        bitrix24.router.route(host="127.0.0.1").pass_through()  # the real server is on loopback
        admin = RealAdmin(real)
        try:
            users = {
                name: admin.seed_user(
                    f"{name}.{run_id}", f"{name.title()} {run_id}", f"{name}.{run_id}@agency.example", active=True
                )
                for name in ("aylin", "office")
            }
            env |= {"ESPOCRM_URL": real.site.url, "ESPOCRM_API_KEY": real.api_key}

            def provision(plan: Any) -> None:
                code, out = provision_real(real, tmp_path, monkeypatch, plan=plan)
                assert code == 0, out

            with live_role_kept(admin):
                # The role reads every moved entity only once provisioned for a move: a first
                # provisioning of the key fields lets the plan read the schema it places into.
                provision(MigrationPlan((), (), (), (), (), ()).provisioning())
                _forget_moves(admin)
                yield from _world(bitrix24, portal, env, tmp_path, users, requests, provision)
        finally:
            admin.close()


def _forget_moves(admin: RealAdmin) -> None:
    """The session's server keeps what earlier tests moved, and the seeded portal's ids are the same
    every run: a move starts on a server holding no moved record (a throwaway server by contract)."""
    where = {"where[0][type]": "isNotNull", "where[0][attribute]": "cSourceRecord"}
    for entity in KEYED_ENTITIES:
        while found := admin.request("GET", entity, params={"select": "id", "maxSize": "200", **where}).json()["list"]:
            for record in found:
                admin.request("DELETE", f"{entity}/{record['id']}")


def _world(
    bitrix24: SimulatedBitrix24,
    portal: AgencyPortal,
    env: dict[str, str],
    workdir: Path,
    users: dict[str, str],
    requests: Counter[str],
    provision: Any,
) -> Iterator[World]:
    espocrm = _provider(env, CrmProviderName.ESPOCRM)
    try:
        user_names = {user.id: user.user_name for user in read_schema(espocrm).users}
        plan = _planned(espocrm, env, {name: user_names[user_id] for name, user_id in users.items()})
        provision(plan.provisioning())
        (workdir / "plan.json").write_text(plan.to_json(), encoding="utf-8")
        owners = {user_id: users["aylin"] if user_id == "1" else users["office"] for user_id in portal.users}
        requests.clear()
        bitrix24.reset_counts()
        yield World(bitrix24, portal, espocrm, plan, env, workdir, owners, requests)
    finally:
        espocrm.close()


def _copies(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    """Every seeded record's copy, read in full, by (kind, Bitrix24 id); a missing one fails."""
    target = EspoCrmTarget(world.espocrm, read_schema(world.espocrm))
    copies = {}
    for kind, ids in world.portal.ids.items():
        for record_id in ids:
            entity = _entity(world, kind, record_id)
            found = target.find(entity, source_key("bitrix24", kind, record_id))
            assert found is not None, (kind, record_id)
            copies[(kind, record_id)] = found
    return copies


def _placed(world: World, entity: str, field: str) -> str:
    """The EspoCRM attribute the plan put an activity field in."""
    plan = next(item for item in world.plan.entities if (item.source, item.target) == ("activity", entity))
    return next(placement.attributes[0] for placement in plan.placements if placement.field == field)


def _entity(world: World, kind: str, record_id: str) -> str:
    if kind == "activity":
        return ACTIVITY_TARGETS[world.bitrix24.entities.activities[int(record_id)]["TYPE_ID"]]
    return TARGET_ENTITY[SourceEntity(kind)]


def _stream(world: World, entity: str, record_id: str) -> list[dict[str, Any]]:
    response = world.espocrm.request("GET", f"{entity}/{record_id}/stream", params={"maxSize": "200"})
    return [note for note in response.json()["list"] if note.get("type") == "Post"]


def test_the_agency_portal_moves_whole_and_a_rerun_writes_nothing(world: World) -> None:
    code, out = world.move()
    first_requests = world.bitrix24.requests, dict(world.requests)

    assert code == 0, out
    copies = _copies(world)
    portal = world.bitrix24.entities
    stages = {stage.stage: stage.option for stage in world.plan.deal_stages}
    statuses = {stage.stage: stage.option for stage in world.plan.lead_statuses}
    bound_twice = 0
    for (kind, record_id), copy in copies.items():
        source = portal.activities[int(record_id)] if kind == "activity" else portal.record(kind, record_id)
        owner = source.get("RESPONSIBLE_ID") if kind == "activity" else source.get("ASSIGNED_BY_ID")
        assert copy["assignedUserId"] == world.owners[str(owner)], (kind, record_id)
        if kind == "contact" and source.get("COMPANY_ID"):
            assert copy["accountId"] == copies[("company", str(source["COMPANY_ID"]))]["id"]
        if kind == "deal":
            assert copy["stage"] == stages[source["STAGE_ID"]]
            assert copies[("contact", str(source["CONTACT_ID"]))]["id"] in copy["contactsIds"]
            assert copy["amountCurrency"] == "EUR"
        if kind == "lead" and record_id not in world.portal.chat_only_leads:
            assert copy["status"] == statuses[source["STATUS_ID"]]
        if kind == "activity":
            owner_kind = {"1": "lead", "2": "deal", "3": "contact", "4": "company"}[str(source["OWNER_TYPE_ID"])]
            assert copy["parentId"] == copies[(owner_kind, str(source["OWNER_ID"]))]["id"]
            entity = _entity(world, kind, record_id)
            for name in ("LOCATION", "AUTHOR_ID"):  # beyond the standard fields: where the plan put them
                if source.get(name):
                    assert copy[_placed(world, entity, name)], (kind, record_id, name)
            if source.get("LOCATION"):
                assert copy[_placed(world, entity, "LOCATION")] == source["LOCATION"]
            also = [str(contact) for kind_id, contact in portal.bindings[int(record_id)][1:] if kind_id == 3]
            for bound_contact in also:  # a deal's activity also bound to the student's contact
                if entity in ("Call", "Meeting"):
                    assert copies[("contact", bound_contact)]["id"] in copy["contactsIds"]
                else:
                    text = copy["body" if entity == "Email" else "description"]
                    assert f"Also bound to: contact {copies[('contact', bound_contact)]['name']}" in text
                bound_twice += 1
    assert bound_twice
    for lead_id, (contact_id, company_id, deal_id) in world.portal.converted_leads.items():
        lead = copies[("lead", lead_id)]
        assert lead["createdContactId"] == copies[("contact", contact_id)]["id"]
        assert lead["createdOpportunityId"] == copies[("deal", deal_id)]["id"]
        if company_id:
            assert lead["createdAccountId"] == copies[("company", company_id)]["id"]
    for lead_id in world.portal.chat_only_leads:  # an Open Channel lead: its title and its chat handle
        lead = copies[("lead", lead_id)]
        assert lead["cTitle"].startswith("Telegram chat #")
        assert lead.get("cImOpenline") or lead.get("cImImol")
    master_stage = next(s.option for s in world.plan.deal_stages if s.pipeline == "Master")
    assert master_stage.startswith("Master: ")
    levels = {"Foundation", "Bachelor", "Master", "PhD"}
    program_level = {f.name for f in world.plan.custom_fields if f.label == "Program level" and f.entity == "Lead"}
    held = [
        copy[name] for (kind, _), copy in copies.items() if kind == "lead" for name in program_level if copy.get(name)
    ]
    assert held
    assert set(held) <= levels  # labels, never the option ids
    note_files = []
    for (kind, record_id), count in world.portal.comments.items():
        copy = copies[(kind, record_id)]
        posts = _stream(world, _entity(world, kind, record_id), copy["id"])
        assert len(posts) == count, (kind, record_id)
        assert all(" by " in post["post"].splitlines()[0] for post in posts)  # its author, in the text
        note_files += [file_id for post in posts for file_id in post.get("attachmentsIds") or ()]
    file_fields = {f.name for f in world.plan.custom_fields if f.type in ("file", "attachmentMultiple")}
    record_files = [
        file_id
        for copy in copies.values()
        for name in (*file_fields, "attachments")
        for file_id in (copy.get(f"{name}Ids") or ([copy[f"{name}Id"]] if copy.get(f"{name}Id") else []))
    ]
    assert len(record_files) + len(note_files) == len(world.portal.file_ids)  # every file, once
    assert not [row for row in world.report() if row["action"] == "failed"]
    print(f"\nfirst move: {first_requests[0]} Bitrix24 requests, EspoCRM requests {first_requests[1]}")

    world.requests.clear()
    world.bitrix24.reset_counts()
    code, out = world.move()

    assert code == 0, out
    assert {row["action"] for row in world.report()} == {"unchanged"}, out
    assert "notes: 0; files on records: 0" in out
    assert world.requests["POST"] == world.requests["PUT"] == 0
    print(f"rerun: {world.bitrix24.requests} Bitrix24 requests, EspoCRM requests {dict(world.requests)}")


def _interrupt(world: World, monkeypatch: pytest.MonkeyPatch, *, at_write: int) -> None:
    """A move stopped (Ctrl-C) at its ``at_write``-th record: its checkpoint is left unfinished."""
    original = EspoCrmTarget.write
    writes = Counter[str]()

    def write(self: EspoCrmTarget, entity: str, key: str, *args: Any, **kwargs: Any) -> Any:
        writes["all"] += 1
        if writes["all"] == at_write:
            raise KeyboardInterrupt
        return original(self, entity, key, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(EspoCrmTarget, "write", write)
        code, out = world.move()
    assert code == EXIT_INTERRUPTED, out


def test_an_interrupted_move_resumes_where_it_stopped_without_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt(world, monkeypatch, at_write=30)  # among the contacts

    code, out = world.move()

    assert code == 0, out
    copies = _copies(world)
    assert len(copies) == sum(len(ids) for ids in world.portal.ids.values())
    rows = world.report()
    keys = [row["source_record"] for row in rows]
    assert len(keys) == len(set(keys)) == len(copies)  # each record once across both runs
    assert {row["action"] for row in rows} == {"created"}


@pytest.mark.parametrize("world", ["simulator"], indirect=True)
def test_a_resumed_move_refuses_another_plan_and_restart_moves_with_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt(world, monkeypatch, at_write=10)
    aylin = next(owner.user_name for owner in world.plan.owners if owner.user_id == "1")
    other = replace(world.plan, owners=tuple(replace(owner, user_name=aylin) for owner in world.plan.owners))
    (world.workdir / "plan.json").write_text(other.to_json(), encoding="utf-8")  # `plan` rerun: Aylin owns all
    world.requests.clear()

    code, out = world.move()

    assert code == EXIT_USAGE, out
    checkpoint = world.workdir / "move.json"
    assert out.count("\n") == 1
    assert out.startswith(f"error: the checkpoint {checkpoint} is of a move with another plan; pass --restart")
    assert world.requests["POST"] == world.requests["PUT"] == 0

    code, out = world.move("--restart")

    assert code == 0, out
    copies = _copies(world)
    assert {copy["assignedUserId"] for copy in copies.values()} == {world.owners["1"]}  # the new plan's owner
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["plan"] == other.digest()


@pytest.mark.parametrize("world", ["simulator"], indirect=True)
def test_a_checkpoint_of_the_previous_release_without_the_plan_resumes_and_records_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt(world, monkeypatch, at_write=10)
    checkpoint = world.workdir / "move.json"
    written = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert written.pop("plan") == world.plan.digest()
    checkpoint.write_text(json.dumps(written), encoding="utf-8")

    code, out = world.move()

    assert code == 0, out
    keys = [row["source_record"] for row in world.report()]
    assert len(keys) == len(set(keys)) == sum(len(ids) for ids in world.portal.ids.values())  # resumed, not redone
    assert json.loads(checkpoint.read_text(encoding="utf-8"))["plan"] == world.plan.digest()


@pytest.mark.parametrize("world", ["simulator"], indirect=True)
def test_the_next_chunk_is_read_while_the_previous_one_is_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(move, "PAGE", 5)  # contacts in chunks of 5: the seeded portal has more than one
    read_comments = PortalReader.comments
    write = EspoCrmTarget.write
    second_chunk_read = threading.Event()
    readers: set[str] = set()
    contacts_read: list[str] = []
    overlapped: list[bool] = []

    def comments(self: PortalReader, entity: SourceEntity, record_ids: Any) -> Any:
        readers.add(threading.current_thread().name)
        if entity is SourceEntity.CONTACT:
            contacts_read.append(entity)
            if len(contacts_read) == 2:
                second_chunk_read.set()
        return read_comments(self, entity, record_ids)

    def first_contact_waits(self: EspoCrmTarget, entity: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if entity == "Contact" and not overlapped:
            overlapped.append(second_chunk_read.wait(60))  # set at once when reads run ahead; never if not
        return write(self, entity, key, *args, **kwargs)

    monkeypatch.setattr(PortalReader, "comments", comments)
    monkeypatch.setattr(EspoCrmTarget, "write", first_contact_waits)

    code, out = world.move()

    assert code == 0, out
    assert overlapped == [True]
    assert readers == {"crm-bridge-move-reader"}
    keys = [row["source_record"] for row in world.report()]
    assert len(keys) == len(set(keys)) == sum(len(ids) for ids in world.portal.ids.values())


def test_a_dry_run_counts_what_the_plan_expects_and_writes_nothing(world: World) -> None:
    code, out = world.move("--dry-run")

    assert code == 0, out
    assert world.requests["POST"] == world.requests["PUT"] == 0
    for kind, ids in world.portal.ids.items():
        assert f"  {kind}: created {len(ids)}" in out, out


@pytest.mark.parametrize("world", ["simulator"], indirect=True)
def test_leads_the_backfill_copied_are_brought_up_to_the_plan_not_duplicated(world: World) -> None:
    out = io.StringIO()
    files = ["--checkpoint", str(world.workdir / "backfill.json"), "--report", str(world.workdir / "backfill.csv")]
    code = run(["backfill", "--from", "bitrix24", "--to", "espocrm", *files, "--no-progress"], out, world.env)
    assert code == 0, out.getvalue()

    code, output = world.move()

    assert code == 0, output
    leads = {row["source_record"]: row["action"] for row in world.report() if row["entity"] == "Lead"}
    assert len(leads) == len(world.portal.ids["lead"])
    with (world.workdir / "backfill.csv").open(encoding="utf-8") as file:
        copied = [row["source_record"] for row in csv.DictReader(file) if row["action"] == "created"]
    assert copied
    assert {leads[key] for key in copied} <= {"updated", "unchanged"}  # found by its key, not created again
    for key in leads:
        found = world.espocrm.search(
            [{"type": "equals", "attribute": "cSourceRecord", "value": key}], select=["cSourceRecord"], max_size=5
        )
        assert len(found) == 1, key


def test_the_move_refuses_a_file_that_is_not_a_plan(tmp_path: Path) -> None:
    provisioning = tmp_path / "provisioning.json"
    provisioning.write_text('{"customFields": []}', encoding="utf-8")  # what provision reads, not the plan
    out = io.StringIO()

    code = run(["move", "--plan", str(provisioning), "--no-progress"], out, {})

    assert code == EXIT_USAGE
    assert "not a plan written by the plan command" in out.getvalue()
