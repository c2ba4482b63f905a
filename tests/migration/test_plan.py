"""The whole-CRM move's plan (issue 23): every field, stage and owner of the agency's portal placed in
EspoCRM 8.4.2, or the run refused naming what cannot be; and ``python -m crm_bridge.migrate plan``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from crm_bridge.migrate.__main__ import EXIT_USAGE, Schemas, run
from crm_bridge.migrate.plan import MigrationPlan, Placement, UnplaceableError, Where, custom_name, make_plan
from crm_bridge.migrate.schema import (
    CustomField,
    EnumOptions,
    Provisioning,
    Semantics,
    SourceEntity,
    SourceField,
    SourceSchema,
    TargetField,
    TargetSchema,
)
from tests.migration.schemas import (
    COUNTRIES,
    STANDARD_FIELDS,
    USER_FIELDS,
    espocrm_schema,
    portal_schema,
)

USERS = {"7": "maria.k"}
DOCS_START, DOCS_END = "<!-- plan:start -->", "<!-- plan:end -->"


def plan_of(
    source: SourceSchema | None = None,
    target: TargetSchema | None = None,
    *,
    user_mapping: Mapping[str, str] = USERS,
    default_owner: str | None = "office",
    filled: Mapping[SourceEntity, Collection[str]] | None = None,
    currencies: Collection[str] | None = None,
) -> MigrationPlan:
    return make_plan(
        source or portal_schema(),
        target or espocrm_schema(),
        user_mapping=user_mapping,
        default_owner=default_owner,
        filled=filled,
        currencies=currencies,
    )


@pytest.fixture(scope="module")
def plan() -> MigrationPlan:
    return plan_of()


def placed(plan: MigrationPlan, target: str, field: str) -> Placement:
    entity = next(entity for entity in plan.entities if entity.target == target)
    return next(placement for placement in entity.placements if placement.field == field)


def created(plan: MigrationPlan, entity: str, name: str) -> CustomField:
    return next(field for field in plan.custom_fields if (field.entity, field.name) == (entity, name))


def added(plan: MigrationPlan, entity: str, attribute: str) -> EnumOptions:
    return next(options for options in plan.enum_options if (options.entity, options.attribute) == (entity, attribute))


@pytest.mark.parametrize(
    ("target", "field", "attributes"),
    [
        ("Lead", "NAME", ("firstName",)),
        ("Lead", "POST", ("title",)),
        ("Lead", "ADDRESS", ("addressStreet",)),
        ("Lead", "ADDRESS_PROVINCE", ("addressState",)),
        ("Lead", "COMPANY_TITLE", ("accountName",)),
        ("Lead", "OPPORTUNITY", ("opportunityAmount",)),
        ("Lead", "CURRENCY_ID", ("opportunityAmountCurrency",)),
        ("Lead", "ASSIGNED_BY_ID", ("assignedUser",)),
        ("Lead", "PHONE", ("phoneNumber",)),
        ("Lead", "EMAIL", ("emailAddress",)),
        ("Lead", "STATUS_ID", ("status",)),
        ("Lead", "SOURCE_ID", ("source",)),
        ("Lead", "COMMENTS", ("description",)),
        ("Lead", "UTM_SOURCE", ("cUtmSource",)),
        ("Lead", "UF_CRM_REFERRAL_CODE", ("cReferralCode",)),
        ("Lead", "ID", ("cSourceRecord",)),
        ("Contact", "COMPANY_ID", ("account",)),
        ("Contact", "LEAD_ID", ("Lead.createdContact",)),
        ("Account", "TITLE", ("name",)),
        ("Account", "ADDRESS_CITY", ("billingAddressCity",)),
        ("Opportunity", "OPPORTUNITY", ("amount",)),
        ("Opportunity", "CURRENCY_ID", ("amountCurrency",)),
        ("Opportunity", "STAGE_ID", ("stage",)),
        ("Opportunity", "CONTACT_IDS", ("contacts",)),
        ("Opportunity", "SOURCE_ID", ("leadSource",)),
        ("Call", "DIRECTION", ("direction",)),
        ("Task", "PRIORITY", ("priority",)),
        ("Email", "DESCRIPTION", ("body",)),
    ],
)
def test_a_field_with_an_espocrm_field_of_the_same_meaning_goes_there(
    plan: MigrationPlan, target: str, field: str, attributes: tuple[str, ...]
) -> None:
    placement = placed(plan, target, field)

    assert (placement.where, placement.attributes) == (Where.SAME, attributes)


def test_phones_keep_their_types_as_far_as_each_entity_has_them(plan: MigrationPlan) -> None:
    assert "WORK→Office, MOBILE→Mobile, HOME→Home" in placed(plan, "Contact", "PHONE").note
    assert "HOME→Other" in placed(plan, "Account", "PHONE").note  # an account's typeList has no Home


@pytest.mark.parametrize(
    ("target", "field", "name", "espocrm_type"),
    [
        ("Lead", "UF_CRM_PASSPORT_SCAN", "cPassportScan", "file"),
        ("Lead", "UF_CRM_DOCUMENTS", "cDocuments", "attachmentMultiple"),
        ("Lead", "UF_CRM_INTAKE", "cIntake", "date"),
        ("Lead", "UF_CRM_BUDGET", "cBudget", "currency"),
        ("Lead", "UF_CRM_HAS_VISA", "cHasVisa", "bool"),
        ("Lead", "UF_CRM_GPA", "cGpa", "float"),
        ("Lead", "UF_CRM_SIBLINGS", "cSiblings", "int"),
        ("Lead", "UF_CRM_PORTFOLIO", "cPortfolio", "url"),
        ("Lead", "UF_CRM_PARTNER_SCHOOL", "cPartnerSchool", "varchar"),
        ("Lead", "UF_CRM_CURATOR", "cCurator", "varchar"),
        ("Lead", "UF_CRM_INTERVIEW_NOTES", "cInterviewNotes", "text"),
        ("Lead", "TITLE", "cTitle", "varchar"),
        ("Lead", "BIRTHDATE", "cBirthdate", "date"),
        ("Lead", "DATE_CLOSED", "cDateClosed", "datetime"),
        ("Contact", "POST", "cPost", "varchar"),
        ("Contact", "WEB", "cWeb", "urlMultiple"),
        ("Contact", "UF_CRM_DIPLOMA", "cDiploma", "file"),
        ("Contact", "UTM_SOURCE", "cUtmSource", "varchar"),
        ("Account", "UF_CRM_CONTRACT_UNTIL", "cContractUntil", "date"),
        ("Account", "REVENUE", "cRevenue", "currency"),
        ("Account", "REG_ADDRESS_CITY", "cRegAddress", "address"),
        ("Opportunity", "TAX_VALUE", "cTaxValue", "float"),
        ("Opportunity", "IS_RECURRING", "cIsRecurring", "bool"),
        ("Call", "FILES", "cFiles", "attachmentMultiple"),
        ("Account", "ID", "cSourceRecord", "varchar"),
        ("Opportunity", "DATE_CREATE", "cSourceCreatedAt", "datetime"),
    ],
)
def test_a_field_espocrm_lacks_gets_a_custom_field_of_its_type_named_and_labelled_after_it(
    plan: MigrationPlan, target: str, field: str, name: str, espocrm_type: str
) -> None:
    placement = placed(plan, target, field)
    custom = created(plan, target, name)

    assert placement.where is Where.CUSTOM
    assert placement.attributes[0].startswith(name)
    assert custom.type == espocrm_type
    assert custom.label
    assert field in custom.source_field


def test_a_custom_field_is_labelled_as_the_portal_labels_it(plan: MigrationPlan) -> None:
    assert created(plan, "Lead", "cPassportScan").label == "Passport scan"
    assert created(plan, "Lead", "cBudget") == CustomField("Lead", "cBudget", "currency", "Budget", (), "UF_CRM_BUDGET")
    assert placed(plan, "Lead", "UF_CRM_BUDGET").attributes == ("cBudget", "cBudgetCurrency")


def test_a_list_field_gets_its_labels_not_its_option_ids(plan: MigrationPlan) -> None:
    countries = created(plan, "Lead", "cUfCrm1700000000123")

    assert countries.type == "multiEnum"
    assert countries.options == tuple(option.label for option in COUNTRIES)
    assert created(plan, "Contact", "cApplicantType").options == ("Student", "Parent")
    assert created(plan, "Opportunity", "cTypeId").options == ("Sales", "Services")


def test_a_list_field_the_live_flow_already_writes_keeps_its_field_and_holds_the_label(plan: MigrationPlan) -> None:
    program = placed(plan, "Lead", "UF_CRM_PROGRAM")

    assert (program.where, program.attributes) == (Where.SAME, ("cProgram",))
    assert "as text" in program.note
    assert not any(field.name == "cProgram" for field in plan.custom_fields)


def test_status_lists_reuse_espocrm_options_of_the_same_meaning_and_add_the_rest_by_label(plan: MigrationPlan) -> None:
    sources = added(plan, "Lead", "source")

    # WEB "Website" is EspoCRM's "Web Site", PARTNER "Existing client" its "Partner": stock meanings.
    assert sources.options == ("Advertising", "By recommendation", "Instagram")
    assert "Mr." not in [option for options in plan.enum_options for option in options.options]


def test_messenger_handles_get_a_field_per_kind(plan: MigrationPlan) -> None:
    messengers = placed(plan, "Lead", "IM")

    assert messengers.where is Where.CUSTOM
    assert "cImTelegram" in messengers.attributes
    assert created(plan, "Lead", "cImTelegram").label == "Messenger: Telegram"


def test_only_the_messenger_kinds_in_use_when_the_reader_names_them() -> None:
    in_use = {SourceEntity.LEAD: {"IM", "IM.TELEGRAM", "IM.IMOL", "NAME"}}

    plan = plan_of(filled=in_use)

    assert placed(plan, "Lead", "IM").attributes == ("cImTelegram", "cImImol")


def test_a_field_no_field_can_hold_goes_to_the_description_saying_why(plan: MigrationPlan) -> None:
    link = placed(plan, "Lead", "LINK")

    assert (link.where, link.attributes) == (Where.TEXT, ("description",))
    assert "no typed field fits" in link.note


def test_system_fields_are_named_as_not_moved_with_the_reason(plan: MigrationPlan) -> None:
    modified = placed(plan, "Lead", "DATE_MODIFY")

    assert modified.where is Where.NOT_MOVED
    assert "modifiedAt" in modified.note
    assert placed(plan, "Account", "OPENED").where is Where.NOT_MOVED
    assert "derived" in placed(plan, "Call", "DEADLINE").note


def test_every_portal_field_is_placed_or_named_nothing_dropped_silently(plan: MigrationPlan) -> None:
    for entity in plan.entities:
        portal = {row[0] for row in STANDARD_FIELDS[entity.source]}
        portal |= {field.name for field in USER_FIELDS.get(entity.source, ())}

        assert {placement.field for placement in entity.placements} == portal, entity.target


def test_an_activity_is_planned_for_each_entity_its_type_sends_it_to(plan: MigrationPlan) -> None:
    activities = {entity.target for entity in plan.entities if entity.source is SourceEntity.ACTIVITY}

    assert activities == {"Meeting", "Call", "Task", "Email"}


def test_a_field_of_a_type_no_plan_knows_stops_the_plan_naming_entity_and_field() -> None:
    booking = SourceField("UF_CRM_ROOM", "resourcebooking", "Consultation room", custom=True)

    with pytest.raises(UnplaceableError) as refused:
        plan_of(portal_schema((SourceEntity.DEAL, booking)))

    assert refused.value.problems == (
        "deal.UF_CRM_ROOM ('Consultation room'): Bitrix24 type 'resourcebooking' has no place in EspoCRM",
    )


def test_an_unknown_type_in_a_field_nobody_filled_does_not_stop_it() -> None:
    booking = SourceField("UF_CRM_ROOM", "resourcebooking", "Consultation room", custom=True)

    plan = plan_of(portal_schema((SourceEntity.DEAL, booking)), filled={SourceEntity.DEAL: {"TITLE": 3}})

    deal = next(entity for entity in plan.entities if entity.source is SourceEntity.DEAL)
    assert [placement.field for placement in deal.placements] == ["TITLE"]
    assert "UF_CRM_ROOM" in deal.empty
    assert deal.placements[0].filled == 3


def test_an_existing_field_of_another_type_is_a_conflict_not_an_overwrite() -> None:
    with pytest.raises(UnplaceableError, match=r"lead\.UF_CRM_GPA: EspoCRM's Lead\.cGpa is a varchar"):
        plan_of(target=espocrm_schema(TargetField("cGpa", "varchar", custom=True)))


def test_a_field_provisioning_already_created_is_used_not_created_again() -> None:
    plan = plan_of(target=espocrm_schema(TargetField("cGpa", "float", "GPA", custom=True)))

    assert not any(field.name == "cGpa" for field in plan.custom_fields if field.entity == "Lead")
    assert placed(plan, "Lead", "UF_CRM_GPA").attributes == ("cGpa",)


def test_lead_statuses_reuse_espocrm_stock_ones_and_custom_stages_keep_their_names(plan: MigrationPlan) -> None:
    statuses = {stage.stage: (stage.option, stage.new) for stage in plan.lead_statuses}

    assert statuses["NEW"] == ("New", False)
    assert statuses["IN_PROCESS"] == ("In Process", False)
    assert statuses["CONVERTED"] == ("Converted", False)
    assert statuses["JUNK"] == ("Dead", False)
    assert statuses["PROCESSED"] == ("Processed", True)
    assert statuses["UC_4ZK2BQ"] == ("Documents requested", True)
    assert statuses["UC_7PL1XW"] == ("Not interested", True)


def test_a_custom_stage_keeps_its_semantics(plan: MigrationPlan) -> None:
    lead_status = added(plan, "Lead", "status")

    assert lead_status.options == ("Documents requested", "Processed", "Not interested")
    assert lead_status.not_actual == ("Not interested",)  # a failure closes the lead; the others stay open


def test_deal_stages_of_two_pipelines_keep_names_and_win_lose_probabilities(plan: MigrationPlan) -> None:
    stages = {(stage.pipeline, stage.stage): stage for stage in plan.deal_stages}
    probabilities = added(plan, "Opportunity", "stage").probabilities

    assert stages["Admissions", "UC_A1B2C3"].option == "Applied"
    assert stages["Visa support", "C1:WON"].option == "Visa support: Visa granted"
    assert stages["Visa support", "C1:WON"].semantics is Semantics.SUCCESS
    assert probabilities["Enrolled"] == probabilities["Visa support: Visa granted"] == 100
    assert probabilities["Lost"] == probabilities["Visa support: Visa refused"] == 0
    in_progress = [probabilities[name] for name in ("Application", "Documents", "Applied", "Visa")]
    assert in_progress == sorted(in_progress)
    assert all(0 < probability < 100 for probability in in_progress)  # EspoCRM counts 0 as lost
    assert created(plan, "Opportunity", "cCategoryId").options == ("Admissions", "Visa support")


def test_users_pair_by_email_whatever_its_case_then_by_the_users_file(plan: MigrationPlan) -> None:
    owners = {owner.user_id: (owner.user_name, owner.paired_by) for owner in plan.owners}

    assert owners["1"] == ("admin", "e-mail")
    assert owners["5"] == ("oleg", "e-mail")  # OLEG@Agency.example
    assert owners["7"] == ("maria.k", "users file")


def test_people_who_left_and_the_unpaired_go_to_the_default_owner(plan: MigrationPlan) -> None:
    owners = {owner.user_id: (owner.user_name, owner.paired_by) for owner in plan.owners}

    assert owners["9"] == ("office", "default owner (left)")
    assert owners["12"] == ("office", "default owner (left)")
    assert owners["8"] == ("office", "default owner (unpaired)")


def test_an_active_unpaired_user_without_a_default_owner_stops_the_plan_naming_them() -> None:
    with pytest.raises(UnplaceableError) as refused:
        plan_of(default_owner=None)

    assert refused.value.problems == (
        "user 8 (Selin Yilmaz) is active in Bitrix24 and has no EspoCRM user: "
        "pair them in the users file or name a --default-owner",
    )


def test_users_file_and_default_owner_must_name_real_espocrm_users() -> None:
    with pytest.raises(UnplaceableError) as refused:
        plan_of(user_mapping={"7": "mariak"}, default_owner="ofice")

    assert refused.value.problems == (
        "users file: Bitrix24 user 7 → 'mariak', no such EspoCRM user",
        "--default-owner 'ofice': no such EspoCRM user",
    )


def test_the_plan_survives_a_json_round_trip(plan: MigrationPlan) -> None:
    text = plan.to_json()

    assert MigrationPlan.from_json(text) == plan
    fields = json.loads(text)["custom_fields"]
    assert {"entity": "Lead", "name": "cHasVisa", "type": "bool", "label": "Has a visa"}.items() <= next(
        field for field in fields if field["name"] == "cHasVisa"
    ).items()


def test_the_report_lists_every_field_entity_by_entity(plan: MigrationPlan) -> None:
    report = plan.report()

    for entity in plan.entities:
        section = report.split(f"{entity.source} → {entity.target} (")[1].split("\n\n")[0]
        for placement in entity.placements:
            assert f"\n  {placement.field} '" in section, (entity.target, placement.field)
    assert "DATE_MODIFY 'Modification Date': not moved, because" in report
    assert "UC_7PL1XW 'Not interested' (failure) → new option 'Not interested'" in report
    assert "9 Ivan Left (left) → office (default owner (left))" in report
    assert "@" not in report  # people's e-mail addresses pair them; the report does not show them


def test_the_report_counts_filled_records_when_known() -> None:
    plan = plan_of(filled={SourceEntity.LEAD: {"NAME": 1840, "IM": 212}})

    assert "NAME 'First Name' [1840 filled] → firstName" in plan.report()


def test_an_activity_field_only_meetings_fill_is_a_field_of_meetings_only() -> None:
    """A call, task or e-mail gets no empty custom field for what only meetings hold."""
    filled = {"ID": 9, "SUBJECT": 9, "LOCATION": 4, "Meeting:ID": 4, "Meeting:SUBJECT": 4, "Meeting:LOCATION": 4}
    filled |= {"Call:ID": 5, "Call:SUBJECT": 5}
    plan = plan_of(filled={SourceEntity.ACTIVITY: filled})

    placed = {item.target: {p.field: p.filled for p in item.placements} for item in plan.entities}
    assert placed["Meeting"]["LOCATION"] == 4
    assert "LOCATION" not in placed["Call"]
    assert placed["Task"] == placed["Email"] == {}  # no activity of theirs
    assert {(field.entity, field.source_field) for field in plan.custom_fields if field.name == "cLocation"} == {
        ("Meeting", "LOCATION")
    }


def test_custom_names_follow_espocrm_convention() -> None:
    assert custom_name("UF_CRM_PROGRAM") == "cProgram"
    assert custom_name("UF_CRM_1700000000123") == "cUfCrm1700000000123"
    assert custom_name("SECOND_NAME") == "cSecondName"


# the command


def command(tmp_path: Path, *args: str, schemas: Schemas | None = None) -> tuple[int, str]:
    out = io.StringIO()
    given = schemas or Schemas(portal_schema(), espocrm_schema())
    files = ["--out", str(tmp_path / "plan.json"), "--provisioning", str(tmp_path / "provisioning.json")]
    code = run(["plan", *files, *args], out, {}, schemas=lambda environ, count, rate: given)
    return code, out.getvalue()


def test_the_plan_command_prints_the_report_and_writes_the_plan(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"7": "maria.k"}', encoding="utf-8")

    code, output = command(tmp_path, "--users", str(users), "--default-owner", "office")

    assert code == 0
    assert "lead → Lead (" in output
    assert "7 Maria Kaya → maria.k (users file)" in output
    written = MigrationPlan.from_json((tmp_path / "plan.json").read_bytes())
    assert written == plan_of()
    provisioning = json.loads((tmp_path / "provisioning.json").read_text(encoding="utf-8"))
    assert Provisioning.from_json(provisioning) == written.provisioning()
    assert "Provisioning: currencies not read (plan --count reads the records' amounts" in output
    assert f"next: python -m infra.espocrm.provision --plan {tmp_path / 'provisioning.json'}" in output


def test_the_provisioning_holds_the_plan_fields_options_closing_statuses_and_currencies() -> None:
    plan = plan_of(currencies={"USD", "EUR"})

    provisioning = plan.provisioning()

    assert provisioning.fields == plan.custom_fields
    assert provisioning.enum_options == plan.enum_options
    assert provisioning.currencies == ("EUR", "USD")
    assert added(plan, "Lead", "status").not_actual == ("Not interested",)
    assert "Provisioning: currencies the amounts are in: EUR, USD" in plan.report()


def test_the_plan_command_refuses_with_exit_2_naming_what_it_cannot_place(tmp_path: Path) -> None:
    booking = SourceField("UF_CRM_ROOM", "resourcebooking", "Consultation room", custom=True)
    schemas = Schemas(portal_schema((SourceEntity.LEAD, booking)), espocrm_schema())

    code, output = command(tmp_path, "--default-owner", "office", schemas=schemas)

    assert code == EXIT_USAGE
    assert "lead.UF_CRM_ROOM ('Consultation room'): Bitrix24 type 'resourcebooking'" in output
    assert not (tmp_path / "plan.json").exists()


def test_the_plan_command_says_what_is_wrong_with_the_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('["maria.k"]', encoding="utf-8")

    code, output = command(tmp_path, "--users", str(users))

    assert code == EXIT_USAGE
    assert "--users users.json: must be a JSON object" in output


def test_the_docs_show_the_plan_of_the_agency_portal() -> None:
    """docs/migration.md's "What moves where" is this plan; ``MIGRATION_PLAN_DOCS=docs/migration.md``
    rewrites it after a change."""
    rewrite = os.environ.get("MIGRATION_PLAN_DOCS")
    docs = Path(rewrite) if rewrite else Path(__file__).parents[2] / "docs" / "migration.md"
    text = docs.read_text(encoding="utf-8")
    section = f"{DOCS_START}\n{plan_of().markdown()}\n{DOCS_END}"
    if rewrite:
        before, _, rest = text.partition(DOCS_START)
        text = before + section + rest.partition(DOCS_END)[2]
        docs.write_text(text, encoding="utf-8")

    assert section in text, "docs/migration.md shows another plan: rewrite it (see the docstring)"
