"""Make an EspoCRM ready for crm-bridge, idempotently: custom fields, the API role, the API user.

    ESPOCRM_ADMIN_PASSWORD=... python -m infra.espocrm.provision --url https://crm.example.com --env prod
    python -m infra.espocrm.provision --url https://crm.example.com --dry-run   # read only: the plan
    ESPOCRM_ADMIN_PASSWORD=... python -m infra.espocrm.provision --url https://crm.example.com --plan move.json

``--plan`` reads what a whole-CRM move's plan asks for (``crm_bridge.migrate.schema.Provisioning`` as
JSON, as ``python -m crm_bridge.migrate plan`` writes it): custom fields on any entity, options of
``Lead.status`` and ``Opportunity.stage`` (with their probabilities, and the closing statuses joining
``notActualOptions``), currencies; it adds the key field every moved record carries (``cSourceRecord``)
and gives the role what the move does besides leads (:data:`MIGRATION_PERMISSIONS`), which the live
flow never needs: a role provisioned without ``--plan`` keeps to leads.

Why a command rather than screenshots: the field mapping (``crm_bridge.field_mapping``, the single
source of truth) decides which ``c…`` attributes the provider writes, and EspoCRM silently drops
attributes it does not know (fixtures 38/39); the API user's role must allow exactly what the
provider does (research §10). Everything is read first and written only where it differs, so a
second run changes nothing. The admin password comes from ``ESPOCRM_ADMIN_PASSWORD`` or a prompt,
never from the command line (it would sit in the shell history and the process list).

EspoCRM facts relied on (shared/research/espocrm-api.md §7 and §10, fixtures 31-34, EspoCRM source):

* the field manager is admin-only (an API key gets 403, fixture 33); a field created as
  ``referralCode`` on Lead is the attribute ``cReferralCode`` (31, 34); creating it again is a 409
  (32); reading one that does not exist is a 500 "Can't read field defs Lead.cX." (FieldManager::read);
* a Role carries per-scope levels in ``data`` plus ``assignmentPermission``;
* a field manager update (PUT) without ``type`` is a 500 "No type." (fixture 52), and keeps a
  parameter such as ``probabilityMap`` or ``notActualOptions`` only when ``fieldManagerAdditionalParamList``
  names it (53, 54; 60, 61);
* a link to another entity is made by ``POST EntityManager/action/createLink`` (55): the field
  manager's ``link`` type alone makes a field without a relation;
* an amount in a currency missing from ``Settings.currencyList`` is a 400 ``validCurrency`` (48);
* an API user is ``type: api`` with ``authMethod`` ApiKey or Hmac; the server generates the key
  (and the HMAC secret) and shows it to admins in its answer; ``POST UserSecurity/apiKey/generate``
  issues a new one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from crm_bridge.errors import SettingsError
from crm_bridge.field_mapping import (
    ENUM_DOMAINS,
    ESPOCRM_NATIVE_ATTRIBUTES,
    EspoCrmMapping,
    MappedField,
    load_field_mapping,
)
from crm_bridge.migrate.espocrm_target import SOURCE_RECORD_LENGTH, source_record_fields
from crm_bridge.migrate.schema import CustomField, EnumOptions, Provisioning

ENTITY = "Lead"
DEFAULT_ROLE_NAME = "crm-bridge API"
DEFAULT_API_USER = "crm-bridge"
PASSWORD_VARIABLE = "ESPOCRM_ADMIN_PASSWORD"  # noqa: S105  # nosec B105  # the variable's name, not a password
TIMEOUT_SECONDS = 60.0  # creating a field rebuilds EspoCRM's schema and caches
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# What the provider does with leads (research §10): create, find (read all, or duplicates assigned
# to others stay invisible), fill in (edit all), post notes (stream all), and assign them to
# salespeople (assignment all, else 403 "Assignment failure"). It never deletes.
LEAD_PERMISSIONS: dict[str, str] = {"create": "yes", "read": "all", "edit": "all", "delete": "no", "stream": "all"}
ROLE_REQUIRED: dict[str, str] = {"assignmentPermission": "all"}
MIGRATED_SCOPES = ("Account", "Contact", "Opportunity", "Call", "Meeting", "Task", "Email")
MIGRATION_PERMISSIONS: dict[str, Any] = {
    **{scope: dict(LEAD_PERMISSIONS) for scope in MIGRATED_SCOPES},
    "User": {"read": "all"},
    "Import": True,
}
"""A move's role beyond leads: its entities written as leads are; users read (to pair owners by
e-mail); ``Import``, without which an Email archived from another address than the API user's own
is a 403 "Not allowed 'from' address." (``RecordHooks/Email/CheckFromAddress``, fixtures 46, 47)."""
MOVE_FIELD_TYPES = frozenset(
    {
        "varchar",
        "text",
        "enum",
        "multiEnum",
        "int",
        "float",
        "currency",
        "bool",
        "date",
        "datetime",
        "url",
        "urlMultiple",
        "array",
        "file",
        "attachmentMultiple",
        "link",
    }
)
"""What the plan asks for (``crm_bridge.migrate.plan``: a multiple url is a urlMultiple, any other
multiple value an array); each is a type of EspoCRM 8.4.2's ``metadata/fields``."""
# Set when the role is created; later hand edits of these are the admin's business.
ROLE_DEFAULTS: dict[str, str] = {
    "userPermission": "no",
    "portalPermission": "no",
    "exportPermission": "no",
    "massUpdatePermission": "no",
}

_VARCHAR_LENGTHS: dict[MappedField, int] = {
    MappedField.REFERRAL_CODE: 64,  # the recorded field (fixture 31); codes are 1-64 characters
    MappedField.PREFERRED_LANGUAGE: 16,  # ISO 639 code, optionally with a region: "pt-br"
    MappedField.VISITOR_SESSION_ID: 64,
    MappedField.GCLID: 512,
    MappedField.FBCLID: 512,
    MappedField.FIRST_REFERRAL_CODE: 64,
    MappedField.CONSENT_VERSION: 64,
    MappedField.FIRST_TOUCH_AT: 32,  # ISO 8601 text, as the website sent it
    MappedField.CONSENT_AT: 32,
    MappedField.SOURCE_RECORD: 64,  # "bitrix24:<id>" or "espocrm:<id>"
    MappedField.SOURCE_CREATED_AT: 32,
}
"""Others get 255: the rarer click ids and the pages too (a longer one is kept in the description
instead: EspoCRM's row of varchar columns has a size limit, MariaDB's 64 KiB)."""
_DEFAULT_VARCHAR_LENGTH = 255  # what the website may send for free-text values (MediumText)
_LABEL_WORDS = {
    "utm": "UTM",
    "id": "ID",
    "ctwa": "CTWA",
    **{name: name.upper() for name in ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid", "yclid", "clid")},
}
_MISSING_FIELD_REASON = "Can't read field defs"


class ProvisioningError(Exception):
    """Something the operator must fix; printed as one line, without a traceback."""


class AuthMethod(StrEnum):
    API_KEY = "ApiKey"
    HMAC = "Hmac"


class ActionKind(StrEnum):
    CREATE_FIELD = "create field"
    CREATE_LINK = "create link"
    UPDATE_FIELD = "update field"
    UPDATE_SETTINGS = "update settings"
    CREATE_ROLE = "create role"
    UPDATE_ROLE = "update role"
    CREATE_USER = "create user"
    UPDATE_USER = "update user"
    NEW_KEY = "new key"


NEW_ROLE_ID = "<id of the new role>"
"""Stands for the id of a role created earlier in the same run (unknown when planning)."""


@dataclass(frozen=True)
class FieldSpec:
    """One custom field (of Lead, for the mapping; of any entity, for a move) as the field manager
    creates it; a link as the entity manager does (``definition`` then holds its ``entity``)."""

    attribute: str
    definition: dict[str, Any]
    entity: str = ENTITY

    @property
    def type(self) -> str:
        return str(self.definition["type"])

    @property
    def options(self) -> list[str]:
        return list(self.definition.get("options", []))

    def describe(self) -> str:
        if self.type in ("enum", "multiEnum"):
            return f"{self.type}: {', '.join(option for option in self.options if option)}"
        if self.type == "link":
            return f"link to {self.definition['entity']}"
        if self.type == "varchar":
            return f"varchar({self.definition['maxLength']})"
        return self.type


@dataclass(frozen=True)
class Desired:
    """The state crm-bridge needs in EspoCRM."""

    fields: list[FieldSpec]
    enum_options: tuple[EnumOptions, ...] = ()
    currencies: tuple[str, ...] = ()
    migration: bool = False
    """The role gets :data:`MIGRATION_PERMISSIONS` too (``--plan``)."""
    role_name: str = DEFAULT_ROLE_NAME
    api_user: str = DEFAULT_API_USER
    auth_method: AuthMethod = AuthMethod.API_KEY
    new_key: bool = False


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    method: str
    path: str
    body: dict[str, Any]
    summary: str


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Credentials:
    api_user: str
    api_key: str
    secret_key: str | None


# --- what the mapping needs ------------------------------------------------------------------------


def field_label(domain_field: MappedField) -> str:
    """``referral_code`` -> ``Referral Code``, ``utm_id`` -> ``UTM ID`` (what salespeople see)."""
    return " ".join(_LABEL_WORDS.get(word, word.capitalize()) for word in domain_field.value.split("_"))


def _creation_name(attribute: str, custom_prefix: bool) -> str:
    """The name to send: EspoCRM adds the ``c`` itself, so ``cReferralCode`` is created as ``referralCode``."""
    if not custom_prefix:
        return attribute
    return attribute[1].lower() + attribute[2:]


def _definition(domain_field: MappedField, mapping: EspoCrmMapping) -> dict[str, Any]:
    label = field_label(domain_field)
    if domain_field in ENUM_DOMAINS:
        labels = mapping.enum_values.get(domain_field)
        options = list(labels.values()) if labels else sorted(ENUM_DOMAINS[domain_field])
        # The leading "" lets a lead have no value: EnumType::checkValid accepts null only then.
        return {"type": "enum", "label": label, "options": ["", *options]}
    if domain_field is MappedField.CONSENT:
        return {"type": "bool", "label": label}
    return {"type": "varchar", "maxLength": _VARCHAR_LENGTHS.get(domain_field, _DEFAULT_VARCHAR_LENGTH), "label": label}


def field_specs(mapping: EspoCrmMapping) -> list[FieldSpec]:
    """Every custom field the mapping writes to; native Lead attributes need nothing."""
    return [
        FieldSpec(attribute, {"name": _creation_name(attribute, mapping.custom_prefix), **_definition(domain, mapping)})
        for domain, attribute in mapping.lead_fields.items()
        if attribute not in ESPOCRM_NATIVE_ATTRIBUTES
    ]


def move_field_specs(provisioning: Provisioning, mapping: EspoCrmMapping) -> list[FieldSpec]:
    """The key field on every moved entity, then the plan's custom fields, as the admin API creates them."""
    keys = [
        _move_field_spec(item, mapping.custom_prefix, SOURCE_RECORD_LENGTH) for item in source_record_fields(mapping)
    ]
    return keys + [_move_field_spec(item, mapping.custom_prefix) for item in provisioning.fields]


def _move_field_spec(item: CustomField, custom_prefix: bool, length: int = _DEFAULT_VARCHAR_LENGTH) -> FieldSpec:
    if item.type not in MOVE_FIELD_TYPES:
        raise ProvisioningError(
            f"{item.entity}.{item.name}: provisioning creates {', '.join(sorted(MOVE_FIELD_TYPES))} fields, "
            f"not {item.type!r}"
        )
    name = _creation_name(item.name, custom_prefix)
    definition: dict[str, Any] = {"name": name, "type": item.type, "label": item.label}
    if item.type == "varchar":
        definition["maxLength"] = length
    if item.type == "enum":
        definition["options"] = ["", *item.options]  # "": a record may have no value (as _definition says)
    if item.type == "multiEnum":
        definition["options"] = list(item.options)
    if item.type == "link":
        if not item.foreign_entity:
            raise ProvisioningError(f"{item.entity}.{item.name}: a link field names the entity it points to")
        definition["entity"] = item.foreign_entity
    return FieldSpec(item.name, definition, item.entity)


def role_body(name: str, *, migration: bool = False) -> dict[str, Any]:
    data = {ENTITY: dict(LEAD_PERMISSIONS), **(MIGRATION_PERMISSIONS if migration else {})}
    return {"name": name, **ROLE_REQUIRED, **ROLE_DEFAULTS, "data": data}


# --- the admin API ---------------------------------------------------------------------------------


def api_base(site_url: str) -> str:
    base = site_url.rstrip("/")
    return base if base.endswith("/api/v1") else f"{base}/api/v1"


class EspoAdmin:
    """A minimal admin client: Basic auth (an API key cannot use the field manager), typed failures."""

    def __init__(self, site_url: str, user: str, password: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.site_url = site_url
        self.user = user
        self._http = httpx.Client(
            base_url=api_base(site_url) + "/",
            auth=httpx.BasicAuth(user, password),
            headers={"Accept": "application/json"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send one request; 401/403 and transport failures become ProvisioningError."""
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise ProvisioningError(f"EspoCRM at {self.site_url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"cannot reach EspoCRM at {self.site_url}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 401:
            raise ProvisioningError(
                f"EspoCRM rejected the credentials of admin user {self.user!r} (HTTP 401): check the user name and "
                f"{PASSWORD_VARIABLE}; an admin with two-factor authentication cannot log in with a password alone"
            )
        if response.status_code == 403:
            raise ProvisioningError(
                f"EspoCRM refused {method} {path} for {self.user!r} (HTTP 403): the user must be an administrator "
                "(an API user or key cannot use the admin API), or this IP is locked out after too many failed "
                "logins (wait a minute)"
            )
        return response

    def read_field(self, attribute: str, entity: str = ENTITY) -> dict[str, Any] | None:
        """The field's definition, or None when the entity has no such field."""
        path = f"Admin/fieldManager/{entity}/{attribute}"
        response = self.request("GET", path)
        if response.status_code == 200:
            return _object(response, path)
        reason = response.headers.get("X-Status-Reason", "")
        if response.status_code == 404 or (response.status_code == 500 and reason.startswith(_MISSING_FIELD_REASON)):
            return None
        raise _refused(f"GET {path}", response)

    def find(self, entity: str, attribute: str, value: str) -> dict[str, Any] | None:
        """The one record whose ``attribute`` equals ``value`` (read in full), or None."""
        search = {"where": [{"type": "equals", "attribute": attribute, "value": value}], "select": ["id"], "maxSize": 2}
        response = self.request("GET", entity, params={"searchParams": json.dumps(search, separators=(",", ":"))})
        if response.status_code != 200:
            raise _refused(f"GET {entity}", response)
        found = _object(response, entity).get("list")
        if not isinstance(found, list) or not found:
            return None
        if len(found) > 1:
            raise ProvisioningError(f"more than one {entity} has {attribute} {value!r}; rename or remove the extra one")
        path = f"{entity}/{found[0]['id']}"
        record = self.request("GET", path)
        if record.status_code != 200:
            raise _refused(f"GET {path}", record)
        return _object(record, path)


def _object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProvisioningError(f"EspoCRM answered {what} with something that is not a JSON object")
    return body


def _refused(what: str, response: httpx.Response) -> ProvisioningError:
    reason = response.headers.get("X-Status-Reason", "")[:200]
    return ProvisioningError(
        f"EspoCRM answered {what} with HTTP {response.status_code}{': ' + reason if reason else ''}"
    )


# --- planning: read everything, decide the writes --------------------------------------------------


def plan(admin: EspoAdmin, desired: Desired) -> Plan:
    """Compare EspoCRM with what crm-bridge needs. Only reads."""
    result = Plan()
    for spec in desired.fields:
        _plan_field(admin, spec, result)
    for item in desired.enum_options:
        _plan_enum_options(admin, item, result)
    if desired.currencies:
        _plan_currencies(admin, desired.currencies, result)
    role = admin.find("Role", "name", desired.role_name)
    role_id = _plan_role(role, desired.role_name, result, migration=desired.migration)
    user = admin.find("User", "userName", desired.api_user)
    _plan_user(user, role_id, desired, result)
    return result


def _plan_field(admin: EspoAdmin, spec: FieldSpec, result: Plan) -> None:
    where = "" if spec.entity == ENTITY else f"{spec.entity}."
    existing = admin.read_field(spec.attribute, spec.entity)
    if existing is None:
        result.actions.append(_creation(spec, f"create field {where}{spec.attribute} ({spec.describe()})"))
        return
    if existing.get("type") != spec.type:
        result.problems.append(
            f"field {where}{spec.attribute} is a {existing.get('type')} field, the mapping needs {spec.describe()}: "
            f"change the mapping, or delete the field in Administration > Entity Manager > {spec.entity} and run "
            "this again"
        )
        return
    current = [str(option) for option in existing.get("options") or []]
    missing = [option for option in spec.options if option and option not in current]
    if missing:
        result.actions.append(
            _options_update(spec.entity, spec.attribute, existing, [*current, *missing], where + spec.attribute)
        )
        return
    result.lines.append(f"field {where}{spec.attribute} ({spec.describe()}) exists")


def _creation(spec: FieldSpec, summary: str) -> Action:
    if spec.type != "link":
        return Action(ActionKind.CREATE_FIELD, "POST", f"Admin/fieldManager/{spec.entity}", spec.definition, summary)
    name = spec.definition["name"]
    body = {
        "entity": spec.entity,
        "entityForeign": spec.definition["entity"],
        "link": name,
        "linkForeign": f"{name}{spec.entity}",  # the other end, unique on the foreign entity
        "label": spec.definition["label"],
        "labelForeign": f"{spec.definition['label']} ({spec.entity})",
        "linkType": "manyToOne",
    }
    return Action(ActionKind.CREATE_LINK, "POST", "EntityManager/action/createLink", body, summary)


def _options_update(
    entity: str,
    attribute: str,
    existing: dict[str, Any],
    options: list[str],
    what: str,
    *,
    probabilities: Mapping[str, int] | None = None,
    closing: Sequence[str] = (),
) -> Action:
    """A field manager update adding options: with its ``type`` (else a 500 "No type.", fixture 52) and,
    for stage probabilities or closing statuses, the parameter list that lets ``probabilityMap`` /
    ``notActualOptions`` be saved (without it they are silently kept as they were: 53/54, 60/61)."""
    body: dict[str, Any] = {"type": existing.get("type"), "options": options}
    extra: dict[str, Any] = {}
    if probabilities:
        extra["probabilityMap"] = {**_mapping_at(existing, "probabilityMap"), **probabilities}
    if closing:
        extra["notActualOptions"] = [*_closing(existing), *closing]
    if extra:
        listed = [item for item in existing.get("fieldManagerAdditionalParamList") or [] if isinstance(item, dict)]
        named = {item.get("name") for item in listed}
        body |= extra | {
            "fieldManagerAdditionalParamList": listed + [{"name": name} for name in extra if name not in named]
        }
    added = [option for option in options if option not in (existing.get("options") or [])]
    change = (
        f"add option(s) {', '.join(added)} to" if added else "set the probabilities of" if probabilities else "update"
    )
    closes = f"; {', '.join(closing)} close records (notActualOptions)" if closing else ""
    return Action(
        ActionKind.UPDATE_FIELD,
        "PUT",
        f"Admin/fieldManager/{entity}/{attribute}",
        body,
        f"{change} field {what}{closes}",
    )


def _closing(existing: Mapping[str, Any]) -> list[str]:
    """The options that close a record (``notActualOptions``: a lead's "Converted", "Dead"...)."""
    return [str(option) for option in existing.get("notActualOptions") or []]


def _plan_enum_options(admin: EspoAdmin, item: EnumOptions, result: Plan) -> None:
    """Options (the portal's stages) an existing enum lacks, appended after the ones it has; their
    probabilities, and the closing ones among them joining ``notActualOptions``."""
    what = f"{item.entity}.{item.attribute}"
    existing = admin.read_field(item.attribute, item.entity)
    if existing is None or existing.get("type") not in ("enum", "multiEnum"):
        result.problems.append(f"{what} is not an enum field of this EspoCRM: its options cannot be added")
        return
    current = [str(option) for option in existing.get("options") or []]
    missing = [option for option in item.options if option not in current]
    known = _mapping_at(existing, "probabilityMap")
    probabilities = {stage: value for stage, value in item.probabilities.items() if known.get(stage) != value}
    closing = [option for option in item.not_actual if option not in _closing(existing)]
    if missing or probabilities or closing:
        result.actions.append(
            _options_update(
                item.entity,
                item.attribute,
                existing,
                [*current, *missing],
                what,
                probabilities=probabilities,
                closing=closing,
            )
        )
        return
    closed = f"; {', '.join(item.not_actual)} close records" if item.not_actual else ""
    result.lines.append(f"field {what} has the options {', '.join(item.options)}{closed}")


def _plan_currencies(admin: EspoAdmin, codes: tuple[str, ...], result: Plan) -> None:
    response = admin.request("GET", "Settings")
    if response.status_code != 200:
        raise _refused("GET Settings", response)
    current = [str(code) for code in _object(response, "Settings").get("currencyList") or []]
    missing = [code for code in codes if code not in current]
    if not missing:
        result.lines.append(f"currencies {', '.join(codes)} are allowed")
        return
    result.actions.append(
        Action(
            ActionKind.UPDATE_SETTINGS,
            "PUT",
            "Settings",
            {"currencyList": [*current, *missing]},
            f"allow currency(ies) {', '.join(missing)}",
        )
    )


def _plan_role(role: dict[str, Any] | None, name: str, result: Plan, *, migration: bool = False) -> str:
    grants = ", ".join(f"{action} {level}" for action, level in LEAD_PERMISSIONS.items())
    scopes = f"; for a move also {', '.join(MIGRATION_PERMISSIONS)}" if migration else ""
    if role is None:
        result.actions.append(
            Action(
                ActionKind.CREATE_ROLE,
                "POST",
                "Role",
                role_body(name, migration=migration),
                f"create role {name!r} ({ENTITY}: {grants}; assignment all{scopes})",
            )
        )
        return NEW_ROLE_ID
    role_id = str(role["id"])
    data = _mapping_at(role, "data")
    wanted: dict[str, Any] = {ENTITY: LEAD_PERMISSIONS, **(MIGRATION_PERMISSIONS if migration else {})}
    granted = {scope: _granted(data.get(scope), levels) for scope, levels in wanted.items()}
    required_ok = all(role.get(key) == value for key, value in ROLE_REQUIRED.items())
    if all(data.get(scope) == value for scope, value in granted.items()) and required_ok:
        result.lines.append(
            f"role {name!r} exists and allows what crm-bridge does{' and the move' if migration else ''}"
        )
    else:
        result.actions.append(
            Action(
                ActionKind.UPDATE_ROLE,
                "PUT",
                f"Role/{role_id}",
                {"data": {**data, **granted}, **ROLE_REQUIRED},
                f"set role {name!r} to {ENTITY}: {grants}; assignment all{scopes}",
            )
        )
    return role_id


def _granted(current: Any, wanted: Any) -> Any:
    """A scope's levels with ours applied over what an admin set by hand (a boolean scope: ours)."""
    if isinstance(wanted, dict):
        return {**(current if isinstance(current, dict) else {}), **wanted}
    return wanted


def _mapping_at(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return dict(value) if isinstance(value, dict) else {}


def _plan_user(user: dict[str, Any] | None, role_id: str, desired: Desired, result: Plan) -> None:
    name = desired.api_user
    if user is None:
        body = {
            "userName": name,
            "type": "api",
            "authMethod": desired.auth_method.value,
            "isActive": True,
            "rolesIds": [role_id],
        }
        result.actions.append(
            Action(
                ActionKind.CREATE_USER,
                "POST",
                "User",
                body,
                f"create API user {name!r} ({desired.auth_method.value}, role {desired.role_name!r})",
            )
        )
        return
    if user.get("type") != "api":
        result.problems.append(
            f"user {name!r} exists but is a {user.get('type')!r} user, not an API user: pick another --api-user"
        )
        return
    user_id = str(user["id"])
    changes: dict[str, Any] = {}
    roles = [str(role) for role in user.get("rolesIds") or []]
    if role_id not in roles:
        changes["rolesIds"] = [*roles, role_id]
    if user.get("isActive") is not True:
        changes["isActive"] = True
    current_method = str(user.get("authMethod") or AuthMethod.API_KEY.value)
    if current_method != desired.auth_method.value:
        if not desired.new_key:
            result.problems.append(
                f"API user {name!r} authenticates with {current_method}, not {desired.auth_method.value}: run with "
                f"--auth-method {current_method.lower()}, or add --new-key to switch it (which issues new credentials)"
            )
            return
        changes["authMethod"] = desired.auth_method.value
    if changes:
        result.actions.append(
            Action(
                ActionKind.UPDATE_USER,
                "PUT",
                f"User/{user_id}",
                changes,
                f"update API user {name!r}: {', '.join(sorted(changes))}",
            )
        )
    else:
        result.lines.append(f"API user {name!r} exists ({current_method}, role {desired.role_name!r})")
    if desired.new_key:
        result.actions.append(
            Action(
                ActionKind.NEW_KEY,
                "POST",
                "UserSecurity/apiKey/generate",
                {"id": user_id},
                f"issue a new key for API user {name!r} (the old one stops working)",
            )
        )


# --- applying -------------------------------------------------------------------------------------


def apply(
    admin: EspoAdmin, actions: Sequence[Action], *, on_done: Callable[[Action, str], None], api_user: str
) -> list[Credentials]:
    """Execute the planned writes in order; credentials EspoCRM returns are handed back at once."""
    role_id: str | None = None
    issued: list[Credentials] = []
    for action in actions:
        body = _with_role_id(action.body, role_id)
        response = admin.request(action.method, action.path, body=body)
        if action.kind in (ActionKind.CREATE_FIELD, ActionKind.CREATE_LINK) and response.status_code == 409:
            on_done(action, "already there (created meanwhile)")  # fixture 32: a repeat create is fine
            continue
        if response.status_code != 200:
            raise _refused(f"{action.method} {action.path} ({action.summary})", response)
        if action.kind is ActionKind.CREATE_ROLE:
            role_id = str(_object(response, action.path)["id"])
        if action.kind in (ActionKind.CREATE_USER, ActionKind.NEW_KEY):
            issued.append(_credentials(_object(response, action.path), api_user))
        on_done(action, "done")
    return issued


def _with_role_id(body: dict[str, Any], role_id: str | None) -> dict[str, Any]:
    roles = body.get("rolesIds")
    if role_id is None or not isinstance(roles, list) or NEW_ROLE_ID not in roles:
        return body
    return {**body, "rolesIds": [role_id if role == NEW_ROLE_ID else role for role in roles]}


def _credentials(user: dict[str, Any], api_user: str) -> Credentials:
    api_key = user.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise ProvisioningError(
            f"EspoCRM did not return the API key of {api_user!r}; read it in Administration > API Users"
        )
    secret = user.get("secretKey")
    return Credentials(api_user, api_key, secret if isinstance(secret, str) and secret else None)


# --- the command ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """Where the deployed stack reads the credentials (template parameters EspoCrmApiKeyName / ...HmacSecretName)."""

    api_key_parameter: str
    hmac_secret_parameter: str
    region: str | None = None
    store_in_ssm: bool = False


def print_credentials(credentials: Credentials, storage: Storage, out: TextIO) -> None:
    """Print the credentials once, each with the command that stores it (or store them directly)."""
    secrets = [("API key", credentials.api_key, storage.api_key_parameter)]
    if credentials.secret_key is not None:
        secrets.append(("HMAC secret", credentials.secret_key, storage.hmac_secret_parameter))
    if storage.store_in_ssm:
        try:
            _put_parameters([(name, value) for _, value, name in secrets], storage.region)
        except Exception as exc:  # any AWS failure: fall back to printing, the key must not be lost
            out.write(f"\nCould not store the credentials in SSM ({type(exc).__name__}); store them by hand:\n")
        else:
            for label, _, name in secrets:
                out.write(f"\nStored the {label} of {credentials.api_user!r} in SSM as {name} (SecureString).\n")
            return
    region = f" --region {shlex.quote(storage.region)}" if storage.region else ""
    out.write(
        f"\nCredentials of API user {credentials.api_user!r}, printed only this once. Store them now; prefix the\n"
        "commands with a space to keep them out of your shell history:\n"
    )
    for label, value, name in secrets:
        out.write(f"\n  {label}: {value}\n")
        out.write(
            f"   aws ssm put-parameter --name {shlex.quote(name)} --type SecureString --overwrite{region}"
            f" --value {shlex.quote(value)}\n"
        )


def _put_parameters(parameters: list[tuple[str, str]], region: str | None) -> None:
    import boto3

    ssm = boto3.client("ssm", region_name=region) if region else boto3.client("ssm")
    for name, value in parameters:
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.espocrm.provision",
        description="Create the custom fields, API role and API user crm-bridge needs in EspoCRM (idempotent).",
        epilog=f"The admin password is read from {PASSWORD_VARIABLE} or prompted for; it is never an argument.",
    )
    parser.add_argument("--url", default=os.environ.get("ESPOCRM_URL"), help="EspoCRM site URL (or ESPOCRM_URL)")
    parser.add_argument("--admin-user", default=os.environ.get("ESPOCRM_ADMIN_USER", "admin"), help="admin user name")
    parser.add_argument("--env", default="prod", help="crm-bridge environment, names the SSM parameters (prod)")
    parser.add_argument("--auth-method", choices=["apikey", "hmac"], default="apikey", help="API user auth method")
    parser.add_argument("--api-user", default=DEFAULT_API_USER, help=f"API user name ({DEFAULT_API_USER})")
    parser.add_argument("--role-name", default=DEFAULT_ROLE_NAME, help=f"role name ({DEFAULT_ROLE_NAME!r})")
    parser.add_argument(
        "--mapping-file",
        type=Path,
        default=Path(os.environ["CRM_FIELD_MAPPING_FILE"]) if os.environ.get("CRM_FIELD_MAPPING_FILE") else None,
        help="field mapping override, as deployed (or CRM_FIELD_MAPPING_FILE)",
    )
    parser.add_argument("--api-key-parameter", help="SSM name for the key (/crm-bridge/<env>/espocrm-api-key)")
    parser.add_argument(
        "--hmac-secret-parameter", help="SSM name for the secret (/crm-bridge/<env>/espocrm-hmac-secret)"
    )
    parser.add_argument("--region", help="AWS region for the SSM parameters")
    parser.add_argument("--store-in-ssm", action="store_true", help="store the credentials in SSM instead of printing")
    parser.add_argument("--new-key", action="store_true", help="issue a new key for an existing API user (rotation)")
    parser.add_argument(
        "--plan",
        type=Path,
        help="a whole-CRM move's provisioning JSON (crm_bridge.migrate.schema.Provisioning): its custom fields, "
        "stage options and currencies, and the role's access to every moved entity",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the plan; write nothing")
    return parser


def _unique(specs: list[FieldSpec]) -> list[FieldSpec]:
    """Each field once: a plan may name one the mapping creates already (the first one wins)."""
    found: dict[tuple[str, str], FieldSpec] = {}
    for spec in specs:
        found.setdefault((spec.entity, spec.attribute), spec)
    return list(found.values())


def _provisioning(path: Path) -> Provisioning:
    try:
        return Provisioning.from_json(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ProvisioningError(f"cannot read the plan {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ProvisioningError(f"the plan {path} is not a provisioning plan: {exc}") from None


def _password(stdin: TextIO) -> str:
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if not stdin.isatty():
        raise ProvisioningError(f"set {PASSWORD_VARIABLE} (no terminal to prompt for the admin password)")
    password = getpass.getpass("EspoCRM admin password: ")
    if not password:
        raise ProvisioningError("no admin password given")
    return password


def _check_url(url: str | None) -> str:
    if not url:
        raise ProvisioningError("give the EspoCRM site with --url (or ESPOCRM_URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProvisioningError(f"--url must be an http(s) URL such as https://crm.example.com, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise ProvisioningError("--url must use https: the admin password would cross the network in clear text")
    return url


def run(argv: Sequence[str] | None, out: TextIO, stdin: TextIO) -> int:
    """The command without process concerns: 0 when EspoCRM is ready, 1 when something needs a human."""
    args = _parser().parse_args(argv)
    url = _check_url(args.url)
    provisioning = _provisioning(args.plan) if args.plan else None
    try:
        mapping = load_field_mapping(args.mapping_file).espocrm
        fields = field_specs(mapping) + (move_field_specs(provisioning, mapping) if provisioning else [])
    except SettingsError as exc:
        raise ProvisioningError(str(exc)) from None
    desired = Desired(
        fields=_unique(fields),
        enum_options=provisioning.enum_options if provisioning else (),
        currencies=provisioning.currencies if provisioning else (),
        migration=provisioning is not None,
        role_name=args.role_name,
        api_user=args.api_user,
        auth_method=AuthMethod.HMAC if args.auth_method == "hmac" else AuthMethod.API_KEY,
        new_key=args.new_key,
    )
    storage = Storage(
        api_key_parameter=args.api_key_parameter or f"/crm-bridge/{args.env}/espocrm-api-key",
        hmac_secret_parameter=args.hmac_secret_parameter or f"/crm-bridge/{args.env}/espocrm-hmac-secret",
        region=args.region,
        store_in_ssm=args.store_in_ssm,
    )
    admin = EspoAdmin(url, args.admin_user, _password(stdin))
    try:
        return _provision(admin, desired, storage, dry_run=args.dry_run, out=out)
    finally:
        admin.close()


def _provision(admin: EspoAdmin, desired: Desired, storage: Storage, *, dry_run: bool, out: TextIO) -> int:
    fields = "custom fields for the mapping and the move" if desired.migration else f"mapped custom fields on {ENTITY}"
    out.write(f"EspoCRM {admin.site_url} (admin {admin.user!r}): {len(desired.fields)} {fields}, ")
    out.write(f"role {desired.role_name!r}, API user {desired.api_user!r}\n")
    result = plan(admin, desired)
    for line in result.lines:
        out.write(f"  = {line}\n")
    for action in result.actions:
        out.write(f"  + {action.summary}\n")
    for problem in result.problems:
        out.write(f"  ! {problem}\n")
    if dry_run:
        out.write(f"Dry run: {len(result.actions)} change(s) planned, nothing written.\n")
    elif not result.actions:
        out.write("Nothing to change.\n")
    else:
        out.write(f"Applying {len(result.actions)} change(s):\n")

        def report(action: Action, outcome: str) -> None:
            out.write(f"  {action.summary}: {outcome}\n")

        issued = apply(admin, result.actions, on_done=report, api_user=desired.api_user)
        for credentials in issued:
            print_credentials(credentials, storage, out)
    if result.problems:
        out.write(f"{len(result.problems)} problem(s) above need a human; EspoCRM is not fully ready.\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv, sys.stdout, sys.stdin)
    except ProvisioningError as exc:
        sys.stdout.flush()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
