"""Self-test of the simulated EspoCRM: it must answer the recorded 8.4.2 requests as the server did.

Provider tests run against the simulator; if it drifted from the recordings they would pass
against a CRM that does not exist. Each recorded request is replayed after seeding the state the
recording assumed, and the answer's status, reason header, content type and body shape compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from crm_bridge.field_mapping import load_field_mapping
from infra.espocrm.provision import field_specs
from tests.simulators.base import Failure, SimulatedCrm
from tests.simulators.espocrm import (
    DEFAULT_CUSTOM_ATTRIBUTES,
    DEFAULT_CUSTOM_ENUMS,
    DEFAULT_CUSTOM_MAX_LENGTH,
    SimulatedEspoCrm,
    fixture,
    fixture_names,
)

RECORDED_HOST = "http://espocrm.local"
JANE_ID = "6b0244fec9dffa4c4"
REF_ID = "6b024500514bdc17d"
TIMESTAMPS = frozenset({"createdAt", "modifiedAt"})
JANE_EMAIL = "jane.doe.012726@example.com"


# --- helpers -----------------------------------------------------------------------------------


def seed_jane(sim: SimulatedEspoCrm, **attributes: Any) -> str:
    """The lead the recording created in 02 and later searched for, under its recorded id."""
    return sim.seed_lead(
        first_name="Jane",
        last_name="Doe012726",
        phone="+12025552726",
        email=JANE_EMAIL,
        attributes={
            "id": JANE_ID,
            "status": "New",
            "source": "Web Site",
            "accountName": "Acme Test Ltd",
            "description": "Created by the recording script",
            **attributes,
        },
    )


def replay(sim: SimulatedEspoCrm, client: httpx.Client, name: str) -> httpx.Response:
    """Send a recorded request to the simulator: its host and the redacted key swapped for the sim's."""
    recorded = fixture(name)["request"]
    url = recorded["url"].replace(RECORDED_HOST, sim.base_url)
    headers = {key: value.replace("<API_KEY>", sim.api_key) for key, value in recorded["headers"].items()}
    body = recorded["body"]
    content = body.encode() if isinstance(body, str) else None if body is None else json.dumps(body).encode()
    return client.request(recorded["method"], url, headers=headers, content=content)


def recorded_header(name: str, header: str) -> str | None:
    headers = fixture(name)["response"]["headers"]
    return next((value for key, value in headers if key.lower() == header.lower()), None)


def key_set(value: Any) -> set[str]:
    assert isinstance(value, dict), value
    return set(value)


def assert_like_recording(response: httpx.Response, name: str, *, same_keys: bool = True) -> Any:
    """Status, reason, content type, JSON type and (for objects / lists of objects) the key sets."""
    recorded = fixture(name)["response"]
    assert response.status_code == recorded["status"], response.content
    reason = recorded_header(name, "X-Status-Reason")
    if reason is not None:
        assert response.headers.get("X-Status-Reason") == reason
    else:
        assert "X-Status-Reason" not in response.headers
    assert response.headers.get("Content-Type") == recorded_header(name, "Content-Type")
    if recorded["body_raw"] == "":
        assert response.content == b""
        return None
    body = response.json()
    expected = recorded["body"]
    assert type(body) is type(expected)
    if same_keys and isinstance(expected, dict):
        assert key_set(body) == key_set(expected)
    if same_keys and isinstance(expected, list):
        assert [key_set(item) for item in body] == [key_set(item) for item in expected]
    return body


def without_timestamps(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in TIMESTAMPS}


def signed(method: str, path: str, api_key: str, secret: str, *, legacy: bool = False) -> str:
    mac = hmac.new(secret.encode(), f"{method} /{path}".encode(), hashlib.sha256)
    digest = mac.digest() if legacy else mac.hexdigest().encode()
    return base64.b64encode(api_key.encode() + b":" + digest).decode()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for the module: building its TLS context is the slowest thing in these tests."""
    with httpx.Client() as http:
        yield http


@pytest.fixture
def sim() -> Iterator[SimulatedEspoCrm]:
    """The install as configured for the project: every custom attribute present."""
    with SimulatedEspoCrm() as simulated:
        yield simulated


@pytest.fixture
def bare() -> Iterator[SimulatedEspoCrm]:
    """The install as recorded before fixture 31 added a custom field: no custom attributes."""
    with SimulatedEspoCrm(custom_attributes=()) as simulated:
        yield simulated


@pytest.fixture
def referral() -> Iterator[SimulatedEspoCrm]:
    """The install as recorded from fixture 31 on: ``cReferralCode`` only."""
    with SimulatedEspoCrm(custom_attributes=("cReferralCode",)) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def api_client() -> Iterator[httpx.Client]:
    defaults = SimulatedEspoCrm()
    with httpx.Client(base_url=f"{defaults.base_url}/api/v1", headers={"X-Api-Key": defaults.api_key}) as http:
        yield http


@pytest.fixture
def api(sim: SimulatedEspoCrm, api_client: httpx.Client) -> httpx.Client:
    """A client for the ``sim`` fixture's API, authenticated with its key."""
    return api_client


# --- the interface -----------------------------------------------------------------------------


def test_satisfies_the_simulated_crm_protocol() -> None:
    simulator = SimulatedEspoCrm()
    crm: SimulatedCrm = simulator
    assert crm.provider_name == "espocrm"
    assert isinstance(simulator.router, respx.MockRouter)


def test_the_recordings_are_all_copied() -> None:
    names = fixture_names()
    assert names[0] == "02_create_lead"
    assert names[-1] == "61_admin_update_not_actual_with_param_list"
    assert len(names) == 59


# --- CRUD replays ------------------------------------------------------------------------------


def test_create_replays_02(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    body = assert_like_recording(replay(bare, client, "02_create_lead"), "02_create_lead")
    recorded = fixture("02_create_lead")["response"]["body"]
    assert list(body) == list(recorded)
    assert without_timestamps(body) | {"id": recorded["id"]} == without_timestamps(recorded)
    assert re.fullmatch(r"[0-9a-f]{17}", body["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["createdAt"])
    assert bare.lead_phones(body["id"]) == ["+12025552726"]  # "+1 202 555 2726" stored as E.164
    assert bare.lead_emails(body["id"]) == [JANE_EMAIL]


def test_read_put_patch_replay_03_to_05(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(bare)
    for name in ("03_read_lead", "04_update_lead", "05_update_lead_patch"):
        body = assert_like_recording(replay(bare, client, name), name)
        recorded = fixture(name)["response"]["body"]
        assert list(body) == list(recorded)
        assert without_timestamps(body) == without_timestamps(recorded)
    assert bare.lead(JANE_ID)["title"] == "CTO"


def test_read_carries_every_custom_attribute_of_the_install(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(sim, cUtmSource="google")
    body = replay(sim, client, "03_read_lead").json()
    assert key_set(body) == key_set(fixture("03_read_lead")["response"]["body"]) | set(DEFAULT_CUSTOM_ATTRIBUTES)
    assert body["cUtmSource"] == "google"
    assert all(body[name] is None for name in DEFAULT_CUSTOM_ATTRIBUTES if name != "cUtmSource")


def test_create_without_last_name_replays_21(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    body = assert_like_recording(replay(bare, client, "21_no_lastname_accepted"), "21_no_lastname_accepted")
    assert body["name"] == "NoLastName"
    assert body["phoneNumberData"] == []


@pytest.mark.parametrize(
    "name",
    [
        "22_invalid_maxlength",
        "23_invalid_phone_national_format",
        "24_invalid_currency_amount",
        "25_invalid_email",
        "26_invalid_enum",
        "40_invalid_email_non_ascii_local_part",
        "41_invalid_phone_unknown_to_libphonenumber_8_13_24",
    ],
)
def test_validation_failures_replay(bare: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    response = replay(bare, client, name)
    assert assert_like_recording(response, name) == fixture(name)["response"]["body"]
    assert bare.leads() == []


def test_malformed_json_replays_27(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    assert_like_recording(replay(bare, client, "27_invalid_json"), "27_invalid_json")


@pytest.mark.parametrize(
    "name",
    ["28_read_not_found", "29_delete_forbidden", "30_forbidden_scope", "33_apikey_cannot_use_admin_api"],
)
def test_error_answers_replay(bare: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    seed_jane(bare)
    assert_like_recording(replay(bare, client, name), name)
    assert len(bare.leads()) == 1


@pytest.mark.parametrize("name", ["31_admin_create_field_referralCode", "34_admin_get_field"])
def test_admin_logins_are_not_simulated(bare: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    """The field manager needs the admin's password login, which the simulator does not offer."""
    response = replay(bare, client, name)
    assert response.status_code == 401
    assert response.content == b""


def test_update_of_unknown_record_is_404(api: httpx.Client) -> None:
    response = api.put("/Lead/doesnotexist0000", json={"title": "x"})
    assert response.status_code == 404
    assert response.headers["X-Status-Reason"] == "Record doesnotexist0000 not found."


# --- custom and unknown attributes ---------------------------------------------------------------


def test_custom_attribute_create_replays_36(referral: SimulatedEspoCrm, client: httpx.Client) -> None:
    name = "36_create_lead_with_custom_field"
    body = assert_like_recording(replay(referral, client, name), name)
    assert list(body) == list(fixture(name)["response"]["body"])
    assert body["cReferralCode"] == "REF-42"
    assert body["phoneNumber"] == "+14155552726"


def test_custom_attribute_search_replays_37(referral: SimulatedEspoCrm, client: httpx.Client) -> None:
    referral.seed_lead(
        first_name="Ref",
        last_name="Coded012726",
        phone="+14155552726",
        attributes={"id": REF_ID, "cReferralCode": "REF-42"},
    )
    name = "37_search_by_custom_field"
    found = assert_like_recording(replay(referral, client, name), name, same_keys=False)
    expected = fixture(name)["response"]["body"]
    assert found["total"] == expected["total"] == 1
    assert [without_timestamps(row) for row in found["list"]] == [without_timestamps(row) for row in expected["list"]]
    assert list(found["list"][0]) == list(expected["list"][0])


def test_unknown_attribute_is_dropped_silently_replay_38_39(referral: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(referral, title="CTO", status="In Process", description="Updated by the recording script")
    for name in ("38_set_unknown_attribute_referralCode", "39_read_lead_after_unknown_attr"):
        body = assert_like_recording(replay(referral, client, name), name)
        assert list(body) == list(fixture(name)["response"]["body"])
        assert "referralCode" not in body
        assert body["cReferralCode"] is None
    assert "referralCode" not in referral.lead(JANE_ID)


def test_drop_attribute_makes_writes_ignore_it_and_reads_omit_it(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    sim.drop_attribute("cUtmSource")
    created = api.post("/Lead", json={"lastName": "Dropped", "cUtmSource": "google", "cUtmMedium": "cpc"})
    assert created.status_code == 200
    assert "cUtmSource" not in created.json()
    assert created.json()["cUtmMedium"] == "cpc"
    lead_id = created.json()["id"]
    assert "cUtmSource" not in api.get(f"/Lead/{lead_id}").json()
    assert "cUtmSource" not in sim.lead(lead_id)
    assert "cUtmSource" not in sim.custom_attributes
    where = {"where": [{"type": "equals", "attribute": "cUtmSource", "value": "google"}]}
    search = api.get("/Lead", params={"searchParams": json.dumps(where)})
    assert search.status_code == 400
    assert search.headers["X-Status-Reason"] == "Not existing attribute 'cUtmSource' in where."
    with pytest.raises(ValueError, match="custom"):
        sim.drop_attribute("firstName")


def test_reject_attribute_answers_the_validation_failure(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    sim.reject_attribute("cUtmCampaign")
    expected = {
        "messageTranslation": {
            "label": "validationFailure",
            "scope": None,
            "data": {"field": "cUtmCampaign", "type": "valid"},
        }
    }
    reason = "Field validation failure; entityType: Lead, field: cUtmCampaign, type: valid."
    rejected = api.post("/Lead", json={"lastName": "Campaign", "cUtmCampaign": "spring"})
    assert (rejected.status_code, rejected.json(), rejected.headers["X-Status-Reason"]) == (400, expected, reason)
    assert sim.leads() == []
    lead_id = api.post("/Lead", json={"lastName": "Campaign"}).json()["id"]
    updated = api.patch(f"/Lead/{lead_id}", json={"cUtmCampaign": "spring"})
    assert (updated.status_code, updated.json()) == (400, expected)
    assert sim.lead(lead_id)["cUtmCampaign"] is None


def test_reject_attribute_can_name_a_field_the_write_lacks(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    sim.reject_attribute("cReferralCode", named="cPartnerAgreement")
    rejected = api.post("/Lead", json={"lastName": "Ref", "cReferralCode": "P-1"})
    assert rejected.status_code == 400
    assert rejected.json()["messageTranslation"]["data"] == {"field": "cPartnerAgreement", "type": "required"}
    assert api.post("/Lead", json={"lastName": "Ref"}).status_code == 200


def test_a_required_field_refuses_creates_without_it(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    sim.require_attribute("cIntake")
    refused = api.post("/Lead", json={"lastName": "Intake"})
    assert (refused.status_code, refused.json()["messageTranslation"]["data"]) == (
        400,
        {"field": "cIntake", "type": "required"},
    )
    lead_id = api.post("/Lead", json={"lastName": "Intake", "cIntake": "2027"}).json()["id"]
    assert api.patch(f"/Lead/{lead_id}", json={"title": "x"}).status_code == 200, "an update checks what it sets"
    assert api.patch(f"/Lead/{lead_id}", json={"cIntake": ""}).status_code == 400


def test_the_custom_fields_are_defined_as_provisioning_creates_them() -> None:
    """The simulator's maxLength and options of each custom field are what infra/espocrm/provision.py
    creates (and what GET Metadata showed on a provisioned 8.4.2)."""
    specs = field_specs(load_field_mapping().espocrm)
    assert {spec.attribute: spec.definition["maxLength"] for spec in specs if spec.type == "varchar"} == (
        DEFAULT_CUSTOM_MAX_LENGTH
    )
    assert {spec.attribute: tuple(spec.options) for spec in specs if spec.type == "enum"} == DEFAULT_CUSTOM_ENUMS
    assert {spec.attribute for spec in specs} == set(DEFAULT_CUSTOM_ATTRIBUTES)


@pytest.mark.parametrize(
    ("body", "field", "check"),
    [
        ({"cProgram": "x" * 256}, "cProgram", "maxLength"),
        ({"cPreferredLanguage": "x" * 17}, "cPreferredLanguage", "maxLength"),
        ({"cUserType": "Teacher"}, "cUserType", "valid"),
        ({"cUserType": "student"}, "cUserType", "valid"),  # options are case-sensitive
        ({"emailAddress": "ayşe@gmail.com"}, "emailAddress", "emailAddress"),
        (
            {"emailAddressData": [{"emailAddress": "ali..veli@example.com", "primary": True}]},
            "emailAddress",
            "emailAddress",
        ),
        ({"phoneNumber": "+2290195123456"}, "phoneNumber", "valid"),
    ],
)
def test_custom_and_contact_fields_refuse_what_espocrm_refuses(
    sim: SimulatedEspoCrm, api: httpx.Client, body: dict[str, Any], field: str, check: str
) -> None:
    refused = api.post("/Lead", json={"lastName": "Checked", **body})
    assert refused.status_code == 400
    assert refused.json()["messageTranslation"]["data"] == {"field": field, "type": check}


def test_an_enum_takes_its_options_and_no_value(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    for number, value in enumerate(("Student", "", None)):
        assert api.post("/Lead", json={"lastName": f"Typed{number}", "cUserType": value}).status_code == 200
    assert api.post("/Lead", json={"lastName": "Long", "cConsent": True, "cProgram": "x" * 255}).status_code == 200


def test_define_field_changes_what_a_field_accepts(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    sim.define_field("cUserType", options=["", "Student", "Other"])
    sim.define_field("cProgram", max_length=20)
    refused_option = api.post("/Lead", json={"lastName": "Defined", "cUserType": "Parent"})
    refused_length = api.post("/Lead", json={"lastName": "Defined", "cProgram": "Computer Engineering (BSc)"})
    assert refused_option.json()["messageTranslation"]["data"] == {"field": "cUserType", "type": "valid"}
    assert refused_length.json()["messageTranslation"]["data"] == {"field": "cProgram", "type": "maxLength"}


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "06_search_by_phone_equals",
        "07_search_by_phone_digits",
        "08_search_by_phone_e164",
        "09_search_by_phoneNumberNumeric",
        "10_search_textFilter_phone",
        "11_search_by_phone_contains",
        "12_search_by_email",
        "13_search_or_phone_email",
        "14_search_no_match",
    ],
)
def test_searches_replay(bare: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    seed_jane(bare)
    body = assert_like_recording(replay(bare, client, name), name, same_keys=False)
    expected = fixture(name)["response"]["body"]
    assert key_set(body) == key_set(expected)
    assert body["total"] == expected["total"]
    assert [list(row) for row in body["list"]] == [list(row) for row in expected["list"]]
    assert [row["id"] for row in body["list"]] == [row["id"] for row in expected["list"]]


def test_search_params_json_finds_what_the_bracket_form_finds(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    seed_jane(sim)
    sim.seed_lead(first_name="Other", last_name="Person", email="other@example.com")
    clauses = [
        {"type": "equals", "attribute": "phoneNumber", "value": "+12025552726"},
        {"type": "equals", "attribute": "emailAddress", "value": JANE_EMAIL.upper()},
    ]
    params = {"where": [{"type": "or", "value": clauses}], "select": ["id"], "maxSize": 5, "order": "ASC"}
    found = api.get("/Lead", params={"searchParams": json.dumps(params)}).json()
    assert found["total"] == 1
    # Besides the selection: the order-by attribute and what the ACL reads (as in fixtures 08/37).
    jane = sim.lead(JANE_ID)
    assert found["list"] == [
        {"id": JANE_ID, "createdAt": jane["createdAt"], "createdById": jane["createdById"], "assignedUserId": None}
    ]


def test_search_over_the_size_limit_is_forbidden(api: httpx.Client) -> None:
    response = api.get("/Lead", params={"maxSize": "201"})
    assert response.status_code == 403
    assert response.headers["X-Status-Reason"] == "Max size should not exceed 200. Use offset and limit."
    assert response.content == b""


def test_search_orders_pages_and_counts(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    ids = [sim.seed_lead(last_name=f"Lead{index}", attributes={"cProgram": "MBA"}) for index in range(5)]
    sim.seed_lead(last_name="Elsewhere", attributes={"cProgram": "BSc"})
    where = [{"type": "equals", "attribute": "cProgram", "value": "mba"}]
    newest_first = api.get("/Lead", params={"searchParams": json.dumps({"where": where, "maxSize": 2})}).json()
    assert newest_first["total"] == 5
    assert [row["id"] for row in newest_first["list"]] == ids[::-1][:2]
    query = {"where": where, "orderBy": "lastName", "order": "ASC", "offset": 3, "select": ["lastName"]}
    page = api.get("/Lead", params={"searchParams": json.dumps(query)}).json()
    assert [row["lastName"] for row in page["list"]] == ["Lead3", "Lead4"]
    assert api.get("/Lead", params={"searchParams": "{not json"}).status_code == 400


def test_phone_search_matches_any_stored_number_exactly(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    lead_id = sim.seed_lead(
        last_name="TwoPhones",
        attributes={
            "phoneNumberData": [
                {"phoneNumber": "+12025550100", "primary": True},
                {"phoneNumber": "+442071234567", "primary": False, "type": "Office"},
            ]
        },
    )
    for value, total in (("+442071234567", 1), ("+44 20 7123 4567", 0), ("442071234567", 0)):
        where = {"where": [{"type": "equals", "attribute": "phoneNumber", "value": value}]}
        assert api.get("/Lead", params={"searchParams": json.dumps(where)}).json()["total"] == total
    assert sim.lead_phones(lead_id) == ["+12025550100", "+442071234567"]
    assert sim.lead(lead_id)["phoneNumber"] == "+12025550100"


# --- duplicates ----------------------------------------------------------------------------------


def test_duplicate_create_replays_15(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(bare, title="CTO", status="In Process")
    name = "15_create_lead_duplicate_409"
    body = assert_like_recording(replay(bare, client, name), name)
    assert [row["id"] for row in body] == [JANE_ID]
    assert list(body[0]) == list(fixture(name)["response"]["body"][0])
    assert len(bare.leads()) == 1


def test_skip_duplicate_check_replays_16(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(bare)
    name = "16_create_lead_duplicate_skip"
    body = assert_like_recording(replay(bare, client, name), name)
    assert body["id"] != JANE_ID
    assert len(bare.leads()) == 2


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"firstName": "JANE", "lastName": "doe012726", "emailAddress": "new@example.com"}, 409),
        ({"firstName": "Janet", "lastName": "Other", "emailAddress": JANE_EMAIL.upper()}, 409),
        ({"firstName": "Janet", "lastName": "Other", "phoneNumber": "+12025552726"}, 200),
        ({"firstName": "Jane", "lastName": "Different"}, 200),
    ],
    ids=["name-case-insensitive", "email", "phone-is-not-compared", "first-name-only"],
)
def test_duplicate_rules(sim: SimulatedEspoCrm, api: httpx.Client, payload: dict[str, str], status: int) -> None:
    seed_jane(sim)
    response = api.post("/Lead", json=payload)
    assert response.status_code == status
    if status == 409:
        assert response.headers["X-Status-Reason"] == "duplicate"
        assert [row["id"] for row in response.json()] == [JANE_ID]
    skipped = api.post("/Lead", json=payload, headers={"X-Skip-Duplicate-Check": "TRUE"})
    assert skipped.status_code == 200


# --- notes and the stream --------------------------------------------------------------------------


def test_note_and_stream_replay_17_18(bare: SimulatedEspoCrm, client: httpx.Client) -> None:
    seed_jane(bare)
    assert replay(bare, client, "04_update_lead").status_code == 200  # the recorded Status note
    note = assert_like_recording(replay(bare, client, "17_create_note_post"), "17_create_note_post")
    assert note["parentName"] == "Jane Doe012726"
    stream = assert_like_recording(replay(bare, client, "18_read_lead_stream"), "18_read_lead_stream", same_keys=False)
    expected = fixture("18_read_lead_stream")["response"]["body"]
    assert key_set(stream) == key_set(expected)
    assert stream["total"] == expected["total"] == 3
    assert [key_set(row) for row in stream["list"]] == [key_set(row) for row in expected["list"]]
    assert [row["data"] for row in stream["list"][1:]] == [row["data"] for row in expected["list"][1:]]
    assert bare.timeline(JANE_ID) == ["Call summary: interested in plan B."]


def test_note_rules(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    seed_jane(sim)
    unknown = api.post("/Note", json={"type": "Post", "parentType": "Lead", "parentId": "nope", "post": "x"})
    assert (unknown.status_code, unknown.headers["X-Status-Reason"]) == (403, "No create access.")
    not_post = api.post("/Note", json={"type": "Status", "parentType": "Lead", "parentId": JANE_ID})
    assert (not_post.status_code, not_post.headers["X-Status-Reason"]) == (403, "Only 'Post' type allowed.")
    activity = api.post("/Activity", json={"parentType": "Lead", "parentId": JANE_ID})
    assert (activity.status_code, activity.headers["X-Status-Reason"]) == (404, "Controller 'Activity' does not exist.")
    assert sim.timeline(JANE_ID) == []


# --- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["19_wrong_api_key", "20_no_auth"])
def test_unauthenticated_replays(bare: SimulatedEspoCrm, client: httpx.Client, name: str) -> None:
    response = replay(bare, client, name)
    assert_like_recording(response, name)
    assert response.headers.get("WWW-Authenticate") == recorded_header(name, "WWW-Authenticate")


def test_hmac_authentication(client: httpx.Client) -> None:
    key, secret = "hmac-user-key", "hmac-secret"
    with SimulatedEspoCrm(api_key=key, hmac_secret=secret) as sim:
        url = f"{sim.base_url}/api/v1/Lead"
        good = {"X-Hmac-Authorization": signed("GET", "Lead", key, secret)}
        assert client.get(url, params={"maxSize": "1"}, headers=good).status_code == 200
        legacy = {"X-Hmac-Authorization": signed("GET", "Lead", key, secret, legacy=True)}
        assert client.get(url, headers=legacy).status_code == 200
        created = client.post(
            url, json={"lastName": "Signed"}, headers={"X-Hmac-Authorization": signed("POST", "Lead", key, secret)}
        )
        assert created.status_code == 200
        lead_id = created.json()["id"]
        read = {"X-Hmac-Authorization": signed("GET", f"Lead/{lead_id}", key, secret)}
        assert client.get(f"{url}/{lead_id}", headers=read).status_code == 200
        refused = [
            {"X-Hmac-Authorization": signed("GET", "Lead", key, "wrong-secret")},
            {"X-Hmac-Authorization": signed("GET", "Lead?maxSize=1", key, secret)},  # signs the query too
            {"X-Hmac-Authorization": signed("POST", "Lead", key, secret)},  # another method
            {"X-Hmac-Authorization": signed("GET", "Lead", "other-key", secret)},
            {"X-Hmac-Authorization": "not base64 at all!"},
            {"X-Api-Key": key},  # an HMAC API user cannot log in with the bare key
        ]
        for headers in refused:
            response = client.get(url, params={"maxSize": "1"}, headers=headers)
            assert (response.status_code, response.content) == (401, b""), headers


def test_hmac_header_is_refused_when_the_user_uses_api_keys(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    headers = {"X-Hmac-Authorization": signed("GET", "Lead", sim.api_key, "any")}
    assert client.get(f"{sim.base_url}/api/v1/Lead", headers=headers).status_code == 401


# --- injected failures -----------------------------------------------------------------------------


MAINTENANCE_BODY = b'{"message":"Application is in maintenance mode."}'


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Failure.SERVER_ERROR, (500, None, b"")),
        (Failure.MAINTENANCE, (503, "Application is in maintenance mode.", MAINTENANCE_BODY)),
        (Failure.UNAUTHORIZED, (401, None, b"")),
        (Failure.FORBIDDEN, (403, "No read access.", b"")),
        (Failure.RATE_LIMITED, (500, None, b"")),
        (Failure.TIME_LIMITED, (500, None, b"")),
    ],
)
def test_fail_next_answers(
    sim: SimulatedEspoCrm, api: httpx.Client, failure: Failure, expected: tuple[int, str | None, bytes]
) -> None:
    sim.fail_next(failure)
    response = api.get("/Lead")
    assert (response.status_code, response.headers.get("X-Status-Reason"), response.content) == expected
    assert api.get("/Lead").status_code == 200


@pytest.mark.parametrize(
    ("failure", "error"),
    [(Failure.TIMEOUT, httpx.ReadTimeout), (Failure.CONNECTION_REFUSED, httpx.ConnectError)],
)
def test_fail_next_raises_transport_errors(
    sim: SimulatedEspoCrm, api: httpx.Client, failure: Failure, error: type[Exception]
) -> None:
    sim.fail_next(failure, times=2)
    for _ in range(2):
        with pytest.raises(error):
            api.post("/Lead", json={"lastName": "Lost"})
    assert api.post("/Lead", json={"lastName": "Kept"}).status_code == 200
    assert [lead["lastName"] for lead in sim.leads()] == ["Kept"]


# --- routing ---------------------------------------------------------------------------------------


def test_other_hosts_are_not_mocked(sim: SimulatedEspoCrm, client: httpx.Client) -> None:
    with pytest.raises(respx.models.AllMockedAssertionError):
        client.get("https://crm.example.org/api/v1/Lead")


def test_unhandled_paths_are_404(sim: SimulatedEspoCrm, api: httpx.Client, client: httpx.Client) -> None:
    assert api.get("/Lead/abc/meetings").status_code == 404
    assert client.get(f"{sim.base_url}/index.php").status_code == 404
    assert sim.router["lead.search"].call_count == 0


# --- phones and e-mails ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("+12025552727", "+12025552727"),
        ("+1 (202) 555-2727", "+12025552727"),
        (" +44 20 7123 4567 ", "+442071234567"),
        ("202-555-2727", None),
        ("12025552727", None),
        ("+1 202", None),
        ("+1 202 555 2727 ext", None),
    ],
)
def test_phone_format(sim: SimulatedEspoCrm, api: httpx.Client, sent: str, stored: str | None) -> None:
    response = api.post("/Lead", json={"lastName": "Phone", "phoneNumber": sent})
    if stored is None:
        assert response.status_code == 400
        assert response.json()["messageTranslation"]["data"] == {"field": "phoneNumber", "type": "valid"}
    else:
        assert response.status_code == 200
        assert sim.lead_phones(response.json()["id"]) == [stored]


def test_update_replaces_the_primary_phone_and_data_adds_numbers(sim: SimulatedEspoCrm, api: httpx.Client) -> None:
    seed_jane(sim)
    data = [
        {"phoneNumber": "+12025552726", "primary": True},
        {"phoneNumber": "+1 415 555 2726", "primary": False},
    ]
    assert api.put(f"/Lead/{JANE_ID}", json={"phoneNumberData": data}).status_code == 200
    assert sim.lead_phones(JANE_ID) == ["+12025552726", "+14155552726"]
    body = api.put(f"/Lead/{JANE_ID}", json={"phoneNumber": "+12025550199"}).json()
    assert body["phoneNumber"] == "+12025550199"
    assert sim.lead_phones(JANE_ID) == ["+12025550199", "+14155552726"]
    api.put(f"/Lead/{JANE_ID}", json={"emailAddress": "jane@new.example.com"})
    assert sim.lead_emails(JANE_ID) == ["jane@new.example.com"]


# --- the backdoor ----------------------------------------------------------------------------------


def test_backdoor(sim: SimulatedEspoCrm) -> None:
    first = sim.seed_lead(first_name="A", email="a@example.com")
    second = sim.seed_lead(first_name="B", attributes={"cConsent": True})
    assert [lead["id"] for lead in sim.leads()] == [first, second]
    assert sim.lead(second)["cConsent"] is True
    assert sim.lead_emails(first) == ["a@example.com"]
    assert sim.lead_phones(first) == []
    assert sim.timeline(first) == []
    with pytest.raises(KeyError):
        sim.lead("missing")
    with pytest.raises(ValueError, match="referralCode"):
        sim.seed_lead(attributes={"referralCode": "x"})
