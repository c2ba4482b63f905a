"""The agency's move from Bitrix24 to EspoCRM, and back: backfill, rerun, crash, reconcile, rollback.

The Bitrix24 simulator holds 1,000 leads as salespeople left them (tests/migration/agency.py), and
100 of those people have already applied again through the live flow into EspoCRM. After one
backfill EspoCRM holds one lead per person with the history in order; a run killed midway and
started again ends in the same state; a second run writes nothing; ``reconcile`` finds no
difference; after a rollback, ``--since`` copies exactly the leads EspoCRM got in between.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from crm_bridge.field_mapping import MappedField
from crm_bridge.models import Application, Channel, MessengerActivity
from crm_bridge.providers.records import CrmLead, LeadStatus
from tests.migration.agency import SeededPortal, seed_portal
from tests.migration.conftest import Migration, kill_after_notes, report_rows, snapshot

LEADS = 1000
APPLICANTS = 100
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _apply_through_live_flow(migration: Migration, seeded: SeededPortal) -> dict[int, str]:
    """100 people of the portal apply on the website after the switch: EspoCRM has their lead already."""
    espocrm = migration.provider("espocrm")
    chosen = random.Random(3).sample(seeded.people, APPLICANTS)  # noqa: S311 - reproducible
    made = {}
    for person in chosen:
        application = Application(
            name=f"{person.first_name} {person.last_name}",
            phone=person.mobile,
            email=person.email,
            consent=True,
            program="MBA",
        )
        made[person.number] = espocrm.upsert_lead(application, uuid4()).record_id
    return made


def _espocrm_writes(migration: Migration) -> int:
    assert migration.espocrm is not None
    return sum(1 for call in migration.espocrm.router.calls if call.request.method in WRITES)


def _by_source(leads: list[CrmLead]) -> dict[str, CrmLead]:
    return {lead.copied_from: lead for lead in leads if lead.copied_from}


def _assert_one_lead_per_person_with_history(
    seeded: SeededPortal, leads: list[CrmLead], applicants: dict[int, str]
) -> None:
    assert len(leads) == len(seeded.people), "one EspoCRM lead per person, however many Bitrix24 leads they had"
    by_source = _by_source(leads)
    by_id = {lead.record_id: lead for lead in leads}
    for person in seeded.people:
        first_lead = seeded.lead_ids[person.number][0]
        lead = by_id[applicants[person.number]] if person.number in applicants else by_source[f"bitrix24:{first_lead}"]
        assert lead.copied_from == f"bitrix24:{first_lead}"
        if person.mobile:
            assert person.mobile in lead.phones, "phones are E.164, whatever form they were typed in"
        if person.email:
            assert person.email.lower() in lead.emails
        texts = [note.text for note in lead.notes]
        for bitrix_lead in seeded.lead_ids[person.number]:
            copied = [text for text in texts if f"crm-bridge import bitrix24:{bitrix_lead} note" in text]
            expected = seeded.comments[bitrix_lead]
            assert [text.split("\n")[1] for text in copied] == expected, "each comment once, oldest first"
        if person.number in applicants:
            assert lead.created_by_operation() is not None, "the live flow's lead, with the history added"
            assert any(text.startswith("Copied from Bitrix24 lead") for text in texts)
        else:
            assert (lead.description or "").startswith("Copied from Bitrix24 lead")
            assert lead.values[MappedField.SOURCE_CREATED_AT]


def test_the_agency_moves_to_espocrm_and_back(migration: Migration, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = seed_portal(migration.bitrix24, LEADS)
    applicants = _apply_through_live_flow(migration, seeded)

    # Ctrl-C at a random moment: in the middle of a lead, between its notes.
    stop_at = random.Random().randrange(200, 1200)  # noqa: S311 - any point must do
    with monkeypatch.context() as patched:
        kill_after_notes(patched, stop_at)
        code, output = migration.backfill()
    assert code == 130, output
    assert "run the same command again to continue" in output
    code, output = migration.backfill()
    assert code == 0, output
    rows = report_rows(migration.workdir / "bitrix24-espocrm.csv")
    actions = Counter(row["action"] for row in rows)
    assert sum(actions.values()) >= LEADS, actions
    assert not actions["failed"], actions
    assert actions["merged"] >= APPLICANTS, "the applicants' live leads got their history"
    leads = migration.leads("espocrm")
    _assert_one_lead_per_person_with_history(seeded, leads, applicants)

    # A second run writes nothing.
    writes_before = _espocrm_writes(migration) if migration.espocrm else 0
    code, output = migration.backfill("--report", str(migration.workdir / "again.csv"))
    assert code == 0, output
    assert f"{LEADS} leads; were created 0, merged 0, completed 0, unchanged {LEADS}, skipped 0, failed 0" in output
    if migration.espocrm is not None:
        assert _espocrm_writes(migration) == writes_before
    assert snapshot(migration.leads("espocrm")) == snapshot(leads)

    code, output = migration.run(
        "reconcile", "--from", "bitrix24", "--to", "espocrm", "--report", str(migration.workdir / "r.csv")
    )
    assert code == 0, output
    assert "only in bitrix24 0, only in espocrm 0, field differences 0" in output

    # EspoCRM is the primary for a while: new people arrive, then the agency rolls back.
    time.sleep(1.1)  # EspoCRM keeps times to the second
    switched = datetime.now(UTC)
    time.sleep(1.1)
    espocrm = migration.provider("espocrm")
    made = [
        espocrm.upsert_lead(
            Application(name=f"New Person {index}", phone=f"+90541{index:07d}", consent=True), uuid4()
        ).record_id
        for index in range(5)
    ]
    click = MessengerActivity(
        channel=Channel.WHATSAPP, session_id=f"session-{uuid4().hex}", occurred_at=datetime.now(UTC)
    )
    made.append(espocrm.create_minimal_lead_from_activity(click, uuid4()).record_id)
    bitrix_before = len(migration.bitrix24.leads())

    code, output = migration.backfill("--since", switched.isoformat(), source="espocrm", target="bitrix24")
    assert code == 0, output
    assert "6 leads; were created 6, merged 0" in output
    copies = migration.bitrix24.leads()[bitrix_before:]
    assert len(copies) == 6
    assert sorted(str(lead["UF_CRM_SOURCE_RECORD"]) for lead in copies) == sorted(f"espocrm:{i}" for i in made)

    code, output = migration.run(
        "reconcile", "--from", "espocrm", "--to", "bitrix24", "--report", str(migration.workdir / "back.csv")
    )
    assert code == 0, output
    assert "only in espocrm 0" in output
    assert "field differences 0" in output


def _statuses(leads: list[CrmLead]) -> set[Any]:
    return {lead.status for lead in leads}


@pytest.mark.parametrize("migration", ["espocrm"], indirect=True)  # the simulator counts the requests
def test_a_dry_run_counts_what_a_run_does_and_writes_nothing(migration: Migration) -> None:
    seed_portal(migration.bitrix24, 200)
    code, dry = migration.backfill("--dry-run", "--report", str(migration.workdir / "dry.csv"))
    assert code == 0, dry
    assert _espocrm_writes(migration) == 0
    assert "would be created" in dry
    code, done = migration.backfill()
    assert code == 0, done
    assert dry.split("; ", 1)[1].split("\n")[0].replace("would be", "were") == done.split("; ", 1)[1].split("\n")[0]
    leads = migration.leads("espocrm")
    assert _statuses(leads) == set(LeadStatus), "stages map to statuses: new, in process, converted, lost"
