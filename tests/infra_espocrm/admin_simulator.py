"""EspoCRM's admin API as far as provisioning uses it, answering like the server does.

Field-manager answers are built from the recorded exchanges 31 (create), 32 (create again: 409),
33 (a non-admin: 403) and 34 (read back); a wrong password answers like 19 (401, empty body).
What was not recorded follows the EspoCRM source: reading a missing field is a 500 with the reason
"Can't read field defs Lead.cX." (``Tools/FieldManager/FieldManager::read`` throws ``Error``); a
repeated user name is a 409 ``userNameExists`` (``RecordHooks/User/BeforeCreate``); an API user's
key (and, for Hmac, secret) is generated on create and on ``UserSecurity/apiKey/generate`` and
shown to admins (``Classes/Record/User/OutputFilter``); searches take ``searchParams`` JSON.
"""

from __future__ import annotations

import base64
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

    def __init__(self, *, admin_password: str = ADMIN_PASSWORD, admin_is_admin: bool = True) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
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

    def seed_field(self, attribute: str, definition: dict[str, Any]) -> None:
        self.fields[attribute] = {**definition, "isCustom": True}

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
        parts = path.split("/")
        if parts[:2] == ["Admin", "fieldManager"]:
            return self._field_manager(request.method, parts[2:], body)
        if parts[0] in ("Role", "User"):
            return self._records(request.method, parts, body)
        if path == "UserSecurity/apiKey/generate" and request.method == "POST":
            user = self.users[body["id"]]
            self._issue_key(user)
            return self._ok(user)
        return self._error(404, f"Controller '{parts[0]}' does not exist.")

    def _field_manager(self, method: str, parts: list[str], body: Any) -> httpx.Response:
        scope, name = parts[0], (parts[1] if len(parts) > 1 else None)
        if method == "GET" and name is not None:
            if name in self.fields and name not in self.race_fields:
                return self._ok(self._field_answer(name))
            return self._error(500, f"Can't read field defs {scope}.{name}.")
        if method == "POST":
            attribute = "c" + body["name"][0].upper() + body["name"][1:]
            if attribute in self.fields or attribute in self.race_fields:
                recorded = fixture("32_admin_create_field_again")["response"]
                answer = json.loads(json.dumps(recorded["body"]).replace("cReferralCode", attribute))
                headers = [
                    (k, v.replace("cReferralCode", attribute))
                    for k, v in _recorded_headers("32_admin_create_field_again")
                ]
                return httpx.Response(409, headers=headers, json=answer)
            definition = {key: value for key, value in body.items() if key not in ("name", "label")}
            self.fields[attribute] = {**definition, "isCustom": True, "label": body.get("label")}
            return self._ok(self._field_answer(attribute))
        if method == "PUT" and name in self.fields:
            self.fields[name].update(body)
            return self._ok(self._field_answer(name))
        return self._error(400, "")

    def _field_answer(self, attribute: str) -> dict[str, Any]:
        """As 31/34: the definition, ``isCustom`` and the label last."""
        stored = self.fields[attribute]
        answer = {key: value for key, value in stored.items() if key not in ("isCustom", "label")}
        return {**answer, "isCustom": True, "label": stored.get("label")}

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

    def _error(self, status: int, reason: str) -> httpx.Response:
        headers = [(k, v) for k, v in _recorded_headers("33_apikey_cannot_use_admin_api") if k != "X-Status-Reason"]
        return httpx.Response(status, headers=[*headers, ("X-Status-Reason", reason)], content=b"")


def _matches(record: dict[str, Any], where: list[dict[str, Any]]) -> bool:
    return all(clause["type"] == "equals" and record.get(clause["attribute"]) == clause["value"] for clause in where)
