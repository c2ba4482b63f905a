"""Record the whole-CRM move's exchanges with a real EspoCRM 8.4.2 (fixtures 42-61).

    PYTHONPATH=layers/shared:. python -m tests.real_crm.record_move_fixtures

A fresh local EspoCRM (infra/espocrm/local.py) is provisioned as an operator would for a move
(``--plan`` with a small plan), then each exchange is made and written in the format of the others
(tests/fixtures/espocrm-8.4.2/README.md): the key and the admin password replaced, the host shown
as ``espocrm.local``. Metadata, I18n are cut to the moved entities (their answers are megabytes).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import httpx

from crm_bridge.migrate.espocrm_target import SCHEMA_ENTITIES
from crm_bridge.migrate.schema import CustomField, EnumOptions, Provisioning
from infra.espocrm.local import REPOSITORY, EspoCrmSite, LocalEspoCrm, ensure_installed, provision

FIXTURES = REPOSITORY / "tests" / "fixtures" / "espocrm-8.4.2"
PLAN = Provisioning(
    fields=(
        CustomField("Account", "cUfIndustryCode", "varchar", "Industry Code", source_field="UF_CRM_1"),
        CustomField("Contact", "cUfPartner", "link", "Partner", foreign_entity="Account", source_field="UF_CRM_2"),
    ),
    enum_options=(
        EnumOptions("Lead", "status", ("Applied",)),
        EnumOptions("Opportunity", "stage", ("Visa", "Enrolled"), {"Visa": 60, "Enrolled": 100}),
    ),
    currencies=("EUR",),
)
"""A plan small enough to read in the fixtures, of each kind of item."""


class Recorder:
    def __init__(self, site: EspoCrmSite, api_key: str) -> None:
        self.site = site
        self.api_key = api_key
        self._api = httpx.Client(base_url=f"{site.url}/api/v1/", headers={"X-Api-Key": api_key}, timeout=120)
        self._admin = httpx.Client(
            base_url=f"{site.url}/api/v1/", auth=(site.admin_user, site.admin_password), timeout=120
        )

    def exchange(
        self,
        name: str,
        description: str,
        method: str,
        path: str,
        *,
        admin: bool = False,
        body: Any = None,
        params: dict[str, str] | None = None,
        keep: Any = None,
    ) -> httpx.Response:
        """Make the request, write it and its answer as ``name``.json; ``keep`` cuts a huge body."""
        client = self._admin if admin else self._api
        response = client.request(method, path, json=body, params=params)
        parsed: Any
        try:
            parsed = response.json()
            is_json = True
        except ValueError:
            parsed, is_json = None, False
        if keep is not None and is_json:
            parsed = keep(parsed)
        raw = response.content.decode("utf-8", "replace") if keep is None else json.dumps(parsed)
        host = self.site.url.split("//", 1)[1]
        record = {
            "name": name.split("_", 1)[1],
            "description": description + (" (body cut to the moved entities)" if keep is not None else ""),
            "request": {
                "method": method,
                "url": f"http://espocrm.local/api/v1/{path}",
                "path": f"/{path}",
                "query": params,
                "headers": {
                    "Accept": "application/json",
                    **({"Authorization": "Basic <REDACTED>"} if admin else {"X-Api-Key": "<API_KEY>"}),
                    **({"Content-Type": "application/json"} if body is not None else {}),
                },
                "body": body,
            },
            "response": {
                "status": response.status_code,
                "reason": response.reason_phrase,
                "headers": [
                    [key, "espocrm.local" if key.lower() == "host" else value.replace(host, "espocrm.local")]
                    for key, value in (
                        (raw_key.decode(), raw_value.decode()) for raw_key, raw_value in response.headers.raw
                    )
                ],
                "body_is_json": is_json,
                "body": parsed,
                "body_raw": raw.replace(self.api_key, "<API_KEY>"),
            },
        }
        text = json.dumps(record, indent=1, ensure_ascii=False).replace(self.api_key, "<API_KEY>")
        (FIXTURES / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        print(f"{name}: {response.status_code}")
        return response


def _role_id(recorder: Recorder) -> str:
    roles = recorder._admin.get("Role", params={"select": "id,name"}).json()["list"]
    return str(next(role["id"] for role in roles if role["name"] == "crm-bridge API"))


def _provision_move(site: EspoCrmSite) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(PLAN.to_json(), file)
    subprocess.run(  # noqa: S603  # our own module, fixed argv
        [sys.executable, "-m", "infra.espocrm.provision", "--url", site.url, "--plan", file.name],
        cwd=REPOSITORY,
        env=dict(os.environ, ESPOCRM_ADMIN_PASSWORD=site.admin_password),
        check=True,
        capture_output=True,
    )


def record(recorder: Recorder) -> None:
    r = recorder
    admin_id = r._admin.get("App/user").json()["user"]["id"]
    for user in (
        {
            "userName": "anna.sales",
            "firstName": "Anna",
            "lastName": "Sales",
            "emailAddress": "anna@agency.example",
            "type": "regular",
            "isActive": True,
        },
        {
            "userName": "oleg.left",
            "firstName": "Oleg",
            "lastName": "Left",
            "emailAddress": "oleg@agency.example",
            "type": "regular",
            "isActive": False,
        },
    ):
        r._admin.post("User", json=user)
    data = r._admin.get(f"Role/{_role_id(r)}").json()["data"]
    without_import = {key: value for key, value in data.items() if key != "Import"}
    r._admin.put(f"Role/{_role_id(r)}", json={"data": without_import})
    email = {
        "name": "Visa documents",
        "subject": "Visa documents",
        "body": "<p>Attached.</p>",
        "isHtml": True,
        "status": "Archived",
        "dateSent": "2024-03-04 09:00:00",
        "from": "student@example.com",
        "to": "office@example.com",
        "assignedUserId": admin_id,
    }
    r.exchange(
        "46_create_email_from_not_allowed",
        "An archived Email from another address, role without Import: 403",
        "POST",
        "Email",
        body=email,
    )
    r._admin.put(f"Role/{_role_id(r)}", json={"data": data})
    account = r.exchange(
        "42_create_account_created_at_ignored",
        "An API user's createdAt / createdById are ignored without an error",
        "POST",
        "Account",
        body={
            "name": "Acme Recorded",
            "cSourceRecord": "bitrix24:company:7",
            "assignedUserId": admin_id,
            "createdAt": "2020-01-02 03:04:05",
            "createdById": admin_id,
        },
    ).json()
    r.exchange(
        "43_create_note_created_at_ignored",
        "A Post on an Account: createdAt / createdById ignored (the author and date go into the text)",
        "POST",
        "Note",
        body={
            "type": "Post",
            "parentType": "Account",
            "parentId": account["id"],
            "post": "Called back.",
            "createdAt": "2020-01-02 03:04:05",
            "createdById": admin_id,
        },
    )
    content = base64.b64encode(b"%PDF-1.4 recorded\n").decode()
    attachment = r.exchange(
        "44_create_attachment",
        "A file for a Note's attachments, its bytes as a data: URL",
        "POST",
        "Attachment",
        body={
            "name": "passport.pdf",
            "type": "application/pdf",
            "role": "Attachment",
            "relatedType": "Note",
            "field": "attachments",
            "file": f"data:application/pdf;base64,{content}",
        },
    ).json()
    r.exchange("45_read_attachment_file", "The file's bytes back", "GET", f"Attachment/file/{attachment['id']}")
    r.exchange(
        "47_create_email_archived_with_import_scope",
        "The same Email once the role has Import",
        "POST",
        "Email",
        body=email,
    )
    opportunity = {
        "name": "Enrolment",
        "accountId": account["id"],
        "stage": "Visa",
        "amount": 1200,
        "closeDate": "2024-05-01",
        "assignedUserId": admin_id,
    }
    r.exchange(
        "48_invalid_currency_not_listed",
        "An amount in a currency Settings.currencyList lacks",
        "POST",
        "Opportunity",
        body={**opportunity, "amountCurrency": "KZT"},
    )
    r.exchange(
        "49_create_opportunity_close_date_required",
        "closeDate is required",
        "POST",
        "Opportunity",
        body={key: value for key, value in opportunity.items() if key != "closeDate"} | {"amountCurrency": "EUR"},
    )
    created = r.exchange(
        "50_create_opportunity",
        "With its account, a stage provisioning added, EUR",
        "POST",
        "Opportunity",
        body={**opportunity, "amountCurrency": "EUR"},
    ).json()
    r.exchange(
        "51_create_lead_converted_links",
        "A converted lead names what it became: createdAccountId / createdOpportunityId are writable",
        "POST",
        "Lead",
        body={
            "lastName": "Recorded",
            "status": "Converted",
            "createdAccountId": account["id"],
            "createdOpportunityId": created["id"],
            "assignedUserId": admin_id,
        },
    )
    r.exchange(
        "52_admin_update_enum_without_type",
        "A field manager update without type: 500 'No type.'",
        "PUT",
        "Admin/fieldManager/Lead/status",
        admin=True,
        body={"options": ["New", "Assigned"]},
    )
    stage = r.exchange(
        "53_admin_read_opportunity_stage",
        "Opportunity.stage after provisioning",
        "GET",
        "Admin/fieldManager/Opportunity/stage",
        admin=True,
    ).json()
    r.exchange(
        "54_admin_update_stage_probabilities_without_param_list",
        "probabilityMap is not saved unless fieldManagerAdditionalParamList names it",
        "PUT",
        "Admin/fieldManager/Opportunity/stage",
        admin=True,
        body={"type": "enum", "options": stage["options"], "probabilityMap": {**stage["probabilityMap"], "Visa": 65}},
    )
    r.exchange(
        "55_admin_create_link",
        "A link Contact -> Account by the entity manager",
        "POST",
        "EntityManager/action/createLink",
        admin=True,
        body={
            "entity": "Contact",
            "entityForeign": "Account",
            "link": "ufSponsor",
            "linkForeign": "ufSponsorContact",
            "label": "Sponsor",
            "labelForeign": "Sponsor (Contact)",
            "linkType": "manyToOne",
        },
    )
    r.exchange(
        "56_api_metadata_moved_entities",
        "What the migration role's API user reads of the metadata",
        "GET",
        "Metadata",
        keep=lambda body: {"entityDefs": {e: {"fields": body["entityDefs"][e]["fields"]} for e in SCHEMA_ENTITIES}},
    )
    r.exchange(
        "57_api_i18n_moved_entities",
        "Field labels and option labels",
        "GET",
        "I18n",
        keep=lambda body: {e: {"fields": body[e]["fields"]} for e in SCHEMA_ENTITIES},
    )
    r.exchange(
        "59_api_app_user",
        "The API user and its role's access table (what read_schema checks before reading)",
        "GET",
        "App/user",
        keep=lambda body: {"user": body["user"], "acl": {"table": body["acl"]["table"]}},
    )
    r.exchange(
        "58_api_user_list",
        "The users the migration role reads: active ones only (an inactive user and API users are not listed)",
        "GET",
        "User",
        params={
            "select": "id,userName,name,emailAddress,isActive",
            "maxSize": "200",
            "offset": "0",
            "orderBy": "userName",
        },
    )


def record_closing_statuses(r: Recorder) -> None:
    """Whether a field manager update saves ``notActualOptions`` (the statuses that close a lead): the
    plan's closing statuses join it, so provisioning must know what the server keeps."""
    status = r._admin.get("Admin/fieldManager/Lead/status").json()
    closing = [*status["notActualOptions"], "Applied"]
    r.exchange(
        "60_admin_update_not_actual_without_param_list",
        "notActualOptions sent without fieldManagerAdditionalParamList",
        "PUT",
        "Admin/fieldManager/Lead/status",
        admin=True,
        body={"type": "enum", "options": status["options"], "notActualOptions": closing},
    )
    r.exchange(
        "61_admin_update_not_actual_with_param_list",
        "notActualOptions sent with fieldManagerAdditionalParamList as the read answer carries it",
        "PUT",
        "Admin/fieldManager/Lead/status",
        admin=True,
        body={
            "type": "enum",
            "options": status["options"],
            "notActualOptions": closing,
            "fieldManagerAdditionalParamList": status["fieldManagerAdditionalParamList"],
        },
    )


def main() -> None:
    with LocalEspoCrm(ensure_installed()) as espocrm:
        site = espocrm.site
        key = provision(site, env="test")
        _provision_move(site)
        recorder = Recorder(site, key)
        record(recorder)
        record_closing_statuses(recorder)


if __name__ == "__main__":
    main()
