"""The portal reader (``migrate/bitrix24_portal.py``) against the simulated agency portal: everything
seeded comes back, in the shapes the move needs, within a sensible number of requests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.bitrix24_portal import PortalReader
from crm_bridge.migrate.schema import Semantics, SourceEntity
from crm_bridge.providers import build_provider
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.settings import CrmProviderName, load_settings
from tests.migration.portal import LEAD_STAGES, PIPELINES, USER_FIELD_TYPES, AgencyPortal, seed_agency_portal
from tests.simulators.bitrix24 import SimulatedBitrix24

SCALE = 0.05
"""1/20 of the agency's portal, as ``make test`` runs it."""


@pytest.fixture(scope="module")
def portal() -> Iterator[tuple[SimulatedBitrix24, AgencyPortal, PortalReader]]:
    with SimulatedBitrix24(rate_per_second=None) as sim:
        seeded = seed_agency_portal(sim, scale=SCALE)
        settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": sim.webhook_url})
        provider = build_provider(settings, load_field_mapping(), name=CrmProviderName.BITRIX24)
        assert isinstance(provider, Bitrix24Provider)
        yield sim, seeded, PortalReader(provider, sleep=lambda seconds: None)
        provider.close()


def test_every_seeded_record_comes_back_with_every_field(
    portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader],
) -> None:
    sim, seeded, reader = portal
    sim.reset_counts()
    for entity in (SourceEntity.COMPANY, SourceEntity.CONTACT, SourceEntity.DEAL, SourceEntity.LEAD):
        records = list(reader.records(entity))
        assert [record["ID"] for record in records] == seeded.ids[str(entity)]
        for record in records:
            stored = (
                sim.lead(record["ID"])
                if entity is SourceEntity.LEAD
                else sim.entities._record(str(entity), sim.entities.records[str(entity)][int(record["ID"])], None)
            )
            for name, value in stored.items():
                if name not in ("CONTACT_IDS", "COMPANY_IDS", "LINK"):
                    assert record.get(name) == value, (entity, record["ID"], name)
    activities = list(reader.records(SourceEntity.ACTIVITY))
    assert [activity["ID"] for activity in activities] == seeded.ids["activity"]
    assert all("COMMUNICATIONS" in activity and "FILES" in activity for activity in activities)
    print(f"records of {sum(len(ids) for ids in seeded.ids.values())}: {sim.requests} requests")
    assert sim.requests <= 2 * len(SourceEntity)


def test_chat_handles_come_back_though_star_leaves_them_out(
    portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader],
) -> None:
    sim, seeded, reader = portal
    leads = {lead["ID"]: lead for lead in reader.records(SourceEntity.LEAD)}
    for lead_id in seeded.chat_only_leads:
        assert leads[lead_id]["IM"][0]["VALUE"].startswith("imol|")
        assert leads[lead_id]["TITLE"]
    # The quirk the reader copes with: a list asked for "*" and "UF_*" only leaves the handle out.
    listing = {"filter": {"ID": seeded.chat_only_leads[0]}, "select": ["*", "UF_*"]}
    plain = httpx.post(f"{sim.webhook_url}crm.lead.list.json", json=listing).json()["result"]
    assert plain[0]["TITLE"]
    assert "IM" not in plain[0]


def test_converted_leads_keep_their_links(portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader]) -> None:
    _, seeded, reader = portal
    leads = {lead["ID"]: lead for lead in reader.records(SourceEntity.LEAD)}
    deals = {deal["ID"]: deal for deal in reader.records(SourceEntity.DEAL)}
    assert seeded.converted_leads
    for lead_id, (contact_id, company_id, deal_id) in seeded.converted_leads.items():
        assert leads[lead_id]["STATUS_SEMANTIC_ID"] == "S"
        assert (leads[lead_id]["CONTACT_ID"], leads[lead_id]["COMPANY_ID"]) == (contact_id, company_id)
        assert deals[deal_id]["LEAD_ID"] == lead_id


def test_schema_knows_list_labels_stages_pipelines_and_who_left(
    portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader],
) -> None:
    sim, seeded, reader = portal
    sim.reset_counts()
    schema = reader.schema()
    print(f"schema: {sim.requests} requests")
    assert sim.requests <= 4
    for entity in (SourceEntity.LEAD, SourceEntity.CONTACT, SourceEntity.COMPANY, SourceEntity.DEAL):
        for user_field in seeded.user_fields[str(entity)]:
            described = schema.fields[entity][user_field.name]
            assert (described.type, described.title, described.multiple, described.custom) == (
                user_field.type,
                user_field.label,
                user_field.multiple,
                True,
            )
            assert [(option.id, option.label) for option in described.options] == list(user_field.options)
    assert {field.type for field in schema.fields[SourceEntity.LEAD].values() if field.custom} >= {
        kind for kind, *_ in USER_FIELD_TYPES
    }
    assert schema.fields[SourceEntity.LEAD]["IM"].multiple
    assert {option.id for option in schema.fields[SourceEntity.LEAD]["HONORIFIC"].options} >= {"HNR_EN_1"}
    assert [(stage.id, stage.name) for stage in schema.lead_statuses] == [(s, n) for s, n, _ in LEAD_STAGES]
    assert next(stage for stage in schema.lead_statuses if stage.id == "UC_NOREPLY").semantics is Semantics.FAILURE
    assert [(pipeline.name, pipeline.default) for pipeline in schema.pipelines] == [
        ("Bachelor", True),
        ("Master", False),
    ]
    master = schema.pipelines[1]
    assert [stage.name for stage in master.stages] == [name for _, name, _ in PIPELINES["Master"]]
    assert master.stages[0].id == f"C{master.id}:NEW"
    assert {user.id: user.active for user in schema.users} == seeded.users
    assert "INDUSTRY" in schema.statuses
    assert "DEAL_STAGE" not in schema.statuses


def test_files_download_from_records_comments_and_activities(
    portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader],
) -> None:
    sim, seeded, reader = portal
    file_fields = {
        user_field.name for fields in seeded.user_fields.values() for user_field in fields if user_field.type == "file"
    }
    links: list[dict[str, object]] = []
    for entity in (SourceEntity.COMPANY, SourceEntity.CONTACT, SourceEntity.DEAL, SourceEntity.LEAD):
        links += [record[name] for record in reader.records(entity) for name in file_fields if record.get(name)]
    links += [file for activity in reader.records(SourceEntity.ACTIVITY) for file in activity["FILES"]]
    commented = [record_id for (entity, record_id) in seeded.comments if entity == "lead"]
    for notes in reader.comments(SourceEntity.LEAD, commented).values():
        links += [file for note in notes for file in (note.get("FILES") or {}).values()]
    downloaded = {reader.download(link) for link in links}
    assert len(downloaded) == len(links) > 0
    assert all(content.startswith(b"%PDF") for content in downloaded)
    assert {sim.entities.files[int(str(link.get("id")))].content for link in links} == downloaded


def test_comments_keep_their_authors(portal: tuple[SimulatedBitrix24, AgencyPortal, PortalReader]) -> None:
    sim, seeded, reader = portal
    for entity in (SourceEntity.LEAD, SourceEntity.CONTACT, SourceEntity.DEAL, SourceEntity.COMPANY):
        ids = [record_id for (kind, record_id) in seeded.comments if kind == str(entity)]
        sim.reset_counts()
        found = reader.comments(entity, ids)
        assert sim.requests == -(-len(ids) // 50)
        assert {record_id: len(notes) for record_id, notes in found.items()} == {
            record_id: seeded.comments[(str(entity), record_id)] for record_id in ids
        }
        assert all(note["AUTHOR_ID"] in seeded.users for notes in found.values() for note in notes)
