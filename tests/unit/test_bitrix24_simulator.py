"""Self-test of the simulated Bitrix24 webhook: its envelopes must be the documented ones.

Driven with plain httpx, so what is checked here is exactly what a client would see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.simulators.base import Failure, SimulatedCrm
from tests.simulators.bitrix24 import CRM_MODE_CLASSIC, CRM_MODE_SIMPLE, DEFAULT_USER_FIELDS, SimulatedBitrix24

TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}


@pytest.fixture
def sim() -> Iterator[SimulatedBitrix24]:
    with SimulatedBitrix24() as simulator:
        yield simulator


@pytest.fixture
def client(sim: SimulatedBitrix24) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.webhook_url) as http:
        yield http


def call(client: httpx.Client, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(f"{method}.json", json=body if body is not None else {})


def result(client: httpx.Client, method: str, body: dict[str, Any] | None = None) -> Any:
    response = call(client, method, body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload["time"]) == TIME_KEYS
    return payload["result"]


def error(response: httpx.Response) -> tuple[int, Any, str]:
    payload = response.json()
    assert set(payload) == {"error", "error_description"}
    return response.status_code, payload["error"], payload["error_description"]


def add_lead(client: httpx.Client, **fields: Any) -> int:
    lead_id = result(client, "crm.lead.add", {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}})
    assert isinstance(lead_id, int)
    return lead_id


def test_satisfies_the_simulated_crm_protocol() -> None:
    simulator: SimulatedCrm = SimulatedBitrix24()
    assert simulator.provider_name == "bitrix24"
    other = SimulatedBitrix24(portal="https://x.test", user_id=7, token="t")
    assert other.webhook_url == "https://x.test/rest/7/t/"


# --- crm.duplicate.findbycomm --------------------------------------------------------------------


def test_findbycomm_answers_an_empty_list_when_nothing_matches(client: httpx.Client) -> None:
    found = result(client, "crm.duplicate.findbycomm", {"entity_type": "LEAD", "type": "PHONE", "values": ["+1"]})
    assert found == []


def test_findbycomm_answers_lead_ids_as_ints(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    first = sim.seed_lead(phone="+905321112233", email="Ada@Example.com")
    second = sim.seed_lead(phone="+905321112233")
    sim.seed_lead(phone="+905320000000")

    by_phone = {"entity_type": "LEAD", "type": "PHONE", "values": ["+905321112233"]}
    assert result(client, "crm.duplicate.findbycomm", by_phone) == {"LEAD": [int(first), int(second)]}
    by_email = {"entity_type": "LEAD", "type": "EMAIL", "values": [" ada@example.COM"]}
    assert result(client, "crm.duplicate.findbycomm", by_email) == {"LEAD": [int(first)]}
    # Both sides are normalised (digits only, a leading 00, 011 or 0 dropped, a leading 8 made 7):
    # spacing does not matter, but the national form and the international one are different numbers.
    other_format = {"type": "PHONE", "values": ["+90 532 111 22 33"]}
    assert result(client, "crm.duplicate.findbycomm", other_format) == {"LEAD": [int(first), int(second)]}
    national = {"type": "PHONE", "values": ["0532 111 22 33"]}
    assert result(client, "crm.duplicate.findbycomm", national) == []
    # Contacts/companies only: leads are not searched.
    assert result(client, "crm.duplicate.findbycomm", {**by_phone, "entity_type": "CONTACT"}) == []


@pytest.mark.parametrize(
    ("stored", "found_by", "not_found_by"),
    [
        ("0532 123 45 67", ["5321234567", "05321234567", "0 (532) 123-45-67"], ["+905321234567", "905321234567"]),
        ("+90 532 123 45 67", ["905321234567", "+905321234567", "00905321234567"], ["5321234567"]),
        ("8 (916) 123-45-67", ["+79161234567", "79161234567", "89161234567"], ["9161234567"]),
        ("+86 138 1234 5678", ["+8613812345678", "008613812345678"], ["8613812345678"]),
        ("011 44 20 7946 0958", ["+44 20 7946 0958", "442079460958"], ["02079460958"]),
    ],
)
def test_findbycomm_normalises_phones_as_bitrix_does(
    sim: SimulatedBitrix24, client: httpx.Client, stored: str, found_by: list[str], not_found_by: list[str]
) -> None:
    """``DuplicateCommunicationCriterion::normalizePhone`` (main/tools.php ``NormalizePhone``)."""
    lead_id = int(sim.seed_lead(phone=stored))
    for value in found_by:
        assert result(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": [value]}) == {"LEAD": [lead_id]}
    for value in not_found_by:
        assert result(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": [value]}) == [], value


def test_the_crm_mode_is_classic_unless_a_test_sets_it(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    assert result(client, "crm.settings.mode.get", {}) == CRM_MODE_CLASSIC
    sim.crm_mode = CRM_MODE_SIMPLE
    assert result(client, "crm.settings.mode.get", {}) == CRM_MODE_SIMPLE


def test_findbycomm_searches_only_the_first_twenty_values(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(phone="+15550000020")
    values = [f"+155500000{index:02d}" for index in range(21)]  # the match is the 21st value
    assert result(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": values}) == []
    assert result(client, "crm.duplicate.findbycomm", {"type": "PHONE", "values": values[1:]}) == {
        "LEAD": [int(lead_id)]
    }


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"values": ["+1"]}, "Communication type is not defined."),
        ({"type": "FAX", "values": ["+1"]}, "Communication type 'FAX' is not supported in current context."),
        ({"type": "PHONE"}, "Communication values is not defined."),
        ({"type": "PHONE", "values": "+1"}, "Communication values is not defined."),
        ({"type": "PHONE", "values": []}, "Communication values is not defined."),
        ({"type": "PHONE", "values": ["+1"], "entity_type": "DEAL"}, "Deal is not supported in current context."),
    ],
)
def test_findbycomm_errors(client: httpx.Client, body: dict[str, Any], description: str) -> None:
    assert error(call(client, "crm.duplicate.findbycomm", body)) == (400, "", description)


# --- crm.lead.add / get --------------------------------------------------------------------------


def test_add_then_get(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = add_lead(
        client,
        TITLE="Website application",
        NAME="Ada",
        LAST_NAME="Lovelace",
        ASSIGNED_BY_ID=1,
        PHONE=[{"VALUE": "+905321112233", "VALUE_TYPE": "MOBILE"}],
        EMAIL=[{"VALUE": "ada@example.com", "VALUE_TYPE": "WORK"}],
        UF_CRM_REFERRAL_CODE="REF1",
        UF_CRM_CONSENT="Y",
        NOT_A_FIELD="ignored",
        DATE_CREATE="2000-01-01T00:00:00+00:00",  # read-only: ignored too
    )
    assert lead_id == 101

    record = result(client, "crm.lead.get", {"id": lead_id})
    assert record["ID"] == "101"
    assert record["TITLE"] == "Website application"
    assert record["ASSIGNED_BY_ID"] == "1"
    assert record["HAS_PHONE"] == "Y"
    assert record["HAS_EMAIL"] == "Y"
    assert record["STATUS_ID"] == "NEW"
    assert record["PHONE"] == [{"ID": "1001", "VALUE_TYPE": "MOBILE", "VALUE": "+905321112233", "TYPE_ID": "PHONE"}]
    assert record["EMAIL"] == [{"ID": "1002", "VALUE_TYPE": "WORK", "VALUE": "ada@example.com", "TYPE_ID": "EMAIL"}]
    assert record["UF_CRM_REFERRAL_CODE"] == "REF1"
    assert record["UF_CRM_CONSENT"] == "Y"
    assert record["UF_CRM_PROGRAM"] is None  # unset user field
    assert record["ORIGIN_ID"] is None
    assert "NOT_A_FIELD" not in record
    assert record["DATE_CREATE"] != "2000-01-01T00:00:00+00:00"
    assert "WEB" not in record  # empty multifields are left out
    assert sim.leads() == [record]
    assert sim.lead("101") == record
    assert sim.lead_phones("101") == ["+905321112233"]
    assert sim.lead_emails("101") == ["ada@example.com"]


def test_add_without_title_and_get_by_uppercase_id(client: httpx.Client) -> None:
    lead_id = add_lead(client, NAME="Ada", UF_CRM_CONSENT=False)
    record = result(client, "crm.lead.get", {"ID": str(lead_id)})
    assert record["TITLE"] == f"Lead #{lead_id}"
    assert record["UF_CRM_CONSENT"] == "N"
    assert record["HAS_PHONE"] == "N"
    assert "PHONE" not in record


def test_add_rejects_an_invalid_email_and_stores_nothing(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    response = call(client, "crm.lead.add", {"fields": {"NAME": "Ada", "EMAIL": [{"VALUE": "not-an-email"}]}})
    assert error(response) == (400, "ERROR_CORE", "The E-mail field contains an invalid address")
    assert sim.leads() == []


def test_reject_attribute(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(first_name="Ada")
    sim.reject_attribute("UF_CRM_PROGRAM")
    for method, body in (
        ("crm.lead.add", {"fields": {"NAME": "Bob", "UF_CRM_PROGRAM": "MBA"}}),
        ("crm.lead.update", {"id": lead_id, "fields": {"UF_CRM_PROGRAM": "MBA"}}),
    ):
        assert error(call(client, method, body)) == (400, "ERROR_CORE", "Field 'UF_CRM_PROGRAM' has an invalid value")
    assert [lead["UF_CRM_PROGRAM"] for lead in sim.leads()] == [None]
    assert result(client, "crm.lead.update", {"id": lead_id, "fields": {"NAME": "Ada L."}}) is True


def test_get_errors(client: httpx.Client) -> None:
    assert error(call(client, "crm.lead.get", {"id": 999})) == (400, "", "Not found")
    assert error(call(client, "crm.lead.get", {"id": "abc"})) == (400, "", "ID is not defined or invalid.")
    assert error(call(client, "crm.lead.get", {})) == (400, "", "ID is not defined or invalid.")


# --- crm.lead.update -----------------------------------------------------------------------------


def test_update_changes_only_the_fields_sent(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(first_name="Ada", last_name="Lovelace", attributes={"UF_CRM_PROGRAM": "BSc"})
    assert result(client, "crm.lead.update", {"id": lead_id, "fields": {"NAME": "Augusta", "BOGUS": 1}}) is True
    record = sim.lead(lead_id)
    assert (record["NAME"], record["LAST_NAME"], record["UF_CRM_PROGRAM"]) == ("Augusta", "Lovelace", "BSc")
    assert "BOGUS" not in record


def test_update_appends_multifield_items_without_id(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(phone="+905321112233")
    fields = {"PHONE": [{"VALUE": "+905329998877", "VALUE_TYPE": "MOBILE"}]}
    assert result(client, "crm.lead.update", {"id": lead_id, "fields": fields}) is True
    assert sim.lead_phones(lead_id) == ["+905321112233", "+905329998877"]


def test_update_replaces_and_deletes_multifield_items_by_id(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(phone="+905321112233", email="old@example.com")
    phone_id = sim.lead(lead_id)["PHONE"][0]["ID"]
    email_id = sim.lead(lead_id)["EMAIL"][0]["ID"]
    fields = {
        "PHONE": [{"ID": phone_id, "VALUE": "+905320000000", "VALUE_TYPE": "MOBILE"}],
        "EMAIL": [{"ID": email_id, "DELETE": "Y"}, {"VALUE": "new@example.com", "VALUE_TYPE": "HOME"}],
    }
    assert result(client, "crm.lead.update", {"id": lead_id, "fields": fields}) is True
    record = sim.lead(lead_id)
    assert record["PHONE"] == [{"ID": phone_id, "VALUE_TYPE": "MOBILE", "VALUE": "+905320000000", "TYPE_ID": "PHONE"}]
    assert sim.lead_emails(lead_id) == ["new@example.com"]

    # An empty VALUE with an ID removes the item too; the lead then has no phone at all.
    assert result(client, "crm.lead.update", {"id": lead_id, "fields": {"PHONE": [{"ID": phone_id, "VALUE": ""}]}})
    assert sim.lead_phones(lead_id) == []
    assert "PHONE" not in sim.lead(lead_id)
    assert sim.lead(lead_id)["HAS_PHONE"] == "N"


def test_update_errors(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    assert error(call(client, "crm.lead.update", {"id": 999, "fields": {"NAME": "x"}})) == (400, "", "Not found")
    assert error(call(client, "crm.lead.update", {"fields": {"NAME": "x"}})) == (
        400,
        "",
        "ID is not defined or invalid.",
    )
    lead_id = sim.seed_lead(email="ada@example.com")
    bad_email = {"id": lead_id, "fields": {"EMAIL": [{"VALUE": "nope"}]}}
    assert error(call(client, "crm.lead.update", bad_email))[1] == "ERROR_CORE"
    assert sim.lead_emails(lead_id) == ["ada@example.com"]


# --- crm.lead.list -------------------------------------------------------------------------------


def test_list_filters_exactly_and_selects(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    wanted = sim.seed_lead(
        first_name="Ada", phone="+905321112233", attributes={"ORIGIN_ID": "op-1", "UF_CRM_VISITOR_SESSION_ID": "s-1"}
    )
    sim.seed_lead(first_name="Bob", attributes={"ORIGIN_ID": "op-10", "UF_CRM_VISITOR_SESSION_ID": "s-10"})

    rows = result(client, "crm.lead.list", {"filter": {"ORIGIN_ID": "op-1"}, "select": ["ID"], "order": {"ID": "ASC"}})
    assert rows == [{"ID": wanted}]
    rows = result(client, "crm.lead.list", {"filter": {"=UF_CRM_VISITOR_SESSION_ID": "s-1"}, "select": ["ID", "NAME"]})
    assert rows == [{"ID": wanted, "NAME": "Ada"}]
    rows = result(client, "crm.lead.list", {"filter": {"PHONE": "+905321112233"}, "select": ["PHONE"]})
    assert rows == [{"ID": wanted, "PHONE": sim.lead(wanted)["PHONE"]}]

    # No select is "*": native fields only, no user fields and no multifields.
    plain = result(client, "crm.lead.list", {"filter": {"ID": wanted}})[0]
    assert plain["NAME"] == "Ada"
    assert not any(name.startswith("UF_") for name in plain)
    assert "PHONE" not in plain
    with_uf = result(client, "crm.lead.list", {"filter": {"ID": wanted}, "select": ["*", "UF_*"]})[0]
    assert with_uf["UF_CRM_VISITOR_SESSION_ID"] == "s-1"

    newest_first = result(client, "crm.lead.list", {"select": ["ID"], "order": {"ID": "DESC"}})
    assert [row["ID"] for row in newest_first] == ["102", "101"]


def test_list_paginates_fifty_at_a_time(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    for index in range(120):
        sim.seed_lead(first_name=f"Lead {index}")
    first = client.post("crm.lead.list.json", json={"select": ["ID"]}).json()
    assert (len(first["result"]), first["next"], first["total"]) == (50, 50, 120)
    last = client.post("crm.lead.list.json", json={"select": ["ID"], "start": 100}).json()
    assert (len(last["result"]), last["total"]) == (20, 120)
    assert "next" not in last
    assert last["result"][0] == {"ID": "201"}


# --- crm.lead.fields and drop_attribute ----------------------------------------------------------


def test_fields_describes_native_and_user_fields(client: httpx.Client) -> None:
    fields = result(client, "crm.lead.fields")
    assert fields["TITLE"] == {
        "type": "string",
        "isRequired": False,
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": False,
        "isDynamic": False,
        "title": "Lead Title",
    }
    assert fields["PHONE"]["type"] == "crm_multifield"
    assert fields["PHONE"]["isMultiple"] is True
    assert fields["ID"]["isReadOnly"] is True
    assert set(DEFAULT_USER_FIELDS) <= fields.keys()
    referral = fields["UF_CRM_REFERRAL_CODE"]
    assert (referral["isDynamic"], referral["title"], referral["listLabel"]) == (
        True,
        "UF_CRM_REFERRAL_CODE",
        "Referral code",
    )
    assert fields["UF_CRM_CONSENT"]["type"] == "boolean"


def test_drop_attribute(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    sim.drop_attribute("UF_CRM_UNIVERSITY")
    assert "UF_CRM_UNIVERSITY" not in result(client, "crm.lead.fields")
    lead_id = add_lead(client, NAME="Ada", UF_CRM_UNIVERSITY="METU")  # silently ignored
    assert "UF_CRM_UNIVERSITY" not in result(client, "crm.lead.get", {"id": lead_id})
    # A filter on a field the portal lacks is ignored: it matches every lead.
    rows = result(client, "crm.lead.list", {"filter": {"UF_CRM_UNIVERSITY": "nowhere"}, "select": ["ID"]})
    assert rows == [{"ID": str(lead_id)}]
    sim.drop_attribute("UF_CRM_UNIVERSITY")  # already gone: nothing to do
    with pytest.raises(ValueError, match="native lead field"):
        sim.drop_attribute("UTM_SOURCE")


# --- crm.timeline.comment.add --------------------------------------------------------------------


def test_timeline_comment(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = sim.seed_lead(first_name="Ada")
    comment = {"fields": {"ENTITY_ID": int(lead_id), "ENTITY_TYPE": "lead", "COMMENT": "Clicked Telegram"}}
    assert result(client, "crm.timeline.comment.add", comment) == 1
    assert result(client, "crm.timeline.comment.add", {"fields": {**comment["fields"], "COMMENT": "Again"}}) == 2
    assert sim.timeline(lead_id) == ["Clicked Telegram", "Again"]


def test_timeline_comment_errors(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    lead_id = int(sim.seed_lead(first_name="Ada"))
    fields = {"ENTITY_ID": lead_id, "ENTITY_TYPE": "lead", "COMMENT": "x"}
    unknown = {"fields": {**fields, "ENTITY_ID": 999}}
    assert error(call(client, "crm.timeline.comment.add", unknown)) == (400, "OWNER_NOT_FOUND", "Owner was not found.")
    empty = {"fields": {**fields, "COMMENT": "  "}}
    assert error(call(client, "crm.timeline.comment.add", empty)) == (400, "INVALID_ARG_VALUE", "Empty comment.")
    uppercase = {"FIELDS": fields}  # only a lowercase `fields` key is accepted
    assert error(call(client, "crm.timeline.comment.add", uppercase)) == (
        400,
        100,
        "Could not find value for parameter {fields}",
    )
    assert sim.timeline(str(lead_id)) == []


# --- transport, authentication, routing ----------------------------------------------------------


def test_wrong_token_or_user_is_unauthorized(sim: SimulatedBitrix24) -> None:
    for url in (
        f"{sim.portal}/rest/1/wrong-token/crm.lead.fields.json",
        f"{sim.portal}/rest/2/{sim.token}/crm.lead.fields.json",
        f"{sim.portal}/rest/crm.lead.fields.json",
    ):
        response = httpx.post(url, json={})
        assert error(response) == (401, "NO_AUTH_FOUND", "Wrong authorization data")


def test_unknown_method_and_optional_json_suffix(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    assert error(call(client, "crm.lead.frobnicate")) == (404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    assert client.post("crm.lead.fields", json={}).status_code == 200


def test_get_with_a_json_body_loses_its_parameters(sim: SimulatedBitrix24) -> None:
    request = httpx.Request(
        "GET", sim.webhook_url + "crm.duplicate.findbycomm.json", json={"type": "PHONE", "values": ["+1"]}
    )
    with httpx.Client() as http:
        response = http.send(request)
    assert error(response) == (400, "", "Communication type is not defined.")


def test_method_calls_are_recorded_in_order(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    call(client, "crm.lead.fields")
    call(client, "crm.lead.get", {"id": 5})
    assert sim.method_calls == [("crm.lead.fields", {}), ("crm.lead.get", {"id": 5})]


def test_other_hosts_are_not_mocked(sim: SimulatedBitrix24) -> None:
    with pytest.raises(respx.models.AllMockedAssertionError):
        httpx.post("https://other.bitrix24.test/rest/1/x/crm.lead.fields.json", json={})


# --- injected failures ---------------------------------------------------------------------------

ANSWERED_FAILURES = [
    (Failure.SERVER_ERROR, (500, "INTERNAL_SERVER_ERROR", "Internal server error")),
    (Failure.MAINTENANCE, (503, "INTERNAL_SERVER_ERROR", "Internal server error")),
    (Failure.UNAUTHORIZED, (401, "NO_AUTH_FOUND", "Wrong authorization data")),
    (
        Failure.FORBIDDEN,
        (403, "insufficient_scope", "The request requires higher privileges than provided by the webhook token"),
    ),
    (Failure.RATE_LIMITED, (503, "QUERY_LIMIT_EXCEEDED", "Too many requests")),
    (Failure.TIME_LIMITED, (429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit")),
]


@pytest.mark.parametrize(("failure", "expected"), ANSWERED_FAILURES)
def test_injected_failure_answers(
    sim: SimulatedBitrix24, client: httpx.Client, failure: Failure, expected: tuple[int, str, str]
) -> None:
    sim.fail_next(failure, times=2)
    for _ in range(2):
        assert error(call(client, "crm.lead.add", {"fields": {"NAME": "Ada"}})) == expected
    assert sim.leads() == []  # the request never ran
    assert add_lead(client, NAME="Ada") == 101  # and the next one succeeds
    assert [method for method, _ in sim.method_calls] == ["crm.lead.add"] * 3


@pytest.mark.parametrize(
    ("failure", "exception"),
    [(Failure.TIMEOUT, httpx.ReadTimeout), (Failure.CONNECTION_REFUSED, httpx.ConnectError)],
)
def test_injected_transport_failures(
    sim: SimulatedBitrix24, client: httpx.Client, failure: Failure, exception: type[Exception]
) -> None:
    sim.fail_next(failure)
    with pytest.raises(exception):
        call(client, "crm.lead.add", {"fields": {"NAME": "Ada"}})
    assert sim.leads() == []
    assert add_lead(client, NAME="Ada") == 101


def test_failure_after_processing_leaves_the_write_done(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    sim.fail_next(Failure.TIMEOUT, after_processing=True)
    with pytest.raises(httpx.ReadTimeout):
        call(client, "crm.lead.add", {"fields": {"NAME": "Ada"}})
    sim.fail_next(Failure.SERVER_ERROR, after_processing=True)
    assert call(client, "crm.lead.add", {"fields": {"NAME": "Ada"}}).status_code == 500
    assert [lead["NAME"] for lead in sim.leads()] == ["Ada", "Ada"]  # the duplicate risk, made visible
    with pytest.raises(ValueError, match="never ran"):
        sim.fail_next(Failure.RATE_LIMITED, after_processing=True)


def test_fail_next_replaces_the_failures_still_pending(sim: SimulatedBitrix24, client: httpx.Client) -> None:
    sim.fail_next(Failure.RATE_LIMITED, times=3)
    assert call(client, "crm.lead.fields").status_code == 503
    sim.fail_next(Failure.TIME_LIMITED, times=2)  # "the next 2 requests", whatever was planned before
    assert [call(client, "crm.lead.fields").status_code for _ in range(3)] == [429, 429, 200]
