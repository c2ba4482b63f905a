"""EspoCRM's side of the whole-CRM move (#23), on the simulator and on the real EspoCRM 8.4.2.

The target is provisioned as an operator would for a move (``provision --plan``: the plan's custom
fields, stage options, currencies, the migration role); then every kind of record is written with
its links, owner and dates, its comments (author and date in the text: the server ignores an API
user's ``createdById`` / ``createdAt``) and its files, read back, and written again: the rerun
writes nothing.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_bridge.errors import CrmConfigurationError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.espocrm_target import (
    Comment,
    EspoCrmTarget,
    FileContent,
    WriteAction,
    read_schema,
    source_key,
)
from crm_bridge.migrate.schema import CustomField, EnumOptions, Provisioning, TargetSchema
from crm_bridge.providers import build_provider
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.providers.records import RecordedNote
from crm_bridge.settings import CrmProviderName, load_settings
from infra.espocrm import provision
from tests.real_crm.fixtures import RealEspoCrm
from tests.simulators.espocrm import DEFAULT_CUSTOM_ATTRIBUTES, SimulatedEspoCrm

API_KEY = "target-espo-key-5d2f"
PLAN = Provisioning(
    fields=(
        CustomField("Account", "cUfDocuments", "attachmentMultiple", "Documents", source_field="UF_CRM_10"),
        CustomField("Contact", "cUfPassport", "file", "Passport", source_field="UF_CRM_11"),
        CustomField("Contact", "cUfTelegram", "varchar", "Telegram", source_field="IM"),
        CustomField("Contact", "cUfPrograms", "multiEnum", "Programs", ("MBA", "BSc", "MSc"), "UF_CRM_12"),
        CustomField("Opportunity", "cUfIntake", "date", "Intake", source_field="UF_CRM_13"),
        CustomField("Opportunity", "cUfScholarship", "bool", "Scholarship", source_field="UF_CRM_14"),
        CustomField("Lead", "cUfSponsor", "link", "Sponsor", source_field="UF_CRM_15", foreign_entity="Account"),
    ),
    enum_options=(
        EnumOptions("Lead", "status", ("Applied",)),
        EnumOptions(
            "Opportunity", "stage", ("Visa", "Enrolled", "Rejected"), {"Visa": 60, "Enrolled": 100, "Rejected": 0}
        ),
    ),
    currencies=("EUR",),
)
PASSPORT = FileContent("passport.pdf", "application/pdf", b"%PDF-1.4 passport\x00\x01")
OFFER = FileContent("offer.pdf", "application/pdf", b"%PDF-1.4 offer letter")
CONTRACT = FileContent("contract.txt", "text/plain", "Договор №7".encode())


@dataclass
class Target:
    """A provisioned EspoCRM, the API user's provider, and an admin's view for assertions."""

    provider: EspoCrmProvider
    admin: Any
    """Reads a record or a file as an administrator sees it (the simulator's backdoor or the REST API)."""
    run: str
    """Unique per test: the real server keeps records across tests."""

    def seed_user(self, name: str, email: str, *, active: bool = True) -> str:
        user_name = f"{name.lower().replace(' ', '.')}.{self.run}"
        return str(self.admin.seed_user(user_name, name, email, active=active))

    def read(self, entity: str, record_id: str) -> dict[str, Any]:
        return dict(self.admin.record(entity, record_id))

    def stream(self, entity: str, record_id: str) -> list[dict[str, Any]]:
        return list(self.admin.stream(entity, record_id))

    def file(self, file_id: str) -> bytes:
        return bytes(self.admin.file_bytes(file_id))


class _SimulatedAdmin:
    def __init__(self, sim: SimulatedEspoCrm) -> None:
        self.sim = sim

    def seed_user(self, user_name: str, name: str, email: str, *, active: bool) -> str:
        return self.sim.seed_user(user_name, name, email, active=active)

    def record(self, entity: str, record_id: str) -> dict[str, Any]:
        return self.sim.lead(record_id) if entity == "Lead" else self.sim.record(entity, record_id)

    def stream(self, entity: str, record_id: str) -> list[dict[str, Any]]:
        return self.sim.stream(entity, record_id)

    def file_bytes(self, file_id: str) -> bytes:
        return self.sim.file(file_id).content


class RealAdmin:
    def __init__(self, real: RealEspoCrm) -> None:
        self._http = httpx.Client(
            base_url=f"{real.site.url}/api/v1/", auth=(real.site.admin_user, real.site.admin_password), timeout=120
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        assert response.status_code == 200, (
            method,
            path,
            response.status_code,
            response.headers.get("X-Status-Reason"),
        )
        return response

    def seed_user(self, user_name: str, name: str, email: str, *, active: bool) -> str:
        first, _, last = name.partition(" ")
        body = {"userName": user_name, "firstName": first, "lastName": last or first, "emailAddress": email}
        return str(self.request("POST", "User", json={**body, "type": "regular", "isActive": active}).json()["id"])

    def record(self, entity: str, record_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"{entity}/{record_id}").json())

    def stream(self, entity: str, record_id: str) -> list[dict[str, Any]]:
        notes = self.request("GET", f"{entity}/{record_id}/stream", params={"maxSize": "200"}).json()["list"]
        return [note for note in reversed(notes) if note["type"] == "Post"]

    def file_bytes(self, file_id: str) -> bytes:
        return bytes(self.request("GET", f"Attachment/file/{file_id}").content)

    def close(self) -> None:
        self._http.close()


def _provider(url: str, api_key: str) -> EspoCrmProvider:
    settings = load_settings({"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": url, "ESPOCRM_API_KEY": api_key})
    provider = build_provider(settings, load_field_mapping(), name=CrmProviderName.ESPOCRM)
    assert isinstance(provider, EspoCrmProvider)
    return provider


def simulated_plan(sim: SimulatedEspoCrm, plan: Provisioning = PLAN) -> None:
    """What ``provision --plan`` leaves in the simulator (the command itself is tested on the
    admin simulator in tests/infra_espocrm and on the real server here)."""
    mapping = load_field_mapping().espocrm
    fields = [*provision.move_field_specs(plan, mapping)]
    for spec in fields:
        if spec.entity != "Lead" or spec.attribute not in sim.custom_attributes:
            definition = {key: value for key, value in spec.definition.items() if key not in ("name", "label")}
            sim.moved.add_field(spec.entity, spec.attribute, definition, spec.definition["label"])
        if spec.entity == "Lead":
            suffixes = {"currency": ("", "Currency"), "file": ("Id",), "attachmentMultiple": ("Ids",), "link": ("Id",)}
            for suffix in suffixes.get(str(spec.definition.get("type")), ("",)):
                sim.add_attribute(spec.attribute + suffix)
    for item in plan.enum_options:
        definition = sim.moved.definitions[item.entity][item.attribute]
        definition["options"] = [*definition["options"], *item.options]
        if item.probabilities:
            definition["probabilityMap"] = {**definition["probabilityMap"], **item.probabilities}
        if item.entity == "Lead":
            sim.define_field(item.attribute, options=definition["options"])
    sim.moved.currencies += plan.currencies


@pytest.fixture(params=["simulator", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    run = uuid.uuid4().hex[:8]
    if request.param == "simulator":
        lead_links = [f"{item.name}Id" for item in PLAN.fields if item.entity == "Lead" and item.type == "link"]
        customs = (*DEFAULT_CUSTOM_ATTRIBUTES, *lead_links)
        with SimulatedEspoCrm(api_key=API_KEY, custom_attributes=customs, migration_role=True) as sim:
            simulated_plan(sim)
            provider = _provider(sim.base_url, API_KEY)
            yield Target(provider, _SimulatedAdmin(sim), run)
            provider.close()
        return
    real: RealEspoCrm = request.getfixturevalue("real_espocrm")
    admin = RealAdmin(real)
    with live_role_kept(admin):
        code, out = provision_real(real, tmp_path, monkeypatch)
        assert code == 0, out
        provider = _provider(real.site.url, real.api_key)
        try:
            yield Target(provider, admin, run)
        finally:
            provider.close()
    admin.close()


def provision_real(
    real: RealEspoCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str, plan: Provisioning = PLAN
) -> tuple[int, str]:
    """``provision --plan`` against the real server, as an operator runs it."""
    plan_file = tmp_path / "provisioning.json"
    plan_file.write_text(json.dumps(plan.to_json()), encoding="utf-8")
    monkeypatch.setenv(provision.PASSWORD_VARIABLE, real.site.admin_password)
    out = io.StringIO()
    code = provision.run(["--url", real.site.url, "--plan", str(plan_file), *args], out, io.StringIO())
    return code, out.getvalue()


@contextmanager
def live_role_kept(admin: RealAdmin) -> Iterator[None]:
    """Other tests of the session expect the live flow's role (leads only): given back afterwards."""
    roles = admin.request("GET", "Role", params={"select": "id,name,data"}).json()["list"]
    role = next(role for role in roles if role["name"] == provision.DEFAULT_ROLE_NAME)
    try:
        yield
    finally:
        admin.request("PUT", f"Role/{role['id']}", json={"data": role["data"]})


@pytest.mark.real_espocrm
def test_the_move_provisioning_on_the_real_server_is_idempotent(
    real_espocrm: RealEspoCrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = RealAdmin(real_espocrm)
    try:
        with live_role_kept(admin):
            assert provision_real(real_espocrm, tmp_path, monkeypatch)[0] == 0

            code, out = provision_real(real_espocrm, tmp_path, monkeypatch)
            dry_code, dry_out = provision_real(real_espocrm, tmp_path, monkeypatch, "--dry-run")

            assert (code, dry_code) == (0, 0), out + dry_out
            assert "Nothing to change." in out
            assert "Dry run: 0 change(s) planned, nothing written." in dry_out
            assert "  = field Opportunity.stage has the options Visa, Enrolled, Rejected" in out
            assert "  = field cUfSponsor (link to Account) exists" in out  # Lead's fields are named bare
            probabilities = admin.request("GET", "Admin/fieldManager/Opportunity/stage").json()["probabilityMap"]
            assert {name: probabilities[name] for name in ("Visa", "Enrolled", "Rejected")} == {
                "Visa": 60,
                "Enrolled": 100,
                "Rejected": 0,
            }
    finally:
        admin.close()


def test_the_schema_holds_every_moved_entity_its_plan_fields_and_the_active_users(target: Target) -> None:
    salesperson = target.seed_user("Anna Sales", f"anna.{target.run}@agency.example")
    target.seed_user("Oleg Left", f"oleg.{target.run}@agency.example", active=False)

    schema = read_schema(target.provider)

    for entity in ("Lead", "Contact", "Account", "Opportunity", "Call", "Meeting", "Task", "Email", "Note"):
        assert schema.fields[entity], entity
    for entity in ("Account", "Contact", "Opportunity", "Call", "Meeting", "Task", "Email", "Lead"):
        key = schema.fields[entity]["cSourceRecord"]
        assert (key.type, key.custom) == ("varchar", True)
    assert schema.fields["Contact"]["cUfPrograms"].options == ("MBA", "BSc", "MSc")
    assert schema.fields["Contact"]["cUfPassport"].type == "file"
    assert schema.fields["Contact"]["cUfPassport"].label == "Passport"
    assert schema.fields["Lead"]["cUfSponsor"].type == "link"
    # The real server keeps what earlier tests provisioned (a move's "Master: ..." stages): ours are among them
    assert "Applied" in schema.fields["Lead"]["status"].options
    stages = schema.fields["Opportunity"]["stage"].options
    assert [stage for stage in stages if stage in {"Visa", "Enrolled", "Rejected"}] == ["Visa", "Enrolled", "Rejected"]
    assert not schema.fields["Opportunity"]["stage"].custom
    assert schema.fields["Opportunity"]["amount"].type == "currency"
    emails = {user.email: user for user in schema.users}
    assert emails[f"anna.{target.run}@agency.example"].id == salesperson
    assert emails[f"anna.{target.run}@agency.example"].active
    # EspoCRM shows a non-admin only active users (fixture 58): one who left is not there to pair with.
    assert f"oleg.{target.run}@agency.example" not in emails


def _write_portal(writer: EspoCrmTarget, run: str, owner: str) -> dict[str, Any]:
    """One converted student's records as the move writes them; returns what each write did."""

    def key(kind: str, number: int) -> str:
        return source_key("bitrix24", kind, f"{number}{run}")

    account = writer.write(
        "Account",
        key("company", 7),
        {"name": f"Acme Lyceum {run}", "assignedUserId": owner, "website": "https://acme.example"},
        files={"cUfDocuments": [OFFER, CONTRACT]},
    )
    contact = writer.write(
        "Contact",
        key("contact", 12),
        {
            "firstName": "Aigerim",
            "lastName": f"Student{run}",
            "accountId": account.record_id,
            "assignedUserId": owner,
            "cUfTelegram": "@aigerim_s",
            "phoneNumberData": [
                {"phoneNumber": "+77011234567", "primary": True, "type": "Mobile"},
                {"phoneNumber": "+77272501234", "primary": False, "type": "Office"},
            ],
            "emailAddressData": [{"emailAddress": f"aigerim.{run}@example.com", "primary": True}],
            "cUfPrograms": ["MBA", "MSc"],
        },
        files={"cUfPassport": [PASSPORT]},
    )
    deal = writer.write(
        "Opportunity",
        key("deal", 31),
        {
            "name": f"MBA enrolment {run}",
            "accountId": account.record_id,
            "contactsIds": [contact.record_id],
            "stage": "Visa",
            "amount": 12500.5,
            "amountCurrency": "EUR",
            "closeDate": "2025-09-01",
            "assignedUserId": owner,
            "cUfIntake": "2025-09-15",
            "cUfScholarship": True,
        },
    )
    lead = writer.write(
        "Lead",
        key("lead", 101),
        {
            "lastName": f"Student{run}",
            "status": "Converted",
            "assignedUserId": owner,
            "createdAccountId": account.record_id,
            "createdContactId": contact.record_id,
            "createdOpportunityId": deal.record_id,
            "cUfSponsorId": account.record_id,
        },
    )
    activity = {"assignedUserId": owner}
    call = writer.write(
        "Call",
        key("activity", 501),
        {
            **activity,
            "name": "First call",
            "status": "Held",
            "direction": "Inbound",
            "dateStart": "2025-03-01 10:00:00",
            "dateEnd": "2025-03-01 10:12:00",
            "parentType": "Contact",
            "parentId": contact.record_id,
        },
    )
    meeting = writer.write(
        "Meeting",
        key("activity", 502),
        {
            **activity,
            "name": "Visa interview prep",
            "status": "Planned",
            "dateStart": "2025-04-02 09:00:00",
            "dateEnd": "2025-04-02 10:00:00",
            "parentType": "Opportunity",
            "parentId": deal.record_id,
        },
    )
    task = writer.write(
        "Task",
        key("activity", 503),
        {
            **activity,
            "name": "Collect documents",
            "status": "Completed",
            "dateEnd": "2025-03-05 18:00:00",
            "parentType": "Account",
            "parentId": account.record_id,
        },
    )
    email = writer.write(
        "Email",
        key("activity", 504),
        {
            **activity,
            "name": "Your offer",
            "subject": "Your offer",
            "body": "<p>Congratulations!</p>",
            "isHtml": True,
            "status": "Archived",
            "dateSent": "2025-03-10 08:30:00",
            "from": "office@agency.example",
            "to": f"aigerim.{run}@example.com",
            "parentType": "Lead",
            "parentId": lead.record_id,
        },
    )
    comments = [
        Comment(
            RecordedNote("9001", "Sent the offer letter.", datetime(2025, 3, 10, 8, 45, tzinfo=UTC)),
            "Anna Sales",
            (OFFER,),
        ),
        Comment(
            RecordedNote("9002", "Visa appointment booked.", datetime(2025, 3, 20, 14, 0, tzinfo=UTC)), "Anna Sales"
        ),
    ]
    posted = writer.post_comments("Contact", contact.record_id, key("contact", 12), comments)
    return {
        "Account": account,
        "Contact": contact,
        "Opportunity": deal,
        "Lead": lead,
        "Call": call,
        "Meeting": meeting,
        "Task": task,
        "Email": email,
        "posted": posted,
    }


def _writer(target: Target) -> tuple[EspoCrmTarget, TargetSchema]:
    schema = read_schema(target.provider)
    return EspoCrmTarget(target.provider, schema), schema


def test_every_entity_is_written_with_its_links_owner_dates_files_and_comments(target: Target) -> None:
    owner = target.seed_user("Anna Sales", f"anna.{target.run}@agency.example")
    writer, _ = _writer(target)

    written = _write_portal(writer, target.run, owner)

    records = {entity: w for entity, w in written.items() if entity != "posted"}
    assert {entity: w.action for entity, w in records.items()} == dict.fromkeys(records, WriteAction.CREATED)
    assert all(not w.ignored for w in records.values()), {e: w.ignored for e, w in records.items()}
    ids = {entity: w.record_id for entity, w in records.items()}
    for entity, record_id in ids.items():
        record = target.read(entity, record_id)
        assert record["assignedUserId"] == owner, entity
        assert record["cSourceRecord"].startswith("bitrix24:"), entity
    contact = target.read("Contact", ids["Contact"])
    assert contact["accountId"] == ids["Account"]
    assert sorted(contact["cUfPrograms"]) == ["MBA", "MSc"]
    assert [(phone["phoneNumber"], phone["type"]) for phone in contact["phoneNumberData"]] == [
        ("+77011234567", "Mobile"),
        ("+77272501234", "Office"),
    ]
    assert contact["emailAddress"] == f"aigerim.{target.run}@example.com"
    deal = target.read("Opportunity", ids["Opportunity"])
    assert (deal["accountId"], deal["contactsIds"]) == (ids["Account"], [ids["Contact"]])
    assert (deal["stage"], deal["amount"], deal["amountCurrency"]) == ("Visa", 12500.5, "EUR")
    assert (deal["closeDate"], deal["cUfIntake"], deal["cUfScholarship"]) == ("2025-09-01", "2025-09-15", True)
    lead = target.read("Lead", ids["Lead"])
    assert (lead["status"], lead["createdAccountId"], lead["createdContactId"], lead["createdOpportunityId"]) == (
        "Converted",
        ids["Account"],
        ids["Contact"],
        ids["Opportunity"],
    )
    assert lead["cUfSponsorId"] == ids["Account"]
    call = target.read("Call", ids["Call"])
    assert (call["parentType"], call["parentId"], call["direction"], call["status"]) == (
        "Contact",
        ids["Contact"],
        "Inbound",
        "Held",
    )
    assert (call["dateStart"], call["dateEnd"]) == ("2025-03-01 10:00:00", "2025-03-01 10:12:00")
    meeting = target.read("Meeting", ids["Meeting"])
    assert (meeting["parentType"], meeting["parentId"], meeting["dateStart"]) == (
        "Opportunity",
        ids["Opportunity"],
        "2025-04-02 09:00:00",
    )
    task = target.read("Task", ids["Task"])
    assert (task["parentId"], task["status"], task["dateEnd"]) == (ids["Account"], "Completed", "2025-03-05 18:00:00")
    email = target.read("Email", ids["Email"])
    assert (email["parentId"], email["from"], email["dateSent"]) == (
        ids["Lead"],
        "office@agency.example",
        "2025-03-10 08:30:00",
    )

    account = target.read("Account", ids["Account"])
    assert sorted(target.file(file_id) for file_id in account["cUfDocumentsIds"]) == sorted(
        [OFFER.content, CONTRACT.content]
    )
    assert target.file(contact["cUfPassportId"]) == PASSPORT.content
    assert written["posted"] == 2
    posts = target.stream("Contact", ids["Contact"])
    assert [post["post"].splitlines()[0] for post in posts] == [
        "Bitrix24 comment of 2025-03-10 08:45 UTC by Anna Sales:",
        "Bitrix24 comment of 2025-03-20 14:00 UTC by Anna Sales:",
    ]
    assert posts[0]["post"].splitlines()[1] == "Sent the offer letter."
    assert [target.file(file_id) for file_id in posts[0]["attachmentsIds"]] == [OFFER.content]


def test_a_rerun_writes_nothing_and_a_changed_value_is_the_only_write(target: Target) -> None:
    owner = target.seed_user("Anna Sales", f"anna.{target.run}@agency.example")
    writer, _ = _writer(target)
    first = _write_portal(writer, target.run, owner)
    contact_id = first["Contact"].record_id
    posts_before = target.stream("Contact", contact_id)

    again = _write_portal(writer, target.run, owner)

    assert {e: (w.record_id, w.action, w.files_written) for e, w in again.items() if e != "posted"} == {
        e: (w.record_id, WriteAction.UNCHANGED, 0) for e, w in first.items() if e != "posted"
    }
    assert again["posted"] == 0
    assert target.stream("Contact", contact_id) == posts_before

    moved_on = writer.write(
        "Opportunity",
        source_key("bitrix24", "deal", f"31{target.run}"),
        {"stage": "Enrolled", "amount": 12500.5, "assignedUserId": owner},
    )
    assert (moved_on.record_id, moved_on.action) == (first["Opportunity"].record_id, WriteAction.UPDATED)
    deal = target.read("Opportunity", moved_on.record_id)
    assert (deal["stage"], deal["probability"]) == ("Enrolled", 100)  # the plan's probabilityMap


def test_a_dry_run_writes_nothing_and_counts_what_it_would(target: Target) -> None:
    owner = target.seed_user("Anna Sales", f"anna.{target.run}@agency.example")
    writer, _ = _writer(target)
    key = source_key("bitrix24", "company", f"8{target.run}")

    planned = writer.write(
        "Account",
        key,
        {"name": f"Dry {target.run}", "assignedUserId": owner},
        files={"cUfDocuments": [OFFER]},
        dry_run=True,
    )

    assert (planned.record_id, planned.action, planned.files_written) == ("", WriteAction.CREATED, 1)
    assert writer.find("Account", key) is None


def test_an_attribute_the_target_lacks_is_reported_not_lost_unseen(target: Target) -> None:
    owner = target.seed_user("Anna Sales", f"anna.{target.run}@agency.example")
    writer, _ = _writer(target)

    written = writer.write(
        "Account",
        source_key("bitrix24", "company", f"9{target.run}"),
        {"name": f"Typo {target.run}", "assignedUserId": owner, "cUfNotProvisioned": "kept?"},
    )

    assert written.ignored == ("cUfNotProvisioned",)


@pytest.fixture(params=["simulator", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def live_role_provider(request: pytest.FixtureRequest) -> Iterator[EspoCrmProvider]:
    """The API user as the live flow's provisioning leaves it: leads only."""
    if request.param == "simulator":
        with SimulatedEspoCrm(api_key=API_KEY) as sim:
            provider = _provider(sim.base_url, API_KEY)
            yield provider
    else:
        real: RealEspoCrm = request.getfixturevalue("real_espocrm")
        provider = _provider(real.site.url, real.api_key)
        yield provider
    provider.close()


def test_without_the_migration_role_the_schema_names_what_the_role_lacks(live_role_provider: EspoCrmProvider) -> None:
    lacking = "Account, Contact, Opportunity, Call, Meeting, Task, Email, User"
    with pytest.raises(CrmConfigurationError, match=f"does not read all of {lacking}: provision --plan"):
        read_schema(live_role_provider)


def test_a_deleted_note_is_posted_again_though_a_later_notes_marker_contains_its_own(target: Target) -> None:
    writer, _ = _writer(target)
    key = source_key("bitrix24", "company", f"9{target.run}")
    account = writer.write("Account", key, {"name": f"Notes {target.run}"})
    comments = [Comment(RecordedNote(note_id, f"Call back ({note_id}).", None)) for note_id in ("5", "50")]
    assert writer.post_comments("Account", account.record_id, key, comments) == 2
    fifth = next(post for post in target.stream("Account", account.record_id) if post["post"].endswith(" note 5"))
    target.provider.request("DELETE", f"Note/{fifth['id']}")  # the API user's own Post

    assert writer.post_comments("Account", account.record_id, key, comments) == 1
    assert writer.post_comments("Account", account.record_id, key, comments) == 0
