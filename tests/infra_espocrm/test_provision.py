"""The provisioning command against a simulated EspoCRM admin API: the exact calls it makes.

Four situations an operator meets: a fresh install, one provisioned by hand halfway, one already
provisioned (only reads), and a wrong admin password (one call, a clear error, no traceback).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.schema import CustomField, EnumOptions, Provisioning
from infra.espocrm import provision
from tests.infra_espocrm.admin_simulator import ADMIN_PASSWORD, SITE, Call, EspoAdminSimulator
from tests.simulators.espocrm import fixture

ROOT = Path(__file__).parents[2]
ROLE = "crm-bridge API"
LEAD_GRANTS = {"create": "yes", "read": "all", "edit": "all", "delete": "no", "stream": "all"}

# What the default mapping needs, field by field, as POST Admin/fieldManager/Lead bodies.
FIELD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("cReferralCode", {"name": "referralCode", "type": "varchar", "maxLength": 64, "label": "Referral Code"}),
    (
        "cUserType",
        {"name": "userType", "type": "enum", "label": "User Type", "options": ["", "Student", "Parent", "Other"]},
    ),
    (
        "cPreferredLanguage",
        {"name": "preferredLanguage", "type": "varchar", "maxLength": 16, "label": "Preferred Language"},
    ),
    ("cProgram", {"name": "program", "type": "varchar", "maxLength": 255, "label": "Program"}),
    ("cUniversity", {"name": "university", "type": "varchar", "maxLength": 255, "label": "University"}),
    ("cConsent", {"name": "consent", "type": "bool", "label": "Consent"}),
    ("cUtmSource", {"name": "utmSource", "type": "varchar", "maxLength": 255, "label": "UTM Source"}),
    ("cUtmMedium", {"name": "utmMedium", "type": "varchar", "maxLength": 255, "label": "UTM Medium"}),
    ("cUtmCampaign", {"name": "utmCampaign", "type": "varchar", "maxLength": 255, "label": "UTM Campaign"}),
    ("cUtmTerm", {"name": "utmTerm", "type": "varchar", "maxLength": 255, "label": "UTM Term"}),
    ("cUtmContent", {"name": "utmContent", "type": "varchar", "maxLength": 255, "label": "UTM Content"}),
    ("cUtmId", {"name": "utmId", "type": "varchar", "maxLength": 255, "label": "UTM ID"}),
    ("cGclid", {"name": "gclid", "type": "varchar", "maxLength": 512, "label": "GCLID"}),
    ("cFbclid", {"name": "fbclid", "type": "varchar", "maxLength": 512, "label": "FBCLID"}),
    ("cGbraid", {"name": "gbraid", "type": "varchar", "maxLength": 255, "label": "GBRAID"}),
    ("cWbraid", {"name": "wbraid", "type": "varchar", "maxLength": 255, "label": "WBRAID"}),
    ("cTtclid", {"name": "ttclid", "type": "varchar", "maxLength": 255, "label": "TTCLID"}),
    ("cMsclkid", {"name": "msclkid", "type": "varchar", "maxLength": 255, "label": "MSCLKID"}),
    ("cYclid", {"name": "yclid", "type": "varchar", "maxLength": 255, "label": "YCLID"}),
    ("cCtwaClid", {"name": "ctwaClid", "type": "varchar", "maxLength": 255, "label": "CTWA CLID"}),
    ("cLandingPage", {"name": "landingPage", "type": "varchar", "maxLength": 255, "label": "Landing Page"}),
    ("cReferrer", {"name": "referrer", "type": "varchar", "maxLength": 255, "label": "Referrer"}),
    (
        "cFirstReferralCode",
        {"name": "firstReferralCode", "type": "varchar", "maxLength": 64, "label": "First Referral Code"},
    ),
    ("cFirstUtmSource", {"name": "firstUtmSource", "type": "varchar", "maxLength": 255, "label": "First UTM Source"}),
    ("cFirstUtmMedium", {"name": "firstUtmMedium", "type": "varchar", "maxLength": 255, "label": "First UTM Medium"}),
    (
        "cFirstUtmCampaign",
        {"name": "firstUtmCampaign", "type": "varchar", "maxLength": 255, "label": "First UTM Campaign"},
    ),
    (
        "cFirstLandingPage",
        {"name": "firstLandingPage", "type": "varchar", "maxLength": 255, "label": "First Landing Page"},
    ),
    ("cFirstReferrer", {"name": "firstReferrer", "type": "varchar", "maxLength": 255, "label": "First Referrer"}),
    ("cFirstTouchAt", {"name": "firstTouchAt", "type": "varchar", "maxLength": 32, "label": "First Touch At"}),
    ("cConsentVersion", {"name": "consentVersion", "type": "varchar", "maxLength": 64, "label": "Consent Version"}),
    ("cConsentAt", {"name": "consentAt", "type": "varchar", "maxLength": 32, "label": "Consent At"}),
    ("cConsentPage", {"name": "consentPage", "type": "varchar", "maxLength": 255, "label": "Consent Page"}),
    (
        "cVisitorSessionId",
        {"name": "visitorSessionId", "type": "varchar", "maxLength": 64, "label": "Visitor Session ID"},
    ),
    (
        "cMessengerChannel",
        {
            "name": "messengerChannel",
            "type": "enum",
            "label": "Messenger Channel",
            "options": ["", "Telegram", "WhatsApp", "Instagram"],
        },
    ),
    ("cSourceRecord", {"name": "sourceRecord", "type": "varchar", "maxLength": 64, "label": "Source Record"}),
    (
        "cSourceCreatedAt",
        {"name": "sourceCreatedAt", "type": "varchar", "maxLength": 32, "label": "Source Created At"},
    ),
]
ATTRIBUTES = [attribute for attribute, _ in FIELD_BODIES]


def field_reads() -> list[Call]:
    return [Call("GET", f"Admin/fieldManager/Lead/{attribute}") for attribute in ATTRIBUTES]


def search(entity: str, attribute: str, value: str) -> Call:
    where = [{"type": "equals", "attribute": attribute, "value": value}]
    return Call("GET", entity, {"where": where, "select": ["id"], "maxSize": 2})


def new_role_body() -> dict[str, Any]:
    return {
        "name": ROLE,
        "assignmentPermission": "all",
        "userPermission": "no",
        "portalPermission": "no",
        "exportPermission": "no",
        "massUpdatePermission": "no",
        "data": {"Lead": LEAD_GRANTS},
    }


def seed_all_fields(sim: EspoAdminSimulator) -> None:
    for attribute, body in FIELD_BODIES:
        sim.seed_field(attribute, {key: value for key, value in body.items() if key != "name"})


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[EspoAdminSimulator]:
    monkeypatch.setenv(provision.PASSWORD_VARIABLE, ADMIN_PASSWORD)
    monkeypatch.delenv("ESPOCRM_ADMIN_USER", raising=False)
    with EspoAdminSimulator() as simulator:
        yield simulator


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = provision.run(["--url", SITE, "--env", "prod", *args], out, io.StringIO())
    return code, out.getvalue()


# --- the mapping is the single source of truth -----------------------------------------------------


def test_every_mapped_custom_attribute_is_provisioned() -> None:
    mapping = load_field_mapping().espocrm
    specs = provision.field_specs(mapping)
    assert [spec.attribute for spec in specs] == list(mapping.lead_fields.values()) == ATTRIBUTES
    assert [spec.definition for spec in specs] == [body for _, body in FIELD_BODIES]


def test_referral_code_is_created_exactly_as_recorded() -> None:
    """Fixture 31 created ``referralCode`` with this body and got ``cReferralCode``."""
    specs = {spec.attribute: spec for spec in provision.field_specs(load_field_mapping().espocrm)}
    assert specs["cReferralCode"].definition == fixture("31_admin_create_field_referralCode")["request"]["body"]


def test_override_without_prefix_and_with_native_attributes(tmp_path: Path) -> None:
    """Pre-8.2 installs name fields without ``c``; native Lead attributes need no field at all."""
    override = tmp_path / "mapping.json"
    override.write_text(
        json.dumps(
            {
                "version": 1,
                "espocrm": {
                    "custom_prefix": False,
                    "lead_fields": {"referral_code": "referralCode", "university": "accountName"},
                    "enum_values": {"user_type": None},
                },
            }
        ),
        encoding="utf-8",
    )
    specs = {spec.attribute: spec for spec in provision.field_specs(load_field_mapping(override).espocrm)}
    assert "accountName" not in specs
    assert specs["referralCode"].definition["name"] == "referralCode"
    assert specs["cUserType"].definition["name"] == "cUserType"  # sent as is: nothing adds a prefix
    assert specs["cUserType"].options == ["", "other", "parent", "student"]  # no labels: the domain values


# --- fresh install ---------------------------------------------------------------------------------


def test_fresh_install_creates_fields_role_and_user(sim: EspoAdminSimulator) -> None:
    code, out = run()

    assert code == 0, out
    role_id = next(iter(sim.roles))
    user_id = next(iter(sim.users))
    assert sim.calls == [
        *field_reads(),
        search("Role", "name", ROLE),
        search("User", "userName", "crm-bridge"),
        *[Call("POST", "Admin/fieldManager/Lead", body) for _, body in FIELD_BODIES],
        Call("POST", "Role", new_role_body()),
        Call(
            "POST",
            "User",
            {"userName": "crm-bridge", "type": "api", "authMethod": "ApiKey", "isActive": True, "rolesIds": [role_id]},
        ),
    ]
    api_key = sim.users[user_id]["apiKey"]
    assert out.count(api_key) == 2  # once alone, once in the command that stores it
    assert (
        f"aws ssm put-parameter --name /crm-bridge/prod/espocrm-api-key --type SecureString --overwrite --value {api_key}"
    ) in out
    assert "HMAC secret" not in out
    assert ADMIN_PASSWORD not in out
    # What the recording answered for the same create (fixture 31) is what EspoCRM now holds.
    assert sim.fields["cReferralCode"] == fixture("31_admin_create_field_referralCode")["response"]["body"]


def test_a_second_run_changes_nothing(sim: EspoAdminSimulator) -> None:
    assert run()[0] == 0
    sim.calls.clear()

    code, out = run()

    assert code == 0
    assert sim.writes() == []
    assert "Nothing to change." in out
    assert "put-parameter" not in out


def test_fresh_install_with_hmac_prints_key_and_secret(sim: EspoAdminSimulator) -> None:
    code, out = run("--auth-method", "hmac", "--region", "eu-central-1")

    assert code == 0, out
    assert sim.writes()[-1].body["authMethod"] == "Hmac"
    user = next(iter(sim.users.values()))
    assert (
        "aws ssm put-parameter --name /crm-bridge/prod/espocrm-hmac-secret --type SecureString --overwrite "
        f"--region eu-central-1 --value {user['secretKey']}"
    ) in out
    assert f"--region eu-central-1 --value {user['apiKey']}" in out


def test_dry_run_only_reads_and_shows_the_plan(sim: EspoAdminSimulator) -> None:
    code, out = run("--dry-run")

    assert code == 0
    assert sim.calls == [*field_reads(), search("Role", "name", ROLE), search("User", "userName", "crm-bridge")]
    assert "  + create field cReferralCode (varchar(64))" in out
    assert "  + create field cUserType (enum: Student, Parent, Other)" in out
    assert "  + create role 'crm-bridge API' (Lead: create yes, read all, edit all, delete no, stream all; " in out
    assert "  + create API user 'crm-bridge' (ApiKey, role 'crm-bridge API')" in out
    assert f"Dry run: {len(FIELD_BODIES) + 2} change(s) planned, nothing written." in out
    assert "put-parameter" not in out


# --- partly provisioned ----------------------------------------------------------------------------


def test_partly_provisioned_completes_what_is_missing(sim: EspoAdminSimulator) -> None:
    # By hand earlier: the recorded referral code field (34), an enum lacking one option, the
    # consent flag, and a role that is too narrow (own leads, no assignment) with an extra scope.
    sim.seed_field("cReferralCode", dict(fixture("34_admin_get_field")["response"]["body"]))
    sim.seed_field("cUserType", {"type": "enum", "options": ["", "Student", "Parent"], "label": "User Type"})
    sim.seed_field("cConsent", {"type": "bool", "label": "Consent"})
    sim.race_fields.add("cGclid")  # someone creates it between our read and our write: 409 (fixture 32)
    role_id = sim.seed_role(
        name=ROLE,
        assignmentPermission="no",
        data={"Lead": {"create": "yes", "read": "own", "edit": "own", "delete": "no", "stream": "own"}, "Account": {}},
    )

    code, out = run()

    assert code == 0, out
    created = [(a, body) for a, body in FIELD_BODIES if a not in ("cReferralCode", "cUserType", "cConsent")]
    user_id = next(iter(sim.users))
    assert sim.calls == [
        *field_reads(),
        search("Role", "name", ROLE),
        Call("GET", f"Role/{role_id}"),
        search("User", "userName", "crm-bridge"),
        Call(
            "PUT", "Admin/fieldManager/Lead/cUserType", {"type": "enum", "options": ["", "Student", "Parent", "Other"]}
        ),
        *[Call("POST", "Admin/fieldManager/Lead", body) for _, body in created],
        Call("PUT", f"Role/{role_id}", {"data": {"Lead": LEAD_GRANTS, "Account": {}}, "assignmentPermission": "all"}),
        Call(
            "POST",
            "User",
            {"userName": "crm-bridge", "type": "api", "authMethod": "ApiKey", "isActive": True, "rolesIds": [role_id]},
        ),
    ]
    assert "  create field cGclid (varchar(512)): already there (created meanwhile)" in out
    assert out.count(sim.users[user_id]["apiKey"]) == 2


def test_existing_user_gets_the_role_and_is_reactivated_without_a_new_key(sim: EspoAdminSimulator) -> None:
    seed_all_fields(sim)
    role_id = sim.seed_role(name=ROLE, assignmentPermission="all", data={"Lead": LEAD_GRANTS})
    user_id = sim.seed_user(userName="crm-bridge", type="api", authMethod="ApiKey", isActive=False, rolesIds=["x1"])

    code, out = run()

    assert code == 0, out
    assert sim.writes() == [Call("PUT", f"User/{user_id}", {"rolesIds": ["x1", role_id], "isActive": True})]
    assert sim.users[user_id]["apiKey"] not in out


# --- fully provisioned -----------------------------------------------------------------------------


@pytest.fixture
def provisioned(sim: EspoAdminSimulator) -> tuple[str, str]:
    seed_all_fields(sim)
    role_id = sim.seed_role(name=ROLE, assignmentPermission="all", data={"Lead": LEAD_GRANTS})
    user_id = sim.seed_user(userName="crm-bridge", type="api", authMethod="ApiKey", isActive=True, rolesIds=[role_id])
    return role_id, user_id


def test_fully_provisioned_only_reads(sim: EspoAdminSimulator, provisioned: tuple[str, str]) -> None:
    role_id, user_id = provisioned

    code, out = run()

    assert code == 0
    assert sim.calls == [
        *field_reads(),
        search("Role", "name", ROLE),
        Call("GET", f"Role/{role_id}"),
        search("User", "userName", "crm-bridge"),
        Call("GET", f"User/{user_id}"),
    ]
    assert "  = field cMessengerChannel (enum: Telegram, WhatsApp, Instagram) exists" in out
    assert "  = role 'crm-bridge API' exists and allows what crm-bridge does" in out
    assert "  = API user 'crm-bridge' exists (ApiKey, role 'crm-bridge API')" in out
    assert "Nothing to change." in out
    assert sim.users[user_id]["apiKey"] not in out


def test_new_key_rotates_and_prints_only_the_new_one(sim: EspoAdminSimulator, provisioned: tuple[str, str]) -> None:
    _, user_id = provisioned
    old_key = sim.users[user_id]["apiKey"]

    code, out = run("--new-key")

    assert code == 0, out
    assert sim.writes() == [Call("POST", "UserSecurity/apiKey/generate", {"id": user_id})]
    new_key = sim.users[user_id]["apiKey"]
    assert new_key != old_key
    assert old_key not in out
    assert out.count(new_key) == 2


def test_switching_auth_method_needs_new_credentials(sim: EspoAdminSimulator, provisioned: tuple[str, str]) -> None:
    _, user_id = provisioned

    code, out = run("--auth-method", "hmac")

    assert code == 1
    assert sim.writes() == []
    assert "authenticates with ApiKey, not Hmac: run with --auth-method apikey, or add --new-key" in out

    code, out = run("--auth-method", "hmac", "--new-key")

    assert code == 0, out
    assert sim.writes() == [
        Call("PUT", f"User/{user_id}", {"authMethod": "Hmac"}),
        Call("POST", "UserSecurity/apiKey/generate", {"id": user_id}),
    ]
    assert sim.users[user_id]["secretKey"] in out


def test_a_regular_user_with_the_api_user_name_is_not_touched(sim: EspoAdminSimulator) -> None:
    seed_all_fields(sim)
    sim.seed_user(userName="crm-bridge", type="regular", isActive=True)

    code, out = run()

    assert code == 1
    assert [call.path for call in sim.writes()] == ["Role"]
    assert "user 'crm-bridge' exists but is a 'regular' user, not an API user" in out


def test_a_field_of_another_type_is_reported_not_replaced(
    sim: EspoAdminSimulator, provisioned: tuple[str, str]
) -> None:
    sim.fields["cConsent"] = {"type": "varchar", "maxLength": 10, "isCustom": True, "label": "Consent"}

    code, out = run()

    assert code == 1
    assert sim.writes() == []
    assert "field cConsent is a varchar field, the mapping needs bool" in out


def test_store_in_ssm_never_prints_the_key(sim: EspoAdminSimulator) -> None:
    with mock_aws():
        code, out = run("--store-in-ssm", "--region", "eu-central-1")
        stored = boto3.client("ssm", region_name="eu-central-1").get_parameter(
            Name="/crm-bridge/prod/espocrm-api-key", WithDecryption=True
        )["Parameter"]

    assert code == 0, out
    api_key = next(iter(sim.users.values()))["apiKey"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] == api_key
    assert api_key not in out
    assert "Stored the API key of 'crm-bridge' in SSM as /crm-bridge/prod/espocrm-api-key" in out


# --- wrong credentials -----------------------------------------------------------------------------


def test_wrong_admin_password_stops_at_the_first_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(provision.PASSWORD_VARIABLE, "not-the-password")
    with EspoAdminSimulator() as sim:
        code = provision.main(["--url", SITE])

    captured = capsys.readouterr()
    assert code == 1
    assert sim.calls == [Call("GET", "Admin/fieldManager/Lead/cReferralCode")]
    assert captured.err == (
        "error: EspoCRM rejected the credentials of admin user 'admin' (HTTP 401): check the user name and "
        "ESPOCRM_ADMIN_PASSWORD; an admin with two-factor authentication cannot log in with a password alone\n"
    )
    assert "not-the-password" not in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_a_non_admin_is_told_it_needs_an_administrator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(provision.PASSWORD_VARIABLE, ADMIN_PASSWORD)
    with EspoAdminSimulator(admin_is_admin=False) as sim:
        code = provision.main(["--url", SITE])

    assert code == 1
    assert len(sim.calls) == 1
    assert "(HTTP 403): the user must be an administrator" in capsys.readouterr().err


def test_no_password_and_no_terminal_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(provision.PASSWORD_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO())

    assert provision.main(["--url", SITE]) == 1
    assert (
        capsys.readouterr().err == "error: set ESPOCRM_ADMIN_PASSWORD (no terminal to prompt for the admin password)\n"
    )


def test_plain_http_is_refused_for_remote_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert provision.main(["--url", "http://crm.example.test"]) == 1
    assert "must use https" in capsys.readouterr().err


class _Rejecting(BaseHTTPRequestHandler):
    """A server that refuses every login, as EspoCRM does a wrong password (fixture 19)."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "text/html; charset=UTF-8")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log."""


def test_the_real_command_exits_1_without_traceback_or_password() -> None:
    """End to end, as an operator runs it: a separate process against a local server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, provision.PASSWORD_VARIABLE: "hunter2-secret"}
        result = subprocess.run(  # noqa: S603 - a fixed argv: this interpreter and our module
            [sys.executable, "-m", "infra.espocrm.provision", "--url", f"http://127.0.0.1:{server.server_port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 1
    assert result.stderr.startswith("error: EspoCRM rejected the credentials of admin user 'admin' (HTTP 401)")
    assert "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


# --- a whole-CRM move (--plan) ---------------------------------------------------------------------

MOVE_PLAN = Provisioning(
    fields=(
        CustomField("Contact", "cUfNote", "text", "Note"),
        CustomField("Contact", "cUfSource", "enum", "Source", ("Fair", "Agent")),
        CustomField("Contact", "cUfPrograms", "multiEnum", "Programs", ("MBA", "BSc")),
        CustomField("Account", "cUfStaff", "int", "Staff"),
        CustomField("Account", "cUfRating", "float", "Rating"),
        CustomField("Opportunity", "cUfFee", "currency", "Fee"),
        CustomField("Opportunity", "cUfPaid", "bool", "Paid"),
        CustomField("Opportunity", "cUfIntake", "date", "Intake"),
        CustomField("Call", "cUfRecordedAt", "datetime", "Recorded At"),
        CustomField("Account", "cUfSite", "url", "Site"),
        CustomField("Contact", "cUfPassport", "file", "Passport"),
        CustomField("Account", "cUfDocuments", "attachmentMultiple", "Documents"),
        CustomField("Contact", "cUfTelegram", "varchar", "Telegram"),
        CustomField("Lead", "cUfAgent", "link", "Agent", foreign_entity="Contact"),
    ),
    enum_options=(
        EnumOptions("Lead", "status", ("Applied", "New", "No reply"), not_actual=("No reply",)),
        EnumOptions(
            "Opportunity", "stage", ("Visa", "Enrolled", "Rejected"), {"Visa": 60, "Enrolled": 100, "Rejected": 0}
        ),
    ),
    currencies=("EUR", "KZT", "USD"),
)
MOVED_SCOPES = ("Account", "Contact", "Opportunity", "Call", "Meeting", "Task", "Email")


def plan_file(tmp_path: Path) -> str:
    path = tmp_path / "provisioning.json"
    path.write_text(json.dumps(MOVE_PLAN.to_json()), encoding="utf-8")
    return str(path)


def test_the_plan_json_round_trips() -> None:
    assert Provisioning.from_json(json.loads(json.dumps(MOVE_PLAN.to_json()))) == MOVE_PLAN
    with pytest.raises(ValueError, match="customFields"):
        Provisioning.from_json({"customFields": {"entity": "Lead"}})
    with pytest.raises(ValueError, match="'type'"):
        Provisioning.from_json({"customFields": [{"entity": "Lead", "name": "cX", "label": "X"}]})


def test_a_move_plan_creates_fields_links_stages_currencies_and_the_migration_role(
    sim: EspoAdminSimulator, tmp_path: Path
) -> None:
    code, out = run("--plan", plan_file(tmp_path))

    assert code == 0, out
    created = {
        (c.path, c.body["name"]): c.body for c in sim.writes() if c.method == "POST" and "fieldManager" in c.path
    }
    for entity in MOVED_SCOPES:  # the key every moved record carries
        key = created[(f"Admin/fieldManager/{entity}", "sourceRecord")]
        assert key == {"name": "sourceRecord", "type": "varchar", "label": "Source Record", "maxLength": 64}
    assert created[("Admin/fieldManager/Contact", "ufSource")]["options"] == ["", "Fair", "Agent"]
    assert created[("Admin/fieldManager/Contact", "ufPrograms")]["options"] == ["MBA", "BSc"]
    assert created[("Admin/fieldManager/Account", "ufDocuments")]["type"] == "attachmentMultiple"
    assert {body["type"] for body in created.values()} >= {
        "text", "enum", "multiEnum", "int", "float", "currency", "bool", "date", "datetime", "url", "file",
        "attachmentMultiple", "varchar",
    }  # fmt: skip
    link = next(c.body for c in sim.writes() if c.path == "EntityManager/action/createLink")
    assert (link["entity"], link["entityForeign"], link["link"], link["linkType"]) == (
        "Lead",
        "Contact",
        "ufAgent",
        "manyToOne",
    )
    assert sim.entity_fields["Lead"]["cUfAgent"]["type"] == "link"
    assert sim.entity_fields["Lead"]["status"]["options"][-2:] == ["Applied", "No reply"]
    assert sim.entity_fields["Lead"]["status"]["notActualOptions"] == ["Converted", "Recycled", "Dead", "No reply"]
    assert sim.entity_fields["Lead"]["status"]["options"].count("New") == 1
    stage = sim.entity_fields["Opportunity"]["stage"]
    assert stage["options"][-3:] == ["Visa", "Enrolled", "Rejected"]
    assert stage["probabilityMap"] == {
        "Prospecting": 10, "Qualification": 20, "Proposal": 50, "Negotiation": 80, "Closed Won": 100,
        "Closed Lost": 0, "Visa": 60, "Enrolled": 100, "Rejected": 0,
    }  # fmt: skip
    assert sim.settings["currencyList"] == ["USD", "EUR", "KZT"]
    data = next(iter(sim.roles.values()))["data"]
    assert data["Lead"] == LEAD_GRANTS
    assert all(data[scope] == LEAD_GRANTS for scope in MOVED_SCOPES)
    assert (data["User"], data["Import"]) == ({"read": "all"}, True)


def test_a_move_plan_applied_twice_changes_nothing(sim: EspoAdminSimulator, tmp_path: Path) -> None:
    assert run("--plan", plan_file(tmp_path))[0] == 0
    sim.calls.clear()

    code, out = run("--plan", plan_file(tmp_path))

    assert code == 0, out
    assert sim.writes() == []
    assert "Nothing to change." in out


def test_a_move_plan_dry_run_only_reads_and_says_what_it_would_do(sim: EspoAdminSimulator, tmp_path: Path) -> None:
    code, out = run("--plan", plan_file(tmp_path), "--dry-run")

    assert code == 0, out
    assert sim.writes() == []
    assert "  + create field Contact.cUfPrograms (multiEnum: MBA, BSc)" in out
    assert "  + create field Lead.cUfAgent (link to Contact)" not in out  # Lead's fields are named bare
    assert "  + create field cUfAgent (link to Contact)" in out
    assert "  + add option(s) Applied, No reply to field Lead.status; No reply close records (notActualOptions)" in out
    assert "  + add option(s) Visa, Enrolled, Rejected to field Opportunity.stage" in out
    assert "  + allow currency(ies) EUR, KZT" in out
    assert "for a move also Account, Contact, Opportunity, Call, Meeting, Task, Email, User, Import" in out


def test_a_plan_field_of_a_type_provisioning_does_not_make_is_refused(sim: EspoAdminSimulator, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(Provisioning(fields=(CustomField("Contact", "cUfX", "address", "X"),)).to_json()))

    with pytest.raises(provision.ProvisioningError, match="not 'address'"):
        run("--plan", str(path))
    assert sim.writes() == []


def test_a_closing_status_already_closing_is_left_alone(sim: EspoAdminSimulator, tmp_path: Path) -> None:
    sim.entity_fields["Lead"]["status"]["options"].append("No reply")
    sim.entity_fields["Lead"]["status"]["notActualOptions"].append("No reply")

    code, out = run("--plan", plan_file(tmp_path), "--dry-run")

    assert code == 0, out
    assert "  + add option(s) Applied to field Lead.status\n" in out


@pytest.mark.parametrize(
    ("name", "parameter"),
    [
        ("52_admin_update_enum_without_type", ""),
        ("54_admin_update_stage_probabilities_without_param_list", "probabilityMap"),
        ("60_admin_update_not_actual_without_param_list", "notActualOptions"),
        ("61_admin_update_not_actual_with_param_list", "notActualOptions"),
    ],
)
def test_the_admin_simulator_answers_field_updates_as_recorded(
    sim: EspoAdminSimulator, name: str, parameter: str
) -> None:
    recorded = fixture(name)
    sim.entity_fields["Opportunity"]["stage"] = dict(fixture("53_admin_read_opportunity_stage")["response"]["body"])

    with httpx.Client(auth=("admin", ADMIN_PASSWORD)) as client:
        response = client.request(
            recorded["request"]["method"],
            f"{SITE}/api/v1/{recorded['request']['path'].lstrip('/')}",
            json=recorded["request"]["body"],
        )

    assert response.status_code == recorded["response"]["status"]
    if recorded["response"]["body_raw"] == "":
        assert response.content == b""
    else:  # a parameter sent without the parameter list is not saved, with it it is
        assert response.json()[parameter] == recorded["response"]["body"][parameter]
