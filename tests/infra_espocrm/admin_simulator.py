"""EspoCRM's admin API as far as provisioning uses it, answering like the server does.

Field-manager answers are built from the recorded exchanges 31 (create), 32 (create again: 409),
33 (a non-admin: 403) and 34 (read back); a wrong password answers like 19 (401, empty body).
What was not recorded follows the EspoCRM source: reading a missing field is a 500 with the reason
"Can't read field defs Lead.cX." (``Tools/FieldManager/FieldManager::read`` throws ``Error``); a
repeated user name is a 409 ``userNameExists`` (``RecordHooks/User/BeforeCreate``); an API user's
key (and, for Hmac, secret) is generated on create and on ``UserSecurity/apiKey/generate`` and
shown to admins (``Classes/Record/User/OutputFilter``); searches take ``searchParams`` JSON.

For a whole-CRM move (recorded in 48, 52-55, 60, 61): fields of any entity; an update without
``type`` is a 500 with an empty body ("No type." in the server's log, 52); ``probabilityMap`` (54)
and ``notActualOptions`` (60, 61) are kept only when ``fieldManagerAdditionalParamList`` names them;
``EntityManager/action/createLink`` makes a ``c``-prefixed link field and answers ``true`` (55);
``Settings`` holds ``currencyList`` (48).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import respx

from tests.simulators.espocrm import fixture

SITE = "https://crm.example.test"
API = f"{SITE}/api/v1"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct-horse-battery-staple"
_DROPPED = frozenset({"host", "connection", "date"})
_ENUM_PARAMS = frozenset({"type", "options", "default", "style", "label", "audited", "maxLength", "isSorted"})
"""What an enum's update keeps whatever the parameter list (``fields/enum.json`` params)."""
_STOCK_STATUSES = ["New", "Assigned", "In Process", "Converted", "Recycled", "Dead"]
_STOCK_STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
NATIVE_LEAD_STATUS: dict[str, Any] = {
    **fixture("56_api_metadata_moved_entities")["response"]["body"]["entityDefs"]["Lead"]["fields"]["status"],
    "options": _STOCK_STATUSES,
    "label": "Status",
}
"""Lead.status as a fresh install has it (the recording's metadata, before the plan's options)."""
_RECORDED_STAGE = fixture("53_admin_read_opportunity_stage")["response"]["body"]
NATIVE_OPPORTUNITY_STAGE: dict[str, Any] = {
    **_RECORDED_STAGE,
    "options": _STOCK_STAGES,
    "probabilityMap": {stage: _RECORDED_STAGE["probabilityMap"][stage] for stage in _STOCK_STAGES},
}


def stock_fields() -> dict[str, dict[str, dict[str, Any]]]:
    """Every moved entity's fields as a fresh 8.4.2 has them: the recorded metadata (56) without the
    custom fields and options the recording's provisioning had added."""
    recorded = fixture("56_api_metadata_moved_entities")["response"]["body"]["entityDefs"]
    fields = {
        entity: {name: dict(field) for name, field in defs["fields"].items() if not field.get("isCustom")}
        for entity, defs in recorded.items()
    }
    fields["Lead"]["status"] = copy.deepcopy(NATIVE_LEAD_STATUS)
    fields["Opportunity"]["stage"] = copy.deepcopy(NATIVE_OPPORTUNITY_STAGE)
    return copy.deepcopy(fields)


def _recorded_headers(name: str) -> list[tuple[str, str]]:
    return [(key, value) for key, value in fixture(name)["response"]["headers"] if key.lower() not in _DROPPED]


@dataclass(frozen=True)
class Call:
    """One request provisioning made: what the tests assert on."""

    method: str
    path: str  # below /api/v1, e.g. "Admin/fieldManager/Lead"
    body: Any = None  # the JSON sent, or for a search the decoded searchParams


class EspoAdminSimulator:
    """Stateful: fields, roles and users persist across requests, so a second run sees the first."""

    def __init__(
        self, *, admin_password: str = ADMIN_PASSWORD, admin_is_admin: bool = True, stock: bool = False
    ) -> None:
        """``stock``: every field of a fresh install (:func:`stock_fields`); else only the enums
        provisioning adds options to."""
        self.entity_fields: dict[str, dict[str, dict[str, Any]]] = (
            stock_fields()
            if stock
            else {
                "Lead": {"status": copy.deepcopy(NATIVE_LEAD_STATUS)},
                "Opportunity": {"stage": copy.deepcopy(NATIVE_OPPORTUNITY_STAGE)},
            }
        )
        self.fields = self.entity_fields["Lead"]
        """Lead's fields (what the mapping's provisioning creates)."""
        self.settings: dict[str, Any] = {"currencyList": ["USD"], "defaultCurrency": "USD"}
        self.roles: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.race_fields: set[str] = set()  # GET says missing, POST says 409 (created meanwhile)
        self._expected_auth = "Basic " + base64.b64encode(f"{ADMIN_USER}:{admin_password}".encode()).decode()
        self._admin_is_admin = admin_is_admin
        self._ids = (f"6b1{n:014x}" for n in itertools.count(1))
        self.router = respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True)
        self.router.route().mock(side_effect=self._handle)

    def __enter__(self) -> EspoAdminSimulator:
        self.router.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.router.__exit__(kind, error, trace)

    # --- seeding -------------------------------------------------------------------------------

    def seed_field(self, attribute: str, definition: dict[str, Any], entity: str = "Lead") -> None:
        self.entity_fields.setdefault(entity, {})[attribute] = {**definition, "isCustom": True}

    def seed_role(self, **record: Any) -> str:
        role_id = next(self._ids)
        self.roles[role_id] = {"id": role_id, **record}
        return role_id

    def seed_user(self, **record: Any) -> str:
        user_id = next(self._ids)
        self.users[user_id] = {"id": user_id, **record}
        if record.get("type") == "api":
            self._issue_key(self.users[user_id])
        return user_id

    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.method != "GET"]

    # --- HTTP ----------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1/")
        body: Any = json.loads(request.content) if request.content else None
        if request.method == "GET" and "searchParams" in request.url.params:
            body = json.loads(request.url.params["searchParams"])
        self.calls.append(Call(request.method, path, body))
        if request.headers.get("Authorization") != self._expected_auth:
            return httpx.Response(401, headers=_recorded_headers("19_wrong_api_key"), content=b"")
        if not self._admin_is_admin:
            return httpx.Response(403, headers=_recorded_headers("33_apikey_cannot_use_admin_api"), content=b"")
        return self._route(request.method, path, body)

    def _route(self, method: str, path: str, body: Any) -> httpx.Response:
        parts = path.split("/")
        if parts[:2] == ["Admin", "fieldManager"]:
            return self._field_manager(method, parts[2:], body)
        if path == "EntityManager/action/createLink" and method == "POST":
            return self._create_link(body)
        if path == "Settings":
            return self._settings(method, body)
        if parts[0] in ("Role", "User"):
            return self._records(method, parts, body)
        if path == "UserSecurity/apiKey/generate" and method == "POST":
            user = self.users[body["id"]]
            self._issue_key(user)
            return self._ok(user)
        return self._error(404, f"Controller '{parts[0]}' does not exist.")

    def _field_manager(self, method: str, parts: list[str], body: Any) -> httpx.Response:
        scope, name = parts[0], (parts[1] if len(parts) > 1 else None)
        fields = self.entity_fields.setdefault(scope, {})
        if method == "GET" and name is not None:
            if name in fields and name not in self.race_fields:
                return self._ok(self._field_answer(fields, name))
            return self._error(500, f"Can't read field defs {scope}.{name}.")
        if method == "POST":
            attribute = "c" + body["name"][0].upper() + body["name"][1:]
            if attribute in fields or attribute in self.race_fields:
                recorded = fixture("32_admin_create_field_again")["response"]
                answer = json.loads(json.dumps(recorded["body"]).replace("cReferralCode", attribute))
                headers = [
                    (k, v.replace("cReferralCode", attribute))
                    for k, v in _recorded_headers("32_admin_create_field_again")
                ]
                return httpx.Response(409, headers=headers, json=answer)
            definition = {key: value for key, value in body.items() if key not in ("name", "label")}
            fields[attribute] = {**definition, "isCustom": True, "label": body.get("label")}
            return self._ok(self._field_answer(fields, attribute))
        if method == "PUT" and name in fields:
            return self._update_field(fields, name, body)
        return self._error(400, "")

    def _update_field(self, fields: dict[str, dict[str, Any]], name: str, body: dict[str, Any]) -> httpx.Response:
        if "type" not in body:
            return self._error(500, None)  # fixture 52: FieldManager::prepareFieldDefs "No type."
        additional = {item["name"] for item in body.get("fieldManagerAdditionalParamList") or []}
        fields[name].update({key: value for key, value in body.items() if key in _ENUM_PARAMS or key in additional})
        return self._ok(self._field_answer(fields, name))

    def _settings(self, method: str, body: Any) -> httpx.Response:
        if method == "PUT":
            self.settings.update(body)
        return self._ok(self.settings)

    def _create_link(self, body: dict[str, Any]) -> httpx.Response:
        """Both ends' link fields, ``c``-prefixed as fields are (49); the answer is ``true``."""
        for entity, link, label in (
            (body["entity"], body["link"], body["label"]),
            (body["entityForeign"], body["linkForeign"], body["labelForeign"]),
        ):
            attribute = "c" + link[0].upper() + link[1:]
            fields = self.entity_fields.setdefault(entity, {})
            if attribute in fields:
                return self._error(409, f"Link {link} already exists.")
            fields[attribute] = {"type": "link" if entity == body["entity"] else "linkMultiple", "label": label}
        return httpx.Response(200, headers=_recorded_headers("31_admin_create_field_referralCode"), json=True)

    @staticmethod
    def _field_answer(fields: dict[str, dict[str, Any]], attribute: str) -> dict[str, Any]:
        """As 31/34: the definition, ``isCustom`` (a custom field's) and the label last."""
        stored = fields[attribute]
        answer = {key: value for key, value in stored.items() if key not in ("isCustom", "label")}
        custom = {"isCustom": True} if stored.get("isCustom") else {}
        return {**answer, **custom, "label": stored.get("label")}

    def _records(self, method: str, parts: list[str], body: Any) -> httpx.Response:
        entity, record_id = parts[0], (parts[1] if len(parts) > 1 else None)
        store = self.roles if entity == "Role" else self.users
        if record_id is None:
            return self._search(store, body) if method == "GET" else self._create(entity, store, body)
        if record_id not in store:
            return self._error(404, f"Record {record_id} does not exist.")
        if method == "PUT":
            store[record_id].update(body)
        return self._ok(store[record_id])

    def _search(self, store: dict[str, dict[str, Any]], params: dict[str, Any]) -> httpx.Response:
        matches = [record for record in store.values() if _matches(record, params["where"])]
        selected = [{key: record.get(key) for key in params.get("select", ["id"])} for record in matches]
        return self._ok({"total": len(matches), "list": selected[: params.get("maxSize", 20)]})

    def _create(self, entity: str, store: dict[str, dict[str, Any]], body: dict[str, Any]) -> httpx.Response:
        if entity == "User" and any(user["userName"] == body["userName"] for user in store.values()):
            return self._error(409, "userNameExists")
        new_id = next(self._ids)
        store[new_id] = {"id": new_id, **body}
        if entity == "User" and body.get("type") == "api":
            self._issue_key(store[new_id])
        return self._ok(store[new_id])

    def _issue_key(self, user: dict[str, Any]) -> None:
        user["apiKey"] = secrets.token_hex(16)
        user["secretKey"] = secrets.token_hex(16) if user.get("authMethod") == "Hmac" else None

    def _ok(self, body: Any) -> httpx.Response:
        return httpx.Response(200, headers=_recorded_headers("31_admin_create_field_referralCode"), json=body)

    def _error(self, status: int, reason: str | None) -> httpx.Response:
        headers = [(k, v) for k, v in _recorded_headers("33_apikey_cannot_use_admin_api") if k != "X-Status-Reason"]
        reasons = [("X-Status-Reason", reason)] if reason is not None else []
        return httpx.Response(status, headers=[*headers, *reasons], content=b"")


def _matches(record: dict[str, Any], where: list[dict[str, Any]]) -> bool:
    return all(clause["type"] == "equals" and record.get(clause["attribute"]) == clause["value"] for clause in where)
