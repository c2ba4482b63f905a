"""The portal reader (``migrate/bitrix24_portal.py``) against the simulated agency portal: everything
seeded comes back, in the shapes the move needs, within a sensible number of requests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from crm_bridge.errors import PermanentCrmError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.bitrix24_portal import PAGES_PER_BATCH, PortalReader
from crm_bridge.migrate.schema import Semantics, SourceEntity
from crm_bridge.providers import build_provider
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.settings import CrmProviderName, load_settings
from tests.migration.portal import LEAD_STAGES, PIPELINES, USER_FIELD_TYPES, AgencyPortal, seed_agency_portal
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import SimulatedBitrix24

SCALE = 0.05
"""1/20 of the agency's portal, as ``make test`` runs it."""
RECORD_KINDS = (SourceEntity.COMPANY, SourceEntity.CONTACT, SourceEntity.DEAL, SourceEntity.LEAD)


@dataclass
class Portal:
    sim: SimulatedBitrix24
    seeded: AgencyPortal
    reader: PortalReader
    provider: Bitrix24Provider


@pytest.fixture(scope="module")
def portal() -> Iterator[Portal]:
    with SimulatedBitrix24(rate_per_second=None) as sim:
        seeded = seed_agency_portal(sim, scale=SCALE)
        settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": sim.webhook_url})
        provider = build_provider(settings, load_field_mapping(), name=CrmProviderName.BITRIX24)
        assert isinstance(provider, Bitrix24Provider)
        yield Portal(sim, seeded, PortalReader(provider, sleep=lambda seconds: None), provider)
        provider.close()


def test_every_seeded_record_comes_back_with_every_field(portal: Portal) -> None:
    portal.sim.reset_counts()
    for entity in RECORD_KINDS:
        records = list(portal.reader.records(entity))
        assert [record["ID"] for record in records] == portal.seeded.ids[entity]
        for record in records:
            stored = portal.sim.entities.record(entity, record["ID"])
            for name, value in stored.items():
                if name not in ("CONTACT_IDS", "COMPANY_IDS"):  # a list never answers them (b24-rest-docs#219)
                    assert record.get(name) == value, (entity, record["ID"], name)
    activities = list(portal.reader.records(SourceEntity.ACTIVITY))
    assert [activity["ID"] for activity in activities] == portal.seeded.ids["activity"]
    assert [{**activity, "BINDINGS": None} for activity in activities] == [
        portal.sim.entities.activities[int(activity["ID"])] | {"BINDINGS": None} for activity in activities
    ]
    read = sum(len(ids) for ids in portal.seeded.ids.values())
    print(f"\n{read} records and activities read in {portal.sim.requests} requests")
    # 500 a request: one each at this size (250 activities: 5 full pages, then an empty one ends them),
    # and one a page of activities for their bindings.
    assert portal.sim.requests == len(SourceEntity) + len(activities) // 50


def test_chat_handles_come_back_though_star_leaves_them_out(portal: Portal) -> None:
    leads = {lead["ID"]: lead for lead in portal.reader.records(SourceEntity.LEAD)}
    assert portal.seeded.chat_only_leads
    for lead_id in portal.seeded.chat_only_leads:
        assert leads[lead_id]["IM"][0]["VALUE"].startswith("imol|")
        assert leads[lead_id]["TITLE"].startswith("Telegram chat")
        assert not leads[lead_id]["NAME"]
        assert "PHONE" not in leads[lead_id]
        assert leads[lead_id]["HAS_IMOL"] == "Y"
    # The quirk the reader copes with: a list asked for "*" and "UF_*" only leaves the handle out.
    listing = {"filter": {"ID": portal.seeded.chat_only_leads[0]}, "select": ["*", "UF_*"]}
    plain = httpx.post(f"{portal.sim.webhook_url}crm.lead.list.json", json=listing).json()["result"]
    assert plain[0]["TITLE"] == leads[portal.seeded.chat_only_leads[0]]["TITLE"]
    assert "IM" not in plain[0]


def test_converted_leads_keep_their_links(portal: Portal) -> None:
    leads = {lead["ID"]: lead for lead in portal.reader.records(SourceEntity.LEAD)}
    deals = {deal["ID"]: deal for deal in portal.reader.records(SourceEntity.DEAL)}
    contacts = {contact["ID"]: contact for contact in portal.reader.records(SourceEntity.CONTACT)}
    assert portal.seeded.converted_leads
    for lead_id, (contact_id, company_id, deal_id) in portal.seeded.converted_leads.items():
        assert leads[lead_id]["STATUS_SEMANTIC_ID"] == "S"
        assert (leads[lead_id]["CONTACT_ID"], leads[lead_id]["COMPANY_ID"]) == (contact_id, company_id)
        assert deals[deal_id]["LEAD_ID"] == lead_id
        assert contacts[contact_id]["LEAD_ID"] == lead_id


def test_schema_knows_list_labels_stages_pipelines_and_who_left(portal: Portal) -> None:
    portal.sim.reset_counts()
    schema = portal.reader.schema()
    print(f"\nschema read in {portal.sim.requests} request(s)")
    assert portal.sim.requests == 1
    for entity in RECORD_KINDS:
        for user_field in portal.seeded.user_fields[entity]:
            described = schema.fields[entity][user_field.name]
            assert (described.type, described.title, described.multiple, described.custom) == (
                user_field.type,
                user_field.label,
                user_field.multiple,
                True,
            )
            assert [(option.id, option.label) for option in described.options] == list(user_field.options)
    custom_types = {field.type for field in schema.fields[SourceEntity.LEAD].values() if field.custom}
    assert custom_types >= {kind for kind, *_ in USER_FIELD_TYPES}
    assert schema.fields[SourceEntity.LEAD]["IM"].multiple
    activity_fields = schema.fields[SourceEntity.ACTIVITY]  # crm.activity.fields: the documented table
    assert activity_fields["LOCATION"].type == "string"
    assert activity_fields["AUTHOR_ID"].type == "user"
    assert activity_fields["AUTHOR_ID"].read_only
    assert activity_fields["BINDINGS"].multiple
    assert not any(field.custom for field in activity_fields.values())
    assert schema.fields[SourceEntity.CONTACT]["HONORIFIC"].options[0].label == "Mr."
    assert [option.label for option in schema.fields[SourceEntity.DEAL]["CATEGORY_ID"].options] == [
        "Bachelor",
        "Master",
    ]
    assert [(stage.id, stage.name) for stage in schema.lead_statuses] == [(s, n) for s, n, _ in LEAD_STAGES]
    semantics = {stage.id: stage.semantics for stage in schema.lead_statuses}
    assert (semantics["UC_DOCS01"], semantics["CONVERTED"], semantics["UC_NOREPLY"]) == (
        Semantics.PROCESS,
        Semantics.SUCCESS,
        Semantics.FAILURE,
    )
    assert [(pipeline.name, pipeline.default) for pipeline in schema.pipelines] == [
        ("Bachelor", True),
        ("Master", False),
    ]
    for pipeline in schema.pipelines:
        assert [stage.name for stage in pipeline.stages] == [name for _, name, _ in PIPELINES[pipeline.name]]
    master = schema.pipelines[1]
    assert master.stages[0].id == f"C{master.id}:NEW"
    assert master.stages[-1].semantics is Semantics.FAILURE
    assert {user.id: user.active for user in schema.users} == portal.seeded.users
    assert sum(not user.active for user in schema.users) == 2
    assert "INDUSTRY" in schema.statuses
    assert "DEAL_STAGE" not in schema.statuses


def test_list_values_are_option_ids_the_schema_labels(portal: Portal) -> None:
    schema = portal.reader.schema()
    for entity in RECORD_KINDS:
        lists = {name: field for name, field in schema.fields[entity].items() if field.type == "enumeration"}
        labelled = 0
        for record in portal.reader.records(entity):
            for name, field in lists.items():
                value = record.get(name)
                ids = value if isinstance(value, list) else [value] if value else []
                labels = {option.id: option.label for option in field.options}
                assert all(option_id in labels for option_id in ids), (entity, record["ID"], name, value)
                labelled += len(ids)
        assert labelled > 0, entity


def test_files_download_from_records_comments_and_activities(portal: Portal) -> None:
    sim, seeded, reader = portal.sim, portal.seeded, portal.reader
    file_fields = {field.name for fields in seeded.user_fields.values() for field in fields if field.type == "file"}
    links: list[dict[str, object]] = []
    for entity in RECORD_KINDS:
        links += [record[name] for record in reader.records(entity) for name in file_fields if record.get(name)]
    links += [file for activity in reader.records(SourceEntity.ACTIVITY) for file in activity["FILES"]]
    for entity in RECORD_KINDS:
        commented = [record_id for (kind, record_id) in seeded.comments if kind == entity]
        for notes in reader.comments(entity, commented).values():
            links += [file for note in notes for file in (note.get("FILES") or {}).values()]
    assert {int(str(link["id"])) for link in links} == set(seeded.file_ids)
    for link in links:
        assert reader.download(link) == sim.entities.files[int(str(link["id"]))].content


def test_comments_keep_their_authors(portal: Portal) -> None:
    for entity in RECORD_KINDS:
        ids = [record_id for (kind, record_id) in portal.seeded.comments if kind == entity]
        portal.sim.reset_counts()
        found = portal.reader.comments(entity, ids)
        assert portal.sim.requests == -(-len(ids) // 50)
        assert {record_id: len(notes) for record_id, notes in found.items()} == {
            record_id: portal.seeded.comments[(entity, record_id)] for record_id in ids
        }
        assert all(note["AUTHOR_ID"] in portal.seeded.users for notes in found.values() for note in notes)
        assert all(note["ENTITY_TYPE"] == entity for notes in found.values() for note in notes)


def test_activities_keep_every_binding(portal: Portal) -> None:
    """The list method does not give an activity's bindings: each page of 50 costs one more request."""
    activity_ids = portal.seeded.ids["activity"]
    portal.sim.reset_counts()
    bindings = {
        activity["ID"]: [(item["entityTypeId"], str(item["entityId"])) for item in activity["BINDINGS"]]
        for activity in portal.reader.records(SourceEntity.ACTIVITY)
    }
    batches = len(activity_ids) // (50 * PAGES_PER_BATCH) + 1  # the last one ends on a short page
    assert portal.sim.requests == batches + -(-len(activity_ids) // 50)
    expected = {
        str(activity_id): [(type_id, str(record_id)) for type_id, record_id in bound]
        for activity_id, bound in portal.sim.entities.bindings.items()
    }
    assert bindings == expected
    assert any(len(bound) == 2 for bound in bindings.values())


def test_a_rate_limited_read_is_retried_and_nothing_is_lost(portal: Portal) -> None:
    portal.sim.fail_next(Failure.RATE_LIMITED, times=2)
    contacts = [contact["ID"] for contact in portal.reader.records(SourceEntity.CONTACT)]
    assert contacts == portal.seeded.ids["contact"]


def test_the_reader_cannot_write(portal: Portal) -> None:
    requests_before = portal.sim.requests
    with pytest.raises(ValueError, match="only read"):
        portal.provider.read("crm.lead.update", {"id": 1, "fields": {"TITLE": "x"}})
    with pytest.raises(ValueError, match="only read"):
        portal.provider.read_batch({"one": ("crm.contact.add", {"fields": {"NAME": "x"}})})
    with pytest.raises(ValueError, match="only read"):
        portal.provider.read("batch", {"cmd": {"one": "crm.lead.delete?id=101"}})
    assert portal.sim.requests == requests_before


def test_a_file_link_off_the_portal_is_refused(portal: Portal) -> None:
    with pytest.raises(PermanentCrmError):
        portal.reader.download({"id": 1, "downloadUrl": "https://elsewhere.example/file.pdf"})


def test_pages_chain_across_batches_without_a_gap(portal: Portal) -> None:
    reader = PortalReader(portal.provider, pages_per_batch=1, sleep=lambda seconds: None)
    portal.sim.reset_counts()
    activities = [activity["ID"] for activity in reader.records(SourceEntity.ACTIVITY)]
    assert activities == portal.seeded.ids["activity"]
    # The last page shorter than 50 ends it; each page of activities costs one more for its bindings.
    assert portal.sim.requests == len(activities) // 50 + 1 + -(-len(activities) // 50)


def test_usage_counts_the_records_filling_each_field_and_the_currencies_they_hold(portal: Portal) -> None:
    schema = portal.reader.schema()
    portal.sim.reset_counts()
    usage = portal.reader.usage(schema)

    # 500 records a request (one each at this size), no request for an activity's bindings: every
    # activity is bound to its owner at least
    assert portal.sim.requests == len(SourceEntity)
    assert usage.filled[SourceEntity.ACTIVITY]["BINDINGS"] == len(portal.seeded.ids["activity"])

    leads = usage.filled[SourceEntity.LEAD]
    assert leads["ID"] == len(portal.seeded.ids["lead"])
    assert leads["IM"] >= len(portal.seeded.chat_only_leads) > 0
    kinds = {name for name in leads if name.startswith("IM.")}
    assert kinds
    assert all(leads[kind] <= leads["IM"] for kind in kinds)  # a record counts once per messenger kind
    assert "UTM_TERM" not in leads  # no seeded lead fills it
    assert usage.filled[SourceEntity.DEAL]["ID"] == len(portal.seeded.ids["deal"])
    activities = usage.filled[SourceEntity.ACTIVITY]  # also counted by the EspoCRM entity each goes to
    assert activities["ID"] == sum(activities[f"{entity}:ID"] for entity in ("Meeting", "Call", "Task", "Email"))
    assert activities["Meeting:LOCATION"] == activities["LOCATION"] > 0  # only meetings have a place
    assert "Call:LOCATION" not in activities
    assert usage.currencies == {"EUR", "TRY", "USD"}  # deals' CURRENCY_ID and money values ("1500|EUR")
