"""The simulated portal's entities (``tests/simulators/bitrix24_portal.py``) keep Bitrix24's documented
quirks, over HTTP as a client sees them: what a reader of a real portal has to cope with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.migration.portal import AgencyPortal, seed_agency_portal
from tests.simulators.bitrix24 import DEFAULT_USER_FIELDS, SimulatedBitrix24


@pytest.fixture(scope="module")
def portal() -> Iterator[tuple[SimulatedBitrix24, AgencyPortal]]:
    with SimulatedBitrix24(rate_per_second=None) as sim:
        yield sim, seed_agency_portal(sim, scale=0.02, seed=5)


def call(sim: SimulatedBitrix24, method: str, params: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{sim.webhook_url}{method}.json", json=params or {})


def test_multifields_of_contacts_only_when_named(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, _ = portal
    starred = call(sim, "crm.contact.list", {"select": ["*", "UF_*"]}).json()["result"]
    named = call(sim, "crm.contact.list", {"select": ["ID", "PHONE", "IM"]}).json()["result"]
    assert all("PHONE" not in contact and "IM" not in contact for contact in starred)
    assert all(contact["PHONE"][0]["TYPE_ID"] == "PHONE" for contact in named)
    assert any("IM" in contact for contact in named)
    assert set(named[0]) <= {"ID", "PHONE", "IM"}


def test_lists_page_by_fifty_and_fast_mode_has_no_total(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, seeded = portal
    counted = call(sim, "crm.activity.list", {"order": {"ID": "ASC"}}).json()
    fast = call(sim, "crm.activity.list", {"filter": {">ID": 50}, "order": {"ID": "ASC"}, "start": -1}).json()
    assert (len(counted["result"]), counted["next"], counted["total"]) == (50, 50, len(seeded.ids["activity"]))
    assert "total" not in fast
    assert "next" not in fast
    assert fast["result"][0]["ID"] == "51"
    assert "COMMUNICATIONS" not in counted["result"][0]


def test_user_fields_list_their_items(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, seeded = portal
    listed = call(sim, "crm.deal.userfield.list", {"filter": {"LANG": "en"}}).json()["result"]
    unlabelled = call(sim, "crm.deal.userfield.list").json()["result"]
    languages = next(field for field in listed if field["EDIT_FORM_LABEL"] == "Languages")
    assert all("EDIT_FORM_LABEL" not in field for field in unlabelled)  # labels come only for a LANG
    assert languages["USER_TYPE_ID"] == "enumeration"
    assert languages["MULTIPLE"] == "Y"
    assert [item["VALUE"] for item in languages["LIST"]][:2] == ["English", "German"]
    described = call(sim, "crm.deal.fields").json()["result"][languages["FIELD_NAME"]]
    assert described["items"] == [{"ID": item["ID"], "VALUE": item["VALUE"]} for item in languages["LIST"]]
    assert described["title"] == languages["FIELD_NAME"]
    assert described["listLabel"] == "Languages"
    assert len(listed) == len(seeded.user_fields["deal"])


def test_lead_user_fields_include_the_live_flows(
    portal: tuple[SimulatedBitrix24, AgencyPortal],
) -> None:
    sim, seeded = portal
    listed = call(sim, "crm.lead.userfield.list", {"filter": {"LANG": "en"}}).json()
    names = [field["FIELD_NAME"] for field in listed["result"]]
    assert names == sim.user_fields
    assert len(names) == len(DEFAULT_USER_FIELDS) + len(seeded.user_fields["lead"])
    assert listed["total"] == len(names)
    consent = next(field for field in listed["result"] if field["FIELD_NAME"] == "UF_CRM_CONSENT")
    assert (consent["USER_TYPE_ID"], consent["LIST_COLUMN_LABEL"]) == ("boolean", "Consent")


def test_users_who_left_are_listed_unless_only_active_ones_are_asked(
    portal: tuple[SimulatedBitrix24, AgencyPortal],
) -> None:
    sim, _ = portal
    everyone = call(sim, "user.get").json()["result"]
    active = call(sim, "user.get", {"filter": {"ACTIVE": True}}).json()["result"]
    assert len(everyone) == 10
    assert [user["ACTIVE"] for user in everyone].count(False) == 2
    assert len(active) == 8


def test_pipeline_stages_are_their_own_status_list(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, _ = portal
    categories = call(sim, "crm.category.list", {"entityTypeId": 2}).json()["result"]["categories"]
    master = next(category for category in categories if category["name"] == "Master")
    stages = call(sim, "crm.status.list", {"filter": {"ENTITY_ID": f"DEAL_STAGE_{master['id']}"}}).json()["result"]
    assert stages[0]["STATUS_ID"] == f"C{master['id']}:NEW"
    assert [stage["SEMANTICS"] for stage in stages][-2:] == ["S", "F"]
    assert [stage["EXTRA"]["SEMANTICS"] for stage in stages][-2:] == ["success", "failure"]


def test_file_links_serve_bytes_outside_the_rate_limit(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, seeded = portal
    file_id = seeded.file_ids[0]
    sim.reset_counts()
    served = httpx.get(f"{sim.portal}/bitrix/tools/crm_show_file.php?fileId={file_id}&ownerTypeId=6&ownerId=1&auth=")
    missing = httpx.get(f"{sim.portal}/disk/downloadFile/999999/?&ncc=1&filename=x.pdf")
    assert served.content == sim.entities.files[file_id].content
    assert missing.status_code == 404
    assert sim.requests == 0


def test_an_unknown_activity_has_no_bindings(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, seeded = portal
    known = call(sim, "crm.activity.binding.list", {"activityId": seeded.ids["activity"][0]})
    unknown = call(sim, "crm.activity.binding.list", {"activityId": 987654})
    assert isinstance(known.json()["result"][0]["entityTypeId"], int)
    assert (unknown.status_code, unknown.json()["error"]) == (400, "NOT_FOUND")


def test_comments_on_any_entity_carry_author_and_files(portal: tuple[SimulatedBitrix24, AgencyPortal]) -> None:
    sim, seeded = portal
    entity, record_id = next(iter(seeded.comments))
    listing = {"filter": {"ENTITY_ID": record_id, "ENTITY_TYPE": entity}}
    comments = call(sim, "crm.timeline.comment.list", listing).json()["result"]
    assert len(comments) == seeded.comments[(entity, record_id)]
    assert all(comment["AUTHOR_ID"] in seeded.users for comment in comments)
    assert all(comment["ENTITY_TYPE"] == entity for comment in comments)


def test_a_multiple_list_field_is_filtered_by_any_of_its_values(
    portal: tuple[SimulatedBitrix24, AgencyPortal],
) -> None:
    sim, seeded = portal
    languages = next(field for field in seeded.user_fields["lead"] if field.label == "Languages")
    english = languages.options[0][0]
    found = call(sim, "crm.lead.list", {"filter": {languages.name: english}, "select": ["ID", languages.name]})
    leads = found.json()["result"]
    assert leads
    assert all(english in lead[languages.name] for lead in leads)
    holding = [lead_id for lead_id in seeded.ids["lead"] if english in (sim.lead(lead_id)[languages.name] or [])]
    assert [lead["ID"] for lead in leads] == holding


def test_the_seed_is_the_same_every_run() -> None:
    portals = []
    for _ in range(2):
        with SimulatedBitrix24(rate_per_second=None) as sim:
            seed_agency_portal(sim, scale=0.01, seed=9)
            contacts = [sim.entities.record("contact", str(record_id)) for record_id in sim.entities.records["contact"]]
            portals.append((sim.leads(), contacts, sim.entities.activities, sim.entities.bindings))
    assert portals[0] == portals[1]
