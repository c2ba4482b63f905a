"""One portal record → the EspoCRM record its plan says (#23): what :func:`attributes_for` gives for
the records of tests/migration/schemas.py's portal (its fields as Bitrix24's documentation lists them)
placed in EspoCRM 8.4.2's stock schema."""

from __future__ import annotations

from typing import Any

import pytest

from crm_bridge.migrate.plan import MigrationPlan
from crm_bridge.migrate.schema import SourceEntity, TargetUser
from crm_bridge.migrate.transform import Link, MoveContext, attributes_for, owners_of, references
from tests.migration.schemas import espocrm_schema, portal_schema
from tests.migration.test_plan import plan_of

COMPANY = Link("acc-7", "Acme Lyceum")
CONTACT = Link("con-12", "Aigerim Student")
LINKS = {(SourceEntity.COMPANY, "7"): COMPANY, (SourceEntity.CONTACT, "12"): CONTACT}


@pytest.fixture(scope="module")
def context() -> MoveContext:
    return MoveContext(plan_of(), portal_schema(), espocrm_schema())


@pytest.fixture(scope="module")
def owners(context: MoveContext) -> dict[str, TargetUser]:
    return owners_of(context.plan, context.target)


def shape(context: MoveContext, owners: dict[str, TargetUser], kind: SourceEntity, record: dict[str, Any]) -> Any:
    return attributes_for(context, kind, record, links=LINKS, owners=owners)


LEAD = {
    "ID": "101",
    "TITLE": "Telegram chat #101",
    "NAME": "Aigerim",
    "LAST_NAME": "Student",
    "HONORIFIC": "HNR_EN_2",
    "STATUS_ID": "UC_DOCS",
    "SOURCE_ID": "WEB",
    "ASSIGNED_BY_ID": "9",
    "OPPORTUNITY": "1500.00",
    "CURRENCY_ID": "EUR",
    "ADDRESS": "2 Bağdat Caddesi",
    "ADDRESS_2": "Flat 4",
    "ADDRESS_CITY": "İstanbul",
    "ADDRESS_COUNTRY_CODE": "TR",
    "DATE_CREATE": "2023-09-01T21:12:00+03:00",
    "COMPANY_ID": "7",
    "CONTACT_ID": "12",
    "PHONE": [
        {"ID": "1", "VALUE_TYPE": "MOBILE", "VALUE": "+90 532 001 01 01", "TYPE_ID": "PHONE"},
        {"ID": "2", "VALUE_TYPE": "WORK", "VALUE": "+90 212 555 01 02", "TYPE_ID": "PHONE"},
    ],
    "EMAIL": [{"ID": "3", "VALUE_TYPE": "HOME", "VALUE": "aigerim@mail.example", "TYPE_ID": "EMAIL"}],
    "IM": [
        {"ID": "4", "VALUE_TYPE": "TELEGRAM", "VALUE": "@aigerim", "TYPE_ID": "IM"},
        {"ID": "5", "VALUE_TYPE": "TELEGRAM", "VALUE": "@aigerim_2", "TYPE_ID": "IM"},
        {"ID": "6", "VALUE_TYPE": "OPENLINE", "VALUE": "imol|telegrambot|3|101|7", "TYPE_ID": "IM"},
    ],
    "WEB": [
        {"ID": "7", "VALUE_TYPE": "WORK", "VALUE": "https://aigerim.example", "TYPE_ID": "WEB"},
        {"ID": "8", "VALUE_TYPE": "OTHER", "VALUE": "https://instagram.com/aigerim", "TYPE_ID": "WEB"},
    ],
    "COMMENTS": "Prefers WhatsApp.",
    "UF_CRM_PROGRAM": "62",
    "UF_CRM_1700000000123": ["71", "73"],
    "UF_CRM_BUDGET": "2500|USD",
    "UF_CRM_HAS_VISA": "1",
    "UF_CRM_GPA": "3.45",
    "UF_CRM_SIBLINGS": "2",
    "UF_CRM_INTAKE": "2024-01-02T03:00:00+03:00",
    "UF_CRM_CONSENT_AT": "2023-09-04T23:31:00+03:00",
    "UF_CRM_PARTNER_SCHOOL": "CO_7",
    "UF_CRM_CURATOR": "7",
    "UF_CRM_PASSPORT_SCAN": {"id": 5001, "downloadUrl": "/bitrix/show_file.php?fileId=5001"},
}


def test_a_lead_takes_every_placement_in_espocrm_form(context: MoveContext, owners: dict[str, TargetUser]) -> None:
    shaped = shape(context, owners, SourceEntity.LEAD, LEAD)
    values = shaped.attributes

    assert (shaped.entity, values["firstName"], values["lastName"], values["cTitle"]) == (
        "Lead",
        "Aigerim",
        "Student",
        "Telegram chat #101",
    )
    assert values["salutationName"] == "Mrs."  # the option, not HNR_EN_2
    assert values["source"] == "Web Site"  # EspoCRM's stock option of the same meaning
    assert values["cProgram"] == "Master"  # the label, never "62"
    assert sorted(values["cUfCrm1700000000123"]) == ["Germany", "Poland"]
    assert (values["opportunityAmount"], values["opportunityAmountCurrency"]) == (1500.0, "EUR")
    assert (values["cBudget"], values["cBudgetCurrency"]) == (2500.0, "USD")
    assert (values["cHasVisa"], values["cGpa"], values["cSiblings"]) == (True, 3.45, 2)
    assert values["cIntake"] == "2024-01-02"  # the day the portal shows
    assert values["cConsentAt"] == "2023-09-04 20:31:00"  # UTC
    assert values["phoneNumberData"] == [
        {"phoneNumber": "+905320010101", "primary": True, "type": "Mobile"},
        {"phoneNumber": "+902125550102", "primary": False, "type": "Office"},
    ]
    assert values["emailAddressData"] == [{"emailAddress": "aigerim@mail.example", "primary": True}]
    assert (values["cImTelegram"], values["cImOpenline"]) == ("@aigerim, @aigerim_2", "imol|telegrambot|3|101|7")
    assert values["website"] == "https://aigerim.example"
    assert values["description"].startswith("Prefers WhatsApp.\n\n")
    assert "https://instagram.com/aigerim" in values["description"]  # a further address: in the text
    assert (values["addressStreet"], values["addressCity"], values["addressCountry"]) == (
        "2 Bağdat Caddesi\nFlat 4",
        "İstanbul",
        "TR",  # the code, as the country's name is empty
    )
    assert (values["createdAccountId"], values["createdContactId"]) == ("acc-7", "con-12")
    assert values["cPartnerSchool"] == "company Acme Lyceum (Bitrix24 7)"
    assert values["cCurator"] == "Maria Kaya"  # the paired user's name
    assert values["assignedUserId"] == "u4"  # Ivan left: the default owner
    assert shaped.files == {"cPassportScan": [LEAD["UF_CRM_PASSPORT_SCAN"]]}
    assert "cSourceRecord" not in values  # the write adds the key
    assert not shaped.unlinked


def test_a_converted_lead_is_linked_to_the_deal_it_became(context: MoveContext, owners: dict[str, TargetUser]) -> None:
    shaped = attributes_for(context, SourceEntity.LEAD, LEAD, links=LINKS, owners=owners, became="opp-31")

    assert shaped.attributes["createdOpportunityId"] == "opp-31"


def test_a_link_to_a_record_not_moved_is_named_not_invented(
    context: MoveContext, owners: dict[str, TargetUser]
) -> None:
    shaped = attributes_for(context, SourceEntity.LEAD, {**LEAD, "COMPANY_ID": "8"}, links=LINKS, owners=owners)

    assert "createdAccountId" not in shaped.attributes
    assert shaped.unlinked == ("company 8",)


def test_a_deal_goes_to_its_pipelines_stage_with_amount_and_close_date(
    context: MoveContext, owners: dict[str, TargetUser]
) -> None:
    deal = {
        "ID": "31",
        "TITLE": "Visa application",
        "CATEGORY_ID": "1",
        "STAGE_ID": "C1:PREPARATION",
        "OPPORTUNITY": "12500.50",
        "CURRENCY_ID": "EUR",
        "CONTACT_ID": "12",
        "COMPANY_ID": "7",
        "CLOSEDATE": "2025-09-01T03:00:00+03:00",
        "ASSIGNED_BY_ID": "7",
        "SOURCE_ID": "WEB",
        "UF_CRM_TUITION": "9800|EUR",
    }
    stage = next(s.option for s in context.plan.deal_stages if s.stage == "C1:PREPARATION")

    values = shape(context, owners, SourceEntity.DEAL, deal).attributes

    assert stage.startswith("Visa support: ")
    assert (values["name"], values["stage"], values["cCategoryId"]) == ("Visa application", stage, "Visa support")
    assert (values["amount"], values["amountCurrency"], values["closeDate"]) == (12500.5, "EUR", "2025-09-01")
    assert (values["accountId"], values["contactId"], values["contactsIds"]) == ("acc-7", "con-12", ["con-12"])
    assert (values["cTuition"], values["cTuitionCurrency"]) == (9800.0, "EUR")
    assert values["assignedUserId"] == "u3"
    assert values["leadSource"] == "Web Site"  # Lead.source's option, which leadSource takes


@pytest.mark.parametrize(
    ("type_id", "entity", "expected"),
    [
        ("2", "Call", {"status": "Held", "direction": "Inbound", "dateStart": "2025-03-01 07:00:00"}),
        ("1", "Meeting", {"status": "Held", "dateEnd": "2025-03-01 07:30:00"}),
        ("6", "Task", {"status": "Completed", "priority": "Normal"}),
        ("4", "Email", {"status": "Archived", "dateSent": "2025-03-01 07:00:00", "from": "student@mail.example"}),
    ],
)
def test_an_activity_goes_to_the_entity_of_its_type_on_its_owner(
    context: MoveContext, owners: dict[str, TargetUser], type_id: str, entity: str, expected: dict[str, Any]
) -> None:
    activity = {
        "ID": "501",
        "TYPE_ID": type_id,
        "OWNER_TYPE_ID": "3",
        "OWNER_ID": "12",
        "SUBJECT": "First talk",
        "DESCRIPTION": "About the intake.",
        "START_TIME": "2025-03-01T10:00:00+03:00",
        "END_TIME": "2025-03-01T10:30:00+03:00",
        "COMPLETED": "Y",
        "DIRECTION": "1",
        "PRIORITY": "2",
        "RESPONSIBLE_ID": "5",
        "COMMUNICATIONS": [
            {"TYPE": "EMAIL", "VALUE": "student@mail.example", "ENTITY_TYPE_ID": "3", "ENTITY_ID": "12"}
        ],
    }

    shaped = shape(context, owners, SourceEntity.ACTIVITY, activity)

    assert shaped.entity == entity
    assert {name: shaped.attributes.get(name) for name in expected} == expected
    assert (shaped.attributes["parentType"], shaped.attributes["parentId"]) == ("Contact", "con-12")
    assert shaped.attributes["assignedUserId"] == "u2"
    assert (SourceEntity.CONTACT, "12") in references(SourceEntity.ACTIVITY, activity)


MEETING = {
    "ID": "502",
    "TYPE_ID": "1",
    "OWNER_TYPE_ID": "2",
    "OWNER_ID": "40",
    "SUBJECT": "Visa documents",
    "START_TIME": "2025-03-02T10:00:00+03:00",
    "RESPONSIBLE_ID": "5",
    "PRIORITY": "3",
    "LOCATION": "Office, room 2",
    "AUTHOR_ID": "9",
    "CREATED": "2025-03-01T09:00:00+03:00",
    "FILES": [{"id": "77", "url": "https://agency.bitrix24.example/disk/downloadFile/77/", "name": "visa.pdf"}],
    "BINDINGS": [
        {"entityTypeId": 2, "entityId": 40},  # its owner: the deal
        {"entityTypeId": 3, "entityId": 12},  # the student's contact
        {"entityTypeId": 4, "entityId": 7},  # their school
        {"entityTypeId": 31, "entityId": 5},  # an invoice: an object the move does not read
    ],
}


def test_an_activitys_fields_beyond_the_standard_ones_go_where_the_plan_put_them(
    context: MoveContext, owners: dict[str, TargetUser]
) -> None:
    """Its location, author, creation time, a meeting's priority and files: nothing the plan placed is dropped."""
    meeting_plan = context.entity_plan(SourceEntity.ACTIVITY, MEETING)
    assert meeting_plan is not None
    placements = {item.field: item for item in meeting_plan.placements}

    shaped = shape(context, owners, SourceEntity.ACTIVITY, MEETING)

    assert shaped.entity == "Meeting"
    assert shaped.attributes[placements["LOCATION"].attributes[0]] == "Office, room 2"
    assert shaped.attributes[placements["AUTHOR_ID"].attributes[0]] == owners["9"].name
    assert shaped.attributes[placements["CREATED"].attributes[0]] == "2025-03-01 06:00:00"
    assert shaped.attributes[placements["PRIORITY"].attributes[0]] == "High"
    assert [item["name"] for item in shaped.files[placements["FILES"].attributes[0]]] == ["visa.pdf"]


def test_an_activitys_bindings_beyond_its_owner_are_its_people_or_named_in_the_description(
    context: MoveContext, owners: dict[str, TargetUser]
) -> None:
    deal = Link("opp-40", "Aigerim: Master 2025")
    links = {**LINKS, (SourceEntity.DEAL, "40"): deal}

    meeting = attributes_for(context, SourceEntity.ACTIVITY, MEETING, links=links, owners=owners)
    task = attributes_for(context, SourceEntity.ACTIVITY, MEETING | {"TYPE_ID": "6"}, links=links, owners=owners)

    assert (meeting.attributes["parentType"], meeting.attributes["parentId"]) == ("Opportunity", "opp-40")
    assert meeting.attributes["contactsIds"] == ["con-12"]
    also = "Also bound to: company Acme Lyceum (Bitrix24 7); object type 31 (Bitrix24 5)"
    assert meeting.attributes["description"].splitlines() == [also]
    assert (task.attributes["parentType"], task.attributes["parentId"]) == ("Opportunity", "opp-40")
    assert "contactsIds" not in task.attributes  # a task has no people: they are named
    assert task.attributes["description"].splitlines() == [
        "Also bound to: contact Aigerim Student (Bitrix24 12); company Acme Lyceum (Bitrix24 7); "
        "object type 31 (Bitrix24 5)"
    ]
    assert {(SourceEntity.DEAL, "40"), (SourceEntity.CONTACT, "12"), (SourceEntity.COMPANY, "7")} <= references(
        SourceEntity.ACTIVITY, MEETING
    )


def test_a_task_without_an_owner_is_about_the_person_it_names(
    context: MoveContext, owners: dict[str, TargetUser]
) -> None:
    task = {
        "ID": "503",
        "TYPE_ID": "6",
        "SUBJECT": "Call back",
        "RESPONSIBLE_ID": "5",
        "COMMUNICATIONS": [{"TYPE": "PHONE", "VALUE": "+90 532 001 01 01", "ENTITY_TYPE_ID": "3", "ENTITY_ID": "12"}],
    }

    shaped = shape(context, owners, SourceEntity.ACTIVITY, task)

    assert (shaped.attributes["parentType"], shaped.attributes["parentId"]) == ("Contact", "con-12")


def test_owners_are_the_plans_pairs_as_espocrm_users(context: MoveContext) -> None:
    plan: MigrationPlan = context.plan
    owners = owners_of(plan, context.target)

    assert {user_id: user.user_name for user_id, user in owners.items()} == {
        owner.user_id: owner.user_name for owner in plan.owners if owner.user_name
    }
