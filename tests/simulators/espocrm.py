"""A stateful simulated EspoCRM 8.4.2 REST API (``/api/v1``) as a respx router.

Built from the exchanges recorded against a real 8.4.2 in ``tests/fixtures/espocrm-8.4.2/``:
status codes, ``X-Status-Reason`` texts, header sets and body key sets are taken from those
files, so that the provider is tested against what the server really sends, quirks included:

* create/read/update answer 200 with the record; a create answers only the attributes it set;
* unknown attributes are dropped without an error (a mapping typo loses data silently);
* an international phone is stored as E.164, a national one is a 400 validation failure, and so
  is one that 8.4.2's libphonenumber (8.13.24) does not know to be possible (fixture 41);
* an e-mail address is a 400 unless PHP's ``filter_var(FILTER_VALIDATE_EMAIL)`` accepts it
  (fixtures 25, 40), a value longer than its field's maxLength or not among its enum's options too,
  for the custom fields as ``infra/espocrm/provision.py`` creates them (``define_field`` changes one);
* searching ``phoneNumber`` matches the stored E.164 form only; ``phoneNumberNumeric`` the digits;
* a create matching a lead by first+last name or e-mail (never phone) is a 409 with a JSON array;
* a wrong key is a 401 with an empty body, malformed JSON a 500 with an empty body;
* an HMAC API user cannot log in with ``X-Api-Key`` (EspoCRM looks the key up per auth method).

With ``migration_role=True`` it also plays the role provisioning gives a whole-CRM move (fixtures
42-59, tests/simulators/espocrm_records.py): Account, Contact, Opportunity, Call, Meeting, Task and
Email records, notes on any of them, attachments, the metadata, labels and active users.

Where no recording exists the behaviour follows the EspoCRM source (see
``/work/shared/research/espocrm-api.md``); those places say so in their docstrings.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import phonenumbers
import respx

from tests.simulators.base import Failure, SeededClosedLead
from tests.simulators.espocrm_records import MOVED_ENTITIES, MovedRecords, StoredFile, file_from_data_url

FIXTURES_DIR = Path(__file__).parents[1] / "fixtures" / "espocrm-8.4.2"

DEFAULT_CUSTOM_ATTRIBUTES: tuple[str, ...] = (
    "cReferralCode",
    "cUserType",
    "cPreferredLanguage",
    "cProgram",
    "cUniversity",
    "cConsent",
    "cUtmSource",
    "cUtmMedium",
    "cUtmCampaign",
    "cUtmTerm",
    "cUtmContent",
    "cUtmId",
    "cGclid",
    "cFbclid",
    "cGbraid",
    "cWbraid",
    "cTtclid",
    "cMsclkid",
    "cYclid",
    "cCtwaClid",
    "cLandingPage",
    "cReferrer",
    "cFirstReferralCode",
    "cFirstUtmSource",
    "cFirstUtmMedium",
    "cFirstUtmCampaign",
    "cFirstLandingPage",
    "cFirstReferrer",
    "cFirstTouchAt",
    "cConsentVersion",
    "cConsentAt",
    "cConsentPage",
    "cVisitorSessionId",
    "cMessengerChannel",
    "cSourceRecord",
    "cSourceCreatedAt",
)

API_ROOT = "/api/v1"
MAX_SIZE_LIMIT = 200  # recordListMaxSizeLimit
DUPLICATE_LIMIT = 5  # Core/Duplicate/Finder.php

# Lead entityDefs (Modules/Crm/Resources/metadata/entityDefs/Lead.json).
_ENUMS: dict[str, tuple[str, ...]] = {
    "salutationName": ("", "Mr.", "Ms.", "Mrs.", "Dr."),
    "status": ("New", "Assigned", "In Process", "Converted", "Recycled", "Dead"),
    "source": (
        "",
        "Call",
        "Email",
        "Existing Customer",
        "Partner",
        "Public Relations",
        "Web Site",
        "Campaign",
        "Other",
    ),
}
_STATUS_STYLE = {"In Process": "primary", "Converted": "success", "Recycled": "info", "Dead": "info"}
_MAX_LENGTH: dict[str, int] = {
    "firstName": 100,
    "lastName": 100,
    "middleName": 100,
    "title": 100,
    "website": 255,
    "addressStreet": 255,
    "addressCity": 255,
    "addressState": 255,
    "addressCountry": 255,
    "addressPostalCode": 255,
    "accountName": 255,
}
# The custom fields as infra/espocrm/provision.py creates them (fixture 31 shows cReferralCode's
# maxLength 64; GET Metadata on a provisioned 8.4.2 shows the rest); a test keeps them in step.
# Any other varchar gets VarcharType's default maxLength of 255.
DEFAULT_CUSTOM_MAX_LENGTH: dict[str, int] = {
    "cReferralCode": 64,
    "cPreferredLanguage": 16,
    "cProgram": 255,
    "cUniversity": 255,
    "cUtmSource": 255,
    "cUtmMedium": 255,
    "cUtmCampaign": 255,
    "cUtmTerm": 255,
    "cUtmContent": 255,
    "cUtmId": 255,
    "cGclid": 512,
    "cFbclid": 512,
    "cGbraid": 255,
    "cWbraid": 255,
    "cTtclid": 255,
    "cMsclkid": 255,
    "cYclid": 255,
    "cCtwaClid": 255,
    "cLandingPage": 255,
    "cReferrer": 255,
    "cFirstReferralCode": 64,
    "cFirstUtmSource": 255,
    "cFirstUtmMedium": 255,
    "cFirstUtmCampaign": 255,
    "cFirstLandingPage": 255,
    "cFirstReferrer": 255,
    "cFirstTouchAt": 32,
    "cConsentVersion": 64,
    "cConsentAt": 32,
    "cConsentPage": 255,
    "cVisitorSessionId": 64,
    "cSourceRecord": 64,
    "cSourceCreatedAt": 32,
}
DEFAULT_CUSTOM_ENUMS: dict[str, tuple[str, ...]] = {
    "cUserType": ("", "Student", "Parent", "Other"),
    "cMessengerChannel": ("", "Telegram", "WhatsApp", "Instagram"),
}
_BOOLEANS = frozenset({"cConsent"})
_VARCHAR_DEFAULT_MAX_LENGTH = 255
_EMAIL_MAX_LENGTH = 255  # EmailAddress.name maxLength: EmailType::checkMaxLength
# Field order of the entityDefs: the validation manager reports the first failing field.
_VALIDATION_ORDER = (
    "salutationName",
    "firstName",
    "lastName",
    "middleName",
    "title",
    "status",
    "source",
    "opportunityAmount",
    "website",
    "addressStreet",
    "addressCity",
    "addressState",
    "addressCountry",
    "addressPostalCode",
    "emailAddress",
    "phoneNumber",
    "accountName",
)
# Attributes an API user may write; the rest of the record is read-only or computed.
_WRITABLE_NATIVE = frozenset(
    {
        "salutationName",
        "firstName",
        "lastName",
        "middleName",
        "title",
        "status",
        "source",
        "industry",
        "opportunityAmount",
        "opportunityAmountCurrency",
        "website",
        "addressStreet",
        "addressCity",
        "addressState",
        "addressCountry",
        "addressPostalCode",
        "emailAddress",
        "emailAddressData",
        "emailAddressIsOptedOut",
        "emailAddressIsInvalid",
        "phoneNumber",
        "phoneNumberData",
        "phoneNumberIsOptedOut",
        "phoneNumberIsInvalid",
        "doNotCall",
        "description",
        "accountName",
        "assignedUserId",
        "teamsIds",
        "campaignId",
        # What a converted lead became (fixture 51): the whole-CRM move links them.
        "createdAccountId",
        "createdContactId",
        "createdOpportunityId",
    }
)
# What selecting ``name`` pulls in (Lead.json name.dependeeAttributeList), and what the ACL needs.
_NAME_DEPENDEES = ("emailAddress", "phoneNumber", "accountName")
_ALWAYS_SELECTED = ("id", "createdById", "assignedUserId")
_TEXT_FILTER_ATTRIBUTES = ("name", "firstName", "lastName", "accountName", "emailAddress")
# Scopes of a stock install that the recorded API role has no access to (fixture 30).
_FORBIDDEN_SCOPES = frozenset(
    {
        "Account",
        "Contact",
        "Opportunity",
        "Case",
        "Call",
        "Meeting",
        "Task",
        "Email",
        "Document",
        "Campaign",
        "TargetList",
        "KnowledgeBaseArticle",
    }
)
# Controllers that exist in EspoCRM but are not simulated: a plain 404, not "does not exist".
_UNSIMULATED_CONTROLLERS = frozenset({"App", "Settings", "Team", "Stream", "GlobalSearch", "Activities", "OpenApi"})
_ACCESS_REASON = {
    "GET": "No read access.",
    "POST": "No create access.",
    "PUT": "No edit access.",
    "PATCH": "No edit access.",
    "DELETE": "No delete access.",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# PHP's FILTER_VALIDATE_EMAIL as EspoCRM's EmailType::checkEmailAddress calls it: php-src
# ext/filter/logical_filters.c php_filter_validate_email, ``regexp1`` (no FILTER_FLAG_EMAIL_UNICODE)
# verbatim, flags ``iD`` (so ``$`` is ``\Z``), no ``u`` (so it matches UTF-8 bytes), after its limit
# of 320 bytes. Verbatim, unlike crm_bridge.normalization's linear-time port, so that the two are
# checked against each other; PCRE's backtracking limit is simulated by a budget of splits. Python's
# re has no such limit: pathological addresses (many labels before a bad top label) belong to the
# port's tests, not to this regex.
_PHP_EMAIL_REGEXP1 = re.compile(
    rb"^(?!(?:(?:\x22?\x5C[\x00-\x7E]\x22?)|(?:\x22?[^\x5C\x22]\x22?)){255,})"
    rb"(?!(?:(?:\x22?\x5C[\x00-\x7E]\x22?)|(?:\x22?[^\x5C\x22]\x22?)){65,}@)"
    rb"(?:(?:[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x5E-\x7E]+)"
    rb"|(?:\x22(?:[\x01-\x08\x0B\x0C\x0E-\x1F\x21\x23-\x5B\x5D-\x7F]|(?:\x5C[\x00-\x7F]))*\x22))"
    rb"(?:\.(?:(?:[\x21\x23-\x27\x2A\x2B\x2D\x2F-\x39\x3D\x3F\x5E-\x7E]+)"
    rb"|(?:\x22(?:[\x01-\x08\x0B\x0C\x0E-\x1F\x21\x23-\x5B\x5D-\x7F]|(?:\x5C[\x00-\x7F]))*\x22)))*"
    rb"@(?:(?:(?!.*[^.]{64,})(?:(?:(?:xn--)?[a-z0-9]+(?:-+[a-z0-9]+)*\.){1,126}){1,}"
    rb"(?:(?:[a-z][a-z0-9]*)|(?:(?:xn--)[a-z0-9]+))(?:-+[a-z0-9]+)*)"
    rb"|(?:\[(?:(?:IPv6:(?:(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){7})"
    rb"|(?:(?!(?:.*[a-f0-9][:\]]){7,})(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,5})?::(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,5})?)))"
    rb"|(?:(?:IPv6:(?:(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){5}:)"
    rb"|(?:(?!(?:.*[a-f0-9]:){5,})(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,3})?::(?:[a-f0-9]{1,4}(?::[a-f0-9]{1,4}){0,3}:)?)))?"
    rb"(?:(?:25[0-5])|(?:2[0-4][0-9])|(?:1[0-9]{2})|(?:[1-9]?[0-9]))"
    rb"(?:\.(?:(?:25[0-5])|(?:2[0-4][0-9])|(?:1[0-9]{2})|(?:[1-9]?[0-9]))){3}))\]))\Z",
    re.IGNORECASE,
)
# libphonenumber-for-php 8.13.24 (EspoCRM 8.4.2's) against the phonenumbers package: the national
# number lengths its metadata holds possible, for the calling codes where the package accepts more
# (Benin's ten-digit numbers of 2024, Kosovo's longer fixed lines, ...). PhoneType::isValidNumber
# ends with isPossibleNumber(), so these numbers are a 400 ``valid`` on the real server (fixture 41).
_PHONE_LENGTHS_8_13_24: dict[int, frozenset[int]] = {
    57: frozenset({7, 10, 11}),  # CO
    62: frozenset(range(5, 14)),  # ID
    220: frozenset({7}),  # GM
    229: frozenset({8}),  # BJ
    234: frozenset({5, 6, 7, 8, 10, 11, 12, 13, 14}),  # NG
    243: frozenset({7, 9}),  # CD
    263: frozenset(range(3, 11)),  # ZW
    383: frozenset({8, 9}),  # XK
    598: frozenset(range(6, 14)),  # UY
}
_CUSTOM_NAME = re.compile(r"^c[A-Z]")
_NOT_SETTABLE_MOVED = frozenset({"id", "createdAt", "createdById", "modifiedAt", "modifiedById", "deleted"})
"""Sent by an API user, ignored without an error (fixtures 42, 43)."""
_MAINTENANCE = "Application is in maintenance mode."
_DROPPED_RESPONSE_HEADERS = frozenset({"host", "connection"})


# --- recorded templates ------------------------------------------------------------------------


@cache
def fixture(name: str) -> dict[str, Any]:
    """One recorded exchange by file stem (``"02_create_lead"``); read once per test session."""
    loaded: dict[str, Any] = json.loads((FIXTURES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


@cache
def fixture_names() -> tuple[str, ...]:
    """Every recorded exchange, in recording order."""
    return tuple(sorted(path.stem for path in FIXTURES_DIR.glob("[0-9][0-9]_*.json")))


def _body(name: str) -> Any:
    return fixture(name)["response"]["body"]


def _headers_of(name: str) -> list[tuple[str, str]]:
    return [(key, value) for key, value in fixture(name)["response"]["headers"]]


@dataclass(frozen=True)
class _Templates:
    """Key orders, defaults and header sets derived from the recordings, so nothing is invented."""

    full_keys: tuple[str, ...]  # GET Lead/{id}; the recorded custom attribute marks where customs go
    custom_slot: str
    create_keys: tuple[str, ...]  # order of a create answer
    create_always: frozenset[str]  # keys a create answers whatever was sent
    list_excluded: frozenset[str]  # keys a full record has but a list / 409 record lacks
    defaults: dict[str, Any]  # a new lead before anything is set
    create_extra: dict[str, Any]  # keys only a create answer carries (targetListIsOptedOut)
    api_user_id: str
    api_user_name: str
    note_create_keys: tuple[str, ...]
    stream_keys: dict[str, tuple[str, ...]]  # per note type
    validation_body: dict[str, Any]
    ok_headers: tuple[tuple[str, str], ...]
    error_headers: tuple[tuple[str, str], ...]
    unauthorized_headers: tuple[tuple[str, str], ...]
    dialog_header: tuple[str, str]


@cache
def _templates() -> _Templates:
    full = list(_body("39_read_lead_after_unknown_attr"))
    customs = [key for key in full if _CUSTOM_NAME.match(key)]
    if len(customs) != 1:
        raise AssertionError(f"fixture 39 should carry exactly one custom attribute, has {customs}")
    natives = set(full) - set(customs)

    # A create answer has keys a read lacks (targetListIsOptedOut): insert them after the key the
    # recording shows before them, which keeps both recorded orders (02 and 36).
    created = [_body("02_create_lead"), _body("21_no_lastname_accepted"), _body("36_create_lead_with_custom_field")]
    create_keys = list(full)
    for body in created:
        keys = list(body)
        for index, key in enumerate(keys):
            if key not in create_keys:
                create_keys.insert(create_keys.index(keys[index - 1]) + 1, key)
    sent = set(fixture("21_no_lastname_accepted")["request"]["body"]) | set(
        fixture("36_create_lead_with_custom_field")["request"]["body"]
    )
    create_always = (set(created[1]) & set(created[2])) - sent
    create_extra = {key: created[0][key] for key in created[0] if key not in natives}

    read = _body("03_read_lead")
    defaults: dict[str, Any] = {}
    for key, value in read.items():
        if isinstance(value, bool):
            defaults[key] = False
        elif isinstance(value, list):
            defaults[key] = []
        elif isinstance(value, dict):
            defaults[key] = {}
        else:
            defaults[key] = None
    defaults["status"] = "New"  # entityDefs default
    defaults["createdById"] = read["createdById"]
    defaults["createdByName"] = read["createdByName"]

    stream = _body("18_read_lead_stream")["list"]
    error_headers = tuple(
        (key, value)
        for key, value in _headers_of("22_invalid_maxlength")
        if key.lower() not in _DROPPED_RESPONSE_HEADERS and key != "X-Status-Reason"
    )
    dialog = next((k, v) for k, v in _headers_of("20_no_auth") if k == "WWW-Authenticate")
    return _Templates(
        full_keys=tuple(full),
        custom_slot=customs[0],
        create_keys=tuple(create_keys),
        create_always=frozenset(create_always),
        list_excluded=frozenset(set(read) - set(_body("15_create_lead_duplicate_409")[0])),
        defaults=defaults,
        create_extra=create_extra,
        api_user_id=read["createdById"],
        api_user_name=read["createdByName"],
        note_create_keys=tuple(_body("17_create_note_post")),
        stream_keys={item["type"]: tuple(item) for item in stream},
        validation_body=_body("23_invalid_phone_national_format"),
        ok_headers=tuple(
            (k, v) for k, v in _headers_of("02_create_lead") if k.lower() not in _DROPPED_RESPONSE_HEADERS
        ),
        error_headers=error_headers,
        unauthorized_headers=tuple(
            (k, v) for k, v in _headers_of("19_wrong_api_key") if k.lower() not in _DROPPED_RESPONSE_HEADERS
        ),
        dialog_header=dialog,
    )


# --- small helpers -----------------------------------------------------------------------------


class _Reject(Exception):
    """Raised inside a handler to answer with an error response (EspoCRM's exceptions)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """EspoCRM's datetime attribute format (UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _intval(value: Any) -> int:
    """PHP ``intval`` of a query-string value: leading digits, else 0."""
    match = re.match(r"^\s*([+-]?\d+)", str(value))
    return int(match.group(1)) if match else 0


def _php_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Parse a query string the way PHP does: ``where[0][type]=x`` becomes nested lists/dicts."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not match:
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for index, part in enumerate(parts):
            name = str(len(node)) if part == "" else part
            if index == len(parts) - 1:
                node[name] = value
                break
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
    parsed = _php_lists(root)
    return parsed if isinstance(parsed, dict) else {}


def _php_lists(node: Any) -> Any:
    """PHP arrays with 0..n keys are lists in JSON; turn those dicts into lists."""
    if not isinstance(node, dict):
        return node
    converted = {key: _php_lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _sanitize_phone(value: Any) -> Any:
    """EspoCRM's phone sanitizer: an international number is parsed and stored as E.164.

    ``+1 202 555 2726`` becomes ``+12025552726`` (fixture 02); a number without ``+`` is left
    as sent and then fails validation (fixture 23).
    """
    if not isinstance(value, str):
        return value
    value = value.strip()
    if not value.startswith("+"):
        return value
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted


def _valid_phone(value: Any) -> bool:
    """Exact E.164 that libphonenumber formats back to itself (``phoneNumberInternational`` on)
    and holds possible, with the metadata of EspoCRM 8.4.2's libphonenumber-for-php 8.13.24."""
    if not isinstance(value, str) or not _E164.match(value):
        return False
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value or not phonenumbers.is_possible_number(parsed):
        return False
    lengths = _PHONE_LENGTHS_8_13_24.get(parsed.country_code or 0)
    return lengths is None or len(phonenumbers.national_significant_number(parsed)) in lengths


def php_validates_email(value: Any) -> bool:
    """``filter_var($value, FILTER_VALIDATE_EMAIL) !== false`` for a string, as PHP 8.2 answers it."""
    if not isinstance(value, str):
        return False
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > 320:
        return False
    if _php_backtracking_gives_up(value):
        return False
    return _PHP_EMAIL_REGEXP1.match(data) is not None


def _php_backtracking_gives_up(value: str) -> bool:
    """Whether PCRE hits ``pcre.backtrack_limit`` (filter_var then answers false). regexp1's
    look-aheads walk every way of splitting the address's prefixes into units, each quote going to
    the unit before or after it; measured on PHP 8.2.36 / PCRE2 10.42 (``"a".`` seven times before
    ``b@example.com`` is refused, six times is not), PCRE gives up at about 124,500 such splits."""
    budget = 124_500
    ways = [0] * (len(value) + 1)  # ways[i]: splits of value[:i] into units
    ways[0] = 1
    for start in range(len(value)):
        if not ways[start]:
            continue
        for core in (start, start + 1) if value[start] == '"' else (start,):
            if core >= len(value) or value[core] == '"':
                continue
            if value[core] == "\\" and (core + 1 >= len(value) or value[core + 1] > "\x7e"):
                continue
            end = core + 2 if value[core] == "\\" else core + 1
            for stop in (end, end + 1) if end < len(value) and value[end] == '"' else (end,):
                ways[stop] += ways[start]
        if sum(ways) > budget:
            return True
    return False


def _is_numeric(value: Any) -> bool:
    """PHP ``is_numeric``: numbers and numeric strings, never booleans."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        return re.match(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", value) is not None
    return False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _fold(value: Any) -> Any:
    """Compare strings as MySQL's case-insensitive collation does."""
    return value.casefold() if isinstance(value, str) else value


def _like(pattern: str) -> re.Pattern[str]:
    """A SQL LIKE pattern (``%``, ``_``) as a case-insensitive regex."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL)


def _wildcard(text: str) -> re.Pattern[str]:
    """A quick-search text where ``*`` stands for anything, as a case-insensitive regex."""
    regex = ".*".join(re.escape(part) for part in text.split("*"))
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL)


def _equal(stored: Any, wanted: Any) -> bool:
    if stored is None or wanted is None:
        return False
    if isinstance(stored, bool):
        return stored == _truthy(wanted)
    if isinstance(stored, int | float) and _is_numeric(wanted):
        return float(stored) == float(wanted)
    return bool(_fold(str(stored)) == _fold(str(wanted)))


def _compare(stored: Any, wanted: Any) -> int | None:
    """-1/0/1 for ordering operators; None where SQL would be NULL / not comparable."""
    if stored is None or wanted is None:
        return None
    if isinstance(stored, int | float) and _is_numeric(wanted):
        left: Any = float(stored)
        right: Any = float(wanted)
    else:
        left, right = _fold(str(stored)), _fold(str(wanted))
    return int((left > right) - (left < right))


def _between(stored: Any, value: Any) -> bool:
    if not isinstance(value, list) or len(value) != 2:
        return False
    low, high = _compare(stored, value[0]), _compare(stored, value[1])
    return low is not None and high is not None and low >= 0 and high <= 0


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda text, wanted: wanted in text,
    "startsWith": lambda text, wanted: text.startswith(wanted),
    "endsWith": lambda text, wanted: text.endswith(wanted),
}
_ORDER_TESTS: dict[str, Callable[[int], bool]] = {
    "greaterThan": lambda result: result > 0,
    "lessThan": lambda result: result < 0,
    "greaterThanOrEquals": lambda result: result >= 0,
    "lessThanOrEquals": lambda result: result <= 0,
}


def _positive(operator: str, stored: Any, value: Any) -> bool:
    """One stored value against one where item (the positive form of the operator)."""
    if operator in _TEXT_TESTS:
        return stored is not None and _TEXT_TESTS[operator](_fold(str(stored)), _fold(str(value)))
    if operator in _ORDER_TESTS:
        result = _compare(stored, value)
        return result is not None and _ORDER_TESTS[operator](result)
    tests: dict[str, Callable[[], bool]] = {
        "equals": lambda: _equal(stored, value),
        "like": lambda: stored is not None and _like(str(value)).match(str(stored)) is not None,
        "in": lambda: any(_equal(stored, item) for item in (value if isinstance(value, list) else [value])),
        "isNotNull": lambda: stored is not None and stored != "",
        "isTrue": lambda: stored is True,
        "isFalse": lambda: stored is False,
        "between": lambda: _between(stored, value),
    }
    return tests[operator]()


_NEGATIONS = {
    "notEquals": "equals",
    "notContains": "contains",
    "notLike": "like",
    "notIn": "in",
    "isNull": "isNotNull",
}
_OPERATORS = frozenset(
    {
        "equals",
        "contains",
        "startsWith",
        "endsWith",
        "like",
        "in",
        "isNotNull",
        "isTrue",
        "isFalse",
        "greaterThan",
        "lessThan",
        "greaterThanOrEquals",
        "lessThanOrEquals",
        "between",
        *_NEGATIONS,
    }
)


@dataclass
class _Lead:
    seq: int
    values: dict[str, Any]  # every native attribute plus every custom value ever written


@dataclass
class _SearchParams:
    where: list[Any]
    select: list[str] | None
    max_size: int
    offset: int
    order_by: str
    order: str
    text_filter: str | None


@dataclass
class _State:
    leads: dict[str, _Lead] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    note_number: int = 0
    seq: int = 0


# --- the simulator -----------------------------------------------------------------------------


class SimulatedEspoCrm:
    """EspoCRM 8.4.2 as seen by an API user with Lead create / read all / edit all / stream all.

    Use as ``with SimulatedEspoCrm() as sim:`` (or start ``sim.router`` yourself): httpx requests
    to ``base_url`` are answered from in-memory state; requests to any other host are not mocked,
    so respx raises instead of letting a real call out.
    """

    provider_name = "espocrm"
    moved: MovedRecords
    """With ``migration_role``: the other entities a whole-CRM move writes (tests/simulators/espocrm_records.py)."""

    def __init__(
        self,
        base_url: str = "https://crm.example.test",
        api_key: str = "test-espo-api-key-0123456789",
        hmac_secret: str | None = None,
        custom_attributes: Iterable[str] = DEFAULT_CUSTOM_ATTRIBUTES,
        *,
        migration_role: bool = False,
    ) -> None:
        """``migration_role``: the API user's role is the one ``provision --plan`` gives (every moved
        entity, users, Import); else the live flow's (leads only: the others are a 403)."""
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.hmac_secret = hmac_secret
        self._custom: list[str] = list(dict.fromkeys(custom_attributes))
        self._max_length = {**_MAX_LENGTH, **DEFAULT_CUSTOM_MAX_LENGTH}
        self._enums = {**_ENUMS, **DEFAULT_CUSTOM_ENUMS}
        self._rejected: dict[str, str] = {}
        self._required: set[str] = set()
        self._failures: list[Failure] = []
        self._state = _State()
        self._api_root = urlsplit(self.base_url).path + API_ROOT
        self._t = _templates()
        self._migration_role = migration_role
        self.moved = MovedRecords()
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True, base_url=self.base_url)
        self._add_routes()

    # --- context manager -----------------------------------------------------------------------

    def __enter__(self) -> SimulatedEspoCrm:
        self.router.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.router.stop(quiet=exc_type is not None)

    # --- SimulatedCrm backdoor -----------------------------------------------------------------

    def seed_lead(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        """Store a lead directly, as if created earlier; ``attributes`` may fix ``id``/``createdAt``."""
        extra = dict(attributes or {})
        unknown = sorted(key for key in extra if not self._is_attribute(key))
        if unknown:
            raise ValueError(f"not Lead attributes of this install: {unknown}")
        data: dict[str, Any] = {}
        for key, value in (
            ("firstName", first_name),
            ("lastName", last_name),
            ("phoneNumber", phone),
            ("emailAddress", email),
        ):
            if value is not None:
                data[key] = value
        data.update(extra)
        lead_id = str(data.pop("id", None) or self._new_id())
        if lead_id in self._state.leads:
            raise ValueError(f"lead {lead_id} already exists")
        moment = _timestamp(_now())
        values = self._new_values(lead_id, moment)
        values["modifiedAt"] = data.pop("modifiedAt", None) or data.get("createdAt") or moment
        self._apply(values, data)
        self._store(values)
        return lead_id

    def seed_closed_lead(self, *, phone: str, email: str | None = None, converted: bool = True) -> SeededClosedLead:
        """A converted lead carries the ids of the Contact and Account its conversion created."""
        if not converted:
            return SeededClosedLead(self.seed_lead(phone=phone, email=email, attributes={"status": "Dead"}))
        contact_id, account_id = self._new_id(), self._new_id()
        attributes = {"status": "Converted", "createdContactId": contact_id, "createdAccountId": account_id}
        return SeededClosedLead(self.seed_lead(phone=phone, email=email, attributes=attributes), contact_id, account_id)

    def leads(self) -> list[dict[str, Any]]:
        """Every lead as ``GET Lead/{id}`` shows it, oldest first."""
        ordered = sorted(self._state.leads.values(), key=lambda lead: (lead.values["createdAt"], lead.seq))
        return [self._full_view(lead) for lead in ordered]

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self._full_view(self._state.leads[lead_id])

    def lead_phones(self, lead_id: str) -> list[str]:
        return [item["phoneNumber"] for item in self._state.leads[lead_id].values["phoneNumberData"]]

    def lead_emails(self, lead_id: str) -> list[str]:
        return [item["emailAddress"] for item in self._state.leads[lead_id].values["emailAddressData"]]

    def timeline(self, lead_id: str) -> list[str]:
        """The ``post`` texts of the lead's stream Posts, oldest first (system notes have none)."""
        if lead_id not in self._state.leads:
            raise KeyError(lead_id)
        return [
            str(note["post"])
            for note in self._state.notes
            if note["parentId"] == lead_id and note["type"] == "Post" and note["post"] is not None
        ]

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        self._failures.extend([failure] * times)

    def reject_attribute(self, attribute: str, *, named: str | None = None) -> None:
        """Any create/update body carrying ``attribute`` gets a 400 ``{field: attribute, type: valid}``;
        with ``named``, ``{field: named, type: required}`` instead: a field crm-bridge does not
        write that the CRM requires once ``attribute`` is set (dynamic logic), so leaving
        ``attribute`` out is not what it asks for."""
        self._rejected[attribute] = named or attribute

    def delete_lead(self, lead_id: str) -> None:
        """What an administrator's delete does: the lead is gone from every read and search."""
        del self._state.leads[lead_id]

    def accept_attribute(self, attribute: str) -> None:
        """Undo :meth:`reject_attribute`: the admin fixed the field."""
        self._rejected.pop(attribute, None)

    def add_attribute(self, attribute: str) -> None:
        """A custom attribute provisioning created on Lead (``cTitle``, a currency's ``cXCurrency``, a
        file's ``cXId``): writable and read back."""
        if attribute not in self._custom:
            self._custom.append(attribute)

    def require_attribute(self, attribute: str) -> None:
        """Make a (custom) field required, as an admin may: a create without a value for it is a
        400 ``{field: attribute, type: required}``, as is an update that empties it."""
        if _CUSTOM_NAME.match(attribute) and attribute not in self._custom:
            self._custom.append(attribute)
        self._required.add(attribute)

    def define_field(
        self, attribute: str, *, max_length: int | None = None, options: Iterable[str] | None = None
    ) -> None:
        """Change a field's definition as an admin may in the field manager: its maxLength (a
        varchar), or its options (an enum; include "" to allow no value)."""
        if max_length is not None:
            self._max_length[attribute] = max_length
        if options is not None:
            self._enums[attribute] = tuple(options)

    def drop_attribute(self, attribute: str) -> None:
        """Remove a custom attribute from the install: writes ignore it, reads and selects omit it."""
        if not _CUSTOM_NAME.match(attribute):
            raise ValueError(f"only custom (c-prefixed) attributes can be dropped, not {attribute!r}")
        if attribute in self._custom:
            self._custom.remove(attribute)

    def seed_user(self, user_name: str, name: str, email: str | None = None, *, active: bool = True) -> str:
        """A salesperson (or one who left: ``active`` False) of the install."""
        user_id = self.moved.new_id()
        admin_id = self.moved.users[0]["id"]
        user = {"userName": user_name, "name": name, "emailAddress": email, "isActive": active, "type": "regular"}
        self.moved.users.append({"id": user_id, **user, "createdById": admin_id})
        return user_id

    def record(self, entity: str, record_id: str) -> dict[str, Any]:
        """A moved record as ``GET {entity}/{id}`` shows it."""
        return self._record_view(entity, self.moved.records[entity][record_id])

    def moved_records(self, entity: str) -> list[dict[str, Any]]:
        return [self._record_view(entity, values) for values in self.moved.records[entity].values()]

    def stream(self, entity: str, record_id: str) -> list[dict[str, Any]]:
        """The Posts on a record (a lead's too), oldest first."""
        return [n for n in self._state.notes if n["parentId"] == record_id and n["parentType"] == entity]

    def file(self, file_id: str) -> StoredFile:
        return self.moved.files[file_id]

    @property
    def custom_attributes(self) -> tuple[str, ...]:
        """The custom attributes the simulated install currently has."""
        return tuple(self._custom)

    # --- routing -------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = API_ROOT
        lead = rf"^{api}/Lead/(?P<lead_id>[^/]+)"
        routes: list[tuple[str, dict[str, Any], Callable[..., httpx.Response]]] = [
            ("lead.create", {"method": "POST", "path": f"{api}/Lead"}, self._create_lead),
            ("lead.search", {"method": "GET", "path": f"{api}/Lead"}, self._search_leads),
            ("lead.stream", {"method": "GET", "path__regex": lead + "/stream$"}, self._read_stream),
            ("lead.read", {"method": "GET", "path__regex": lead + "$"}, self._read_lead),
            ("lead.update", {"method__in": ["PUT", "PATCH"], "path__regex": lead + "$"}, self._update_lead),
            ("lead.delete", {"method": "DELETE", "path__regex": lead + "$"}, self._delete_lead),
            ("note.create", {"method": "POST", "path": f"{api}/Note"}, self._create_note),
            ("app.user", {"method": "GET", "path": f"{api}/App/user"}, self._app_user),
            ("metadata", {"method": "GET", "path": f"{api}/Metadata"}, self._metadata),
            ("i18n", {"method": "GET", "path": f"{api}/I18n"}, self._labels),
            ("users", {"method": "GET", "path": f"{api}/User"}, self._users),
        ]
        if self._migration_role:
            entity = rf"^{api}/(?P<entity>{'|'.join(MOVED_ENTITIES)})"
            record = entity + r"/(?P<record_id>[^/]+)"
            routes += [
                ("attachment.create", {"method": "POST", "path": f"{api}/Attachment"}, self._create_attachment),
                (
                    "attachment.file",
                    {"method": "GET", "path__regex": rf"^{api}/Attachment/file/(?P<file_id>[^/]+)$"},
                    self._read_file,
                ),
                (
                    "note.delete",
                    {"method": "DELETE", "path__regex": rf"^{api}/Note/(?P<note_id>[^/]+)$"},
                    self._delete_note,
                ),
                ("record.create", {"method": "POST", "path__regex": entity + "$"}, self._create_record),
                ("record.search", {"method": "GET", "path__regex": entity + "$"}, self._search_records),
                ("record.stream", {"method": "GET", "path__regex": record + "/stream$"}, self._read_record_stream),
                ("record.read", {"method": "GET", "path__regex": record + "$"}, self._read_record),
                ("record.update", {"method__in": ["PUT", "PATCH"], "path__regex": record + "$"}, self._update_record),
            ]
        routes.append(("fallback", {}, self._fallback))
        for name, lookups, handler in routes:
            self.router.route(name=name, **lookups).mock(side_effect=self._guarded(handler))

    def _guarded(self, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        """Wrap a handler in what runs before any controller: injected faults, then authentication."""

        def side_effect(request: httpx.Request, **params: str) -> httpx.Response:
            injected = self._injected_failure(request)
            if injected is not None:
                return injected
            if self._resource_path(request) is None:
                return self._empty(404)  # not the API: the web UI's 404
            if not self._authenticated(request):
                return self._unauthorized(request)
            try:
                return handler(request, **params)
            except _Reject as rejection:
                return rejection.response

        return side_effect

    def _injected_failure(self, request: httpx.Request) -> httpx.Response | None:
        if not self._failures:
            return None
        failure = self._failures.pop(0)
        match failure:
            case Failure.TIMEOUT:
                raise httpx.ReadTimeout("simulated EspoCRM read timeout", request=request)
            case Failure.CONNECTION_REFUSED:
                raise httpx.ConnectError("simulated: connection refused", request=request)
            case Failure.MAINTENANCE:
                return self._json(503, {"message": _MAINTENANCE}, reason=_MAINTENANCE, ok=False)
            case Failure.UNAUTHORIZED:
                return self._unauthorized(request, dialog=False)
            case Failure.FORBIDDEN:
                return self._empty(403, reason=_ACCESS_REASON.get(request.method, "No access."))
            case _:  # SERVER_ERROR, and EspoCRM has no rate / time limits: a plain 500
                return self._empty(500)

    def _resource_path(self, request: httpx.Request) -> str | None:
        """The path below ``/api/v1`` (encoded, no query), as EspoCRM's ``getResourcePath``."""
        path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        if not path.startswith(self._api_root + "/"):
            return None
        return path[len(self._api_root) :]

    def _authenticated(self, request: httpx.Request) -> bool:
        """EspoCRM's header order: HMAC first, then API key; each finds only its own kind of user."""
        signed = request.headers.get("X-Hmac-Authorization")
        if signed is not None:
            return self._hmac_valid(request, signed)
        api_key = request.headers.get("X-Api-Key")
        if api_key and self.hmac_secret is None:
            return hmac.compare_digest(api_key.encode(), self.api_key.encode())
        return False

    def _hmac_valid(self, request: httpx.Request, header: str) -> bool:
        if self.hmac_secret is None:
            return False
        try:
            decoded = base64.b64decode(header, validate=False)
        except (binascii.Error, ValueError):
            return False
        api_key, _, digest = decoded.partition(b":")
        if not hmac.compare_digest(api_key, self.api_key.encode()):
            return False
        signed = f"{request.method} {self._resource_path(request)}".encode()
        mac = hmac.new(self.hmac_secret.encode(), signed, hashlib.sha256)
        # Lower-case hex since 8.4.1; the raw-binary legacy digest is still accepted.
        return hmac.compare_digest(digest, mac.hexdigest().encode()) or hmac.compare_digest(digest, mac.digest())

    def _unauthorized(self, request: httpx.Request, *, dialog: bool | None = None) -> httpx.Response:
        """401, empty body; ``WWW-Authenticate`` only when no credentials came (fixtures 19/20)."""
        if dialog is None:
            credentials = ("X-Hmac-Authorization", "X-Api-Key", "Authorization", "Espo-Authorization")
            dialog = (
                not any(request.headers.get(name) for name in credentials)
                and request.headers.get("X-Requested-With", "").lower() != "xmlhttprequest"
                and not request.headers.get("Referer")
                and request.method != "POST"
            )
        headers = list(self._t.unauthorized_headers)
        if dialog:
            headers.insert(len(headers) - 1, self._t.dialog_header)
        return httpx.Response(401, headers=self._dated(headers), content=b"")

    # --- responses -----------------------------------------------------------------------------

    @staticmethod
    def _dated(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        stamp = format_datetime(_now(), usegmt=True)
        return [(k, stamp if k in ("Date", "Last-Modified") else v) for k, v in headers]

    def _json(self, status: int, body: Any, *, reason: str | None = None, ok: bool = True) -> httpx.Response:
        headers = list(self._t.ok_headers if ok else self._t.error_headers)
        if reason is not None:
            headers.append(("X-Status-Reason", reason))
        return httpx.Response(status, headers=self._dated(headers), content=_encode(body))

    def _empty(self, status: int, *, reason: str | None = None) -> httpx.Response:
        """An error as ``ErrorOutput`` writes it: JSON content type, empty body, optional reason."""
        headers = list(self._t.error_headers)
        if reason is not None:
            headers.append(("X-Status-Reason", reason))
        return httpx.Response(status, headers=self._dated(headers), content=b"")

    def _validation_error(self, attribute: str, check: str, entity: str = "Lead") -> _Reject:
        body = copy.deepcopy(self._t.validation_body)
        body["messageTranslation"]["data"] = {"field": attribute, "type": check}
        reason = f"Field validation failure; entityType: {entity}, field: {attribute}, type: {check}."
        return _Reject(self._json(400, body, reason=reason, ok=False))

    # --- Lead handlers -------------------------------------------------------------------------

    def _create_lead(self, request: httpx.Request) -> httpx.Response:
        data = self._json_body(request)
        skip = request.headers.get("X-Skip-Duplicate-Check", "").lower() == "true"
        skip = _truthy(data.pop("_skipDuplicateCheck", False)) or skip
        self._check_rejected(data)
        data = self._writable(data)
        self._validate(data, creating=True)
        moment = _timestamp(_now())
        values = self._new_values(self._new_id(), moment)
        values["modifiedAt"] = moment
        self._apply(values, data)
        if not skip:
            duplicates = self._duplicates(values)
            if duplicates:
                body = [self._list_view(lead) for lead in duplicates]
                return self._json(409, body, reason="duplicate", ok=False)
        lead = self._store(values)
        return self._json(200, self._create_view(lead, set(data)))

    def _read_lead(self, request: httpx.Request, lead_id: str) -> httpx.Response:
        lead = self._state.leads.get(lead_id)
        if lead is None:
            return self._empty(404, reason=f"Record {lead_id} does not exist.")
        return self._json(200, self._full_view(lead))

    def _update_lead(self, request: httpx.Request, lead_id: str) -> httpx.Response:
        """PUT and PATCH are the same partial update (``RecordBase::patchActionUpdate``)."""
        data = self._json_body(request)
        lead = self._state.leads.get(lead_id)
        if lead is None:
            return self._empty(404, reason=f"Record {lead_id} not found.")
        self._check_rejected(data)
        data = self._writable(data)
        self._validate(data, creating=False)
        old_status = lead.values["status"]
        self._apply(lead.values, data)
        lead.values["modifiedAt"] = _timestamp(_now())
        lead.values["modifiedById"] = self._t.api_user_id
        lead.values["modifiedByName"] = self._t.api_user_name
        if lead.values["status"] != old_status:
            status = lead.values["status"]
            self._add_note(
                lead_id,
                "Status",
                data={"field": "status", "value": status, "style": _STATUS_STYLE.get(status, "default")},
            )
        return self._json(200, self._full_view(lead))

    def _delete_lead(self, request: httpx.Request, lead_id: str) -> httpx.Response:
        """The recorded role has delete = no: refused before the record is even looked up (fixture 29)."""
        return self._empty(403, reason="No delete access.")

    def _search_leads(self, request: httpx.Request) -> httpx.Response:
        params = self._search_params(request)
        for item in params.where:
            self._check_where(item)
        if params.order_by not in self._attribute_names():
            return self._empty(400, reason=f"Not existing attribute '{params.order_by}' in order.")
        found = [lead for lead in self._state.leads.values() if all(self._matches(lead, w) for w in params.where)]
        if params.text_filter:
            found = [lead for lead in found if self._text_matches(lead, params.text_filter)]

        def order_key(lead: _Lead) -> tuple[bool, Any, int]:
            value = _fold(self._attribute(lead, params.order_by))
            return (value is not None, value if value is not None else 0, lead.seq)

        found.sort(key=order_key, reverse=params.order == "DESC")
        page = found[params.offset : params.offset + params.max_size]
        if params.select is None:
            rows = [self._list_view(lead) for lead in page]
        else:
            wanted = {*params.select, *_ALWAYS_SELECTED, params.order_by}
            if "name" in wanted:
                wanted.update(_NAME_DEPENDEES)
            rows = [self._select_view(lead, wanted) for lead in page]
        return self._json(200, {"total": len(found), "list": rows})

    def _read_stream(self, request: httpx.Request, lead_id: str) -> httpx.Response:
        if lead_id not in self._state.leads:
            return self._empty(404)
        return self._stream_page(request, lead_id)

    def _stream_page(self, request: httpx.Request, parent_id: str) -> httpx.Response:
        """A record's stream, newest first (fixture 18)."""
        query = _php_query(request.url.params.multi_items())
        max_size = _intval(query["maxSize"]) if query.get("maxSize") not in (None, "") else MAX_SIZE_LIMIT
        offset = _intval(query.get("offset") or 0)
        notes = [note for note in reversed(self._state.notes) if note["parentId"] == parent_id]
        page = notes[offset : offset + max_size]
        rows = [{key: note.get(key) for key in self._t.stream_keys[note["type"]]} for note in page]
        return self._json(200, {"total": len(notes), "list": rows, "pinnedList": []})

    def _create_note(self, request: httpx.Request) -> httpx.Response:
        """Only Posts, and only on a lead the user can stream (``Acl/Note/AccessChecker``).

        An unknown parent fails the create-access check: 403 "No create access." (not a 404).
        """
        data = self._json_body(request)
        parent_type, parent_id = data.get("parentType"), data.get("parentId")
        if (parent_type or parent_id) and not self._streamable(parent_type, parent_id):
            return self._empty(403, reason="No create access.")
        if data.get("type", "Post") != "Post":
            return self._empty(403, reason="Only 'Post' type allowed.")
        attachments = [str(i) for i in data.get("attachmentsIds") or [] if isinstance(i, str)]
        note = self._add_note(
            str(parent_id) if parent_id else None,
            "Post",
            parentType=parent_type,
            post=data.get("post"),
            attachmentsIds=attachments,
            attachmentsNames=self.moved.file_names(attachments),
            attachmentsTypes={i: self.moved.files[i].type for i in attachments if i in self.moved.files},
        )
        return self._json(200, {key: note.get(key) for key in self._t.note_create_keys})

    def _delete_note(self, request: httpx.Request, note_id: str) -> httpx.Response:
        """A Post its author deletes (``Acl/Note/AccessChecker::checkEntityDelete``: the API user's own
        Posts, all of them here); EspoCRM answers ``true``."""
        note = next((note for note in self._state.notes if note["id"] == note_id and note["type"] == "Post"), None)
        if note is None:
            return self._empty(404)
        self._state.notes.remove(note)
        return self._json(200, True)

    def _streamable(self, parent_type: Any, parent_id: Any) -> bool:
        if parent_type == "Lead":
            return parent_id in self._state.leads
        return self._migration_role and parent_id in self.moved.records.get(str(parent_type), {})

    # --- the whole-CRM move's entities (migration role) ------------------------------------------

    def _readable(self) -> tuple[str, ...]:
        """The moved entities whose metadata the role shows: ``Metadata`` leaves out what it cannot read."""
        return tuple(self.moved.definitions) if self._migration_role else ("Lead", "Note")

    def _app_user(self, request: httpx.Request) -> httpx.Response:
        """The API user and its role's access table (fixture 59); the live role's lacks the move's scopes."""
        recorded = copy.deepcopy(fixture("59_api_app_user")["response"]["body"])
        recorded["user"].update(id=self._t.api_user_id, name=self._t.api_user_name, userName=self._t.api_user_name)
        if not self._migration_role:
            table = recorded["acl"]["table"]
            no_access = dict.fromkeys(("read", "stream", "edit", "delete", "create"), "no")
            table.update(dict.fromkeys(MOVED_ENTITIES, no_access), Import=False)
            table["User"] = {**table["User"], "read": "own"}
        return self._json(200, recorded)

    def _metadata(self, request: httpx.Request) -> httpx.Response:
        """The field definitions of what the role reads (fixture 56, cut as recorded)."""
        readable = self._readable()
        return self._json(200, {"entityDefs": {e: {"fields": self.moved.definitions[e]} for e in readable}})

    def _labels(self, request: httpx.Request) -> httpx.Response:
        return self._json(200, {entity: self.moved.labels[entity] for entity in self._readable()})

    def _users(self, request: httpx.Request) -> httpx.Response:
        """Active, non-API users only, whatever is asked (fixture 58: the mandatory access filter);
        none to the live flow's role (User read own: the API user, which is never listed)."""
        params = self._search_params(request)
        users = self.moved.active_users() if self._migration_role else []
        page = users[params.offset : params.offset + params.max_size]
        wanted = {"id", "type", "createdById", *(params.select or ["name", "userName", "emailAddress", "isActive"])}
        return self._json(
            200, {"total": len(users), "list": [{k: v for k, v in u.items() if k in wanted} for u in page]}
        )

    def _create_attachment(self, request: httpx.Request) -> httpx.Response:
        """``file`` as a ``data:`` URL (fixture 44); answers the attachment without its bytes."""
        data = self._json_body(request)
        mime, content = file_from_data_url(str(data.get("file") or ""))
        stored = StoredFile(
            self.moved.new_id(),
            str(data.get("name") or ""),
            str(data.get("type") or mime),
            content,
            data.get("field"),
            data.get("relatedType") or data.get("parentType"),
        )
        self.moved.files[stored.id] = stored
        answer = {
            **fixture("44_create_attachment")["response"]["body"],
            "id": stored.id,
            "name": stored.name,
            "type": stored.type,
            "size": len(content),
            "field": stored.field,
            "createdAt": _timestamp(_now()),
            "role": data.get("role") or "Attachment",
            "relatedType": stored.related_type,
            "createdById": self._t.api_user_id,
            "createdByName": self._t.api_user_name,
        }
        return self._json(200, answer)

    def _read_file(self, request: httpx.Request, file_id: str) -> httpx.Response:
        stored = self.moved.files.get(file_id)
        if stored is None:
            return self._empty(404)
        return httpx.Response(200, headers={"Content-Type": stored.type}, content=stored.content)

    def _create_record(self, request: httpx.Request, entity: str) -> httpx.Response:
        data = self._record_values(entity, self._json_body(request), creating=True)
        moment = _timestamp(_now())
        values = {"id": self.moved.new_id(), "createdAt": moment, "modifiedAt": moment, **data}
        values["createdById"] = self._t.api_user_id
        self._derive(entity, values, data)
        self.moved.records[entity][values["id"]] = values
        return self._json(200, self._record_view(entity, values))

    def _read_record(self, request: httpx.Request, entity: str, record_id: str) -> httpx.Response:
        values = self.moved.records[entity].get(record_id)
        if values is None:
            return self._empty(404, reason=f"Record {record_id} does not exist.")
        return self._json(200, self._record_view(entity, values))

    def _update_record(self, request: httpx.Request, entity: str, record_id: str) -> httpx.Response:
        values = self.moved.records[entity].get(record_id)
        if values is None:
            return self._empty(404, reason=f"Record {record_id} not found.")
        data = self._record_values(entity, self._json_body(request), creating=False)
        values.update(data)
        values["modifiedAt"] = _timestamp(_now())
        self._derive(entity, values, data)
        return self._json(200, self._record_view(entity, values))

    def _derive(self, entity: str, values: dict[str, Any], data: Mapping[str, Any]) -> None:
        """A phone or e-mail field's primary value is its list's primary item; an Opportunity's
        probability follows its stage unless given (``Hooks/Opportunity/Probability``)."""
        for name, definition in self.moved.definitions[entity].items():
            items = data.get(f"{name}Data")
            if definition.get("type") in ("phone", "email") and isinstance(items, list):
                primary = [item.get(name) for item in items if isinstance(item, dict) and item.get("primary")]
                values[name] = primary[0] if primary else None
        if entity == "Opportunity" and "stage" in data and "probability" not in data:
            probabilities = self.moved.definitions["Opportunity"]["stage"].get("probabilityMap") or {}
            values["probability"] = probabilities.get(values["stage"], 0)

    def _search_records(self, request: httpx.Request, entity: str) -> httpx.Response:
        params = self._search_params(request)
        attributes = self.moved.attributes(entity)
        for item in params.where:
            if not isinstance(item, dict) or item.get("attribute") not in {*attributes, "id"}:
                return self._empty(400, reason=f"Not existing attribute '{item.get('attribute')}' in where.")
        found = [
            values
            for values in self.moved.records[entity].values()
            if all(_positive(str(w["type"]), values.get(str(w["attribute"])), w.get("value")) for w in params.where)
        ]
        found.sort(key=lambda values: str(values.get(params.order_by) or ""), reverse=params.order == "DESC")
        page = found[params.offset : params.offset + params.max_size]
        wanted = {*(params.select or attributes), *_ALWAYS_SELECTED}
        rows = [{k: v for k, v in self._record_view(entity, values).items() if k in wanted} for values in page]
        return self._json(200, {"total": len(found), "list": rows})

    def _read_record_stream(self, request: httpx.Request, entity: str, record_id: str) -> httpx.Response:
        if record_id not in self.moved.records[entity]:
            return self._empty(404)
        return self._stream_page(request, record_id)

    def _record_values(self, entity: str, data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """What a write keeps: the entity's settable attributes (others dropped silently, 42/43),
        checked as ``FieldValidationManager`` does: required on a create (49), enum options, the
        currency list (48)."""
        attributes = self.moved.attributes(entity)
        kept = {
            key: value
            for key, value in data.items()
            if key in attributes and key not in _NOT_SETTABLE_MOVED and not attributes[key][1].get("readOnly")
        }
        fields = dict(attributes.values())
        for name, definition in fields.items():
            check = self._moved_check(name, definition, kept, creating=creating)
            if check is not None:
                raise self._validation_error(name, check, entity)
        return kept

    def _moved_check(
        self, name: str, definition: Mapping[str, Any], data: Mapping[str, Any], *, creating: bool
    ) -> str | None:
        kind = definition.get("type")
        main = f"{name}Id" if kind in ("link", "file") else name
        if definition.get("required") and (creating or main in data) and data.get(main) in (None, "", []):
            return "required"
        value = data.get(name)
        options = definition.get("options")
        if (
            kind == "enum"
            and name in data
            and options is not None
            and value not in (*options, *([None] if "" in options else []))
        ):
            return "valid"
        if kind == "multiEnum" and isinstance(value, list) and options is not None and set(value) - set(options):
            return "valid"
        currency = data.get(f"{name}Currency")
        if kind == "currency" and currency is not None and currency not in self.moved.currencies:
            return "validCurrency"
        return None

    def _record_view(self, entity: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every attribute (nulls and empty id lists included), names of files, and a person's name."""
        view: dict[str, Any] = {"id": values["id"]}
        for attribute, (name, definition) in self.moved.attributes(entity).items():
            empty: Any = [] if attribute.endswith("Ids") or attribute.endswith("Data") else None
            view[attribute] = copy.deepcopy(values.get(attribute, empty))
            if definition.get("type") == "attachmentMultiple":
                view[f"{name}Names"] = self.moved.file_names(view[attribute])
            if definition.get("type") == "file":
                view[f"{name}Name"] = self.moved.file_names([view[attribute]] if view[attribute] else []).get(
                    view[attribute]
                )
        if "firstName" in view or "lastName" in view:
            view["name"] = " ".join(part for part in (view.get("firstName"), view.get("lastName")) if part)
        view.update(
            createdAt=values["createdAt"],
            modifiedAt=values["modifiedAt"],
            createdById=values["createdById"],
            createdByName=self._t.api_user_name,
        )
        return view

    def _fallback(self, request: httpx.Request) -> httpx.Response:
        """Every other API path: admin-only, forbidden scopes, unknown controllers."""
        path = self._resource_path(request) or "/"
        controller = path.strip("/").split("/", 1)[0]
        if controller == "Admin":
            return self._empty(403, reason="")  # fixture 33: API users are never admins
        if controller in _FORBIDDEN_SCOPES:
            return self._empty(403, reason=_ACCESS_REASON.get(request.method, "No access."))
        if not controller or controller in {"Lead", "Note"} | _UNSIMULATED_CONTROLLERS:
            return self._empty(404)
        return self._empty(404, reason=f"Controller '{controller}' does not exist.")

    # --- request parsing -----------------------------------------------------------------------

    def _json_body(self, request: httpx.Request) -> dict[str, Any]:
        """The JSON object sent; malformed JSON is a 500 with an empty body (fixture 27)."""
        raw = request.content
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise _Reject(self._empty(500)) from error
        if not isinstance(data, dict):
            raise _Reject(self._empty(400))
        return data

    def _search_params(self, request: httpx.Request) -> _SearchParams:
        """``searchParams`` JSON or PHP bracket parameters, as ``Core/Record/SearchParamsFetcher``."""
        query = _php_query(request.url.params.multi_items())
        raw: dict[str, Any]
        if "searchParams" in query:
            try:
                decoded = json.loads(str(query["searchParams"]))
            except ValueError as error:
                raise _Reject(self._empty(400, reason="Invalid search params JSON.")) from error
            raw = decoded if isinstance(decoded, dict) else {}
            if raw.get("maxSize") is not None and (
                not isinstance(raw["maxSize"], int) or isinstance(raw["maxSize"], bool)
            ):
                raise _Reject(self._empty(400, reason="maxSize must be integer."))
            select = raw.get("select", raw.get("attributeSelect"))
        else:
            raw = {
                "where": query.get("whereGroup", query.get("where")),
                "maxSize": None if query.get("maxSize") in (None, "") else _intval(query["maxSize"]),
                "offset": None if query.get("offset") in (None, "") else _intval(query["offset"]),
                "orderBy": query.get("orderBy") or query.get("sortBy"),
                "order": str(query["order"]).upper() if query.get("order") else None,
                "textFilter": query.get("textFilter") or None,
            }
            if raw["order"] is None and query.get("asc"):
                raw["order"] = "ASC" if query["asc"] == "true" else "DESC"
            select = query.get("attributeSelect") or query.get("select")
        if isinstance(select, str):
            select = [part for part in select.split(",") if part]
        max_size = raw.get("maxSize")
        if max_size is not None and max_size > MAX_SIZE_LIMIT:
            reason = f"Max size should not exceed {MAX_SIZE_LIMIT}. Use offset and limit."
            raise _Reject(self._empty(403, reason=reason))
        order = str(raw.get("order") or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise _Reject(self._empty(400, reason="Bad order."))
        where = raw.get("where")
        return _SearchParams(
            where=list(where) if isinstance(where, list) else [],
            select=[str(item) for item in select] if isinstance(select, list) else None,
            max_size=MAX_SIZE_LIMIT if max_size is None else max(int(max_size), 0),
            offset=max(_intval(raw.get("offset") or 0), 0),
            order_by=str(raw.get("orderBy") or "createdAt"),  # Lead collection default
            order=order,
            text_filter=str(raw["textFilter"]) if raw.get("textFilter") else None,
        )

    def _check_where(self, item: Any) -> None:
        """``Core/Select/Where/Checker``: unknown attributes are a 400; then the item types."""
        if not isinstance(item, dict):
            raise _Reject(self._empty(400, reason="Bad where item."))
        kind = item.get("type")
        if kind in ("or", "and"):
            for sub in item.get("value") or []:
                self._check_where(sub)
            return
        attribute = item.get("attribute")
        if attribute is not None and str(attribute) not in self._where_attributes():
            raise _Reject(self._empty(400, reason=f"Not existing attribute '{attribute}' in where."))
        if kind not in _OPERATORS:
            raise _Reject(self._empty(400, reason=f"Unknown where item type '{kind}'."))

    # --- search semantics ----------------------------------------------------------------------

    def _matches(self, lead: _Lead, item: dict[str, Any]) -> bool:
        kind = str(item["type"])
        value = item.get("value")
        if kind in ("or", "and"):
            results = [self._matches(lead, sub) for sub in (value if isinstance(value, list) else [])]
            return any(results) if kind == "or" else all(results)
        candidates = self._where_values(lead, str(item.get("attribute")))
        if kind in _NEGATIONS:
            return not any(_positive(_NEGATIONS[kind], stored, value) for stored in candidates)
        return any(_positive(kind, stored, value) for stored in candidates)

    def _where_values(self, lead: _Lead, attribute: str) -> list[Any]:
        """What a where item compares: every number / address for the multi-value fields."""
        values = lead.values
        if attribute == "phoneNumber":
            return [item["phoneNumber"] for item in values["phoneNumberData"]] or [None]
        if attribute == "phoneNumberNumeric":
            numbers = [re.sub(r"\D", "", item["phoneNumber"]) for item in values["phoneNumberData"]]
            return numbers or [None]
        if attribute == "emailAddress":
            return [item["emailAddress"] for item in values["emailAddressData"]] or [None]
        return [self._attribute(lead, attribute)]

    def _text_matches(self, lead: _Lead, text: str) -> bool:
        """The quick text filter: name, account name and e-mail, starting with (``*`` = wildcard)."""
        pattern = _wildcard(text if "*" in text else text + "*")
        return any(
            stored is not None and pattern.match(str(stored))
            for attribute in _TEXT_FILTER_ATTRIBUTES
            for stored in self._where_values(lead, attribute)
        )

    def _duplicates(self, values: dict[str, Any]) -> list[_Lead]:
        """``DuplicateWhereBuilders/General``: first AND last name, OR any e-mail; never the phone."""

        def name(record: dict[str, Any], key: str) -> Any:
            return _fold(record.get(key) or None)

        check_name = bool(values.get("firstName") or values.get("lastName"))
        emails = {item["lower"] for item in values["emailAddressData"]}
        found = []
        for lead in self._state.leads.values():
            same_name = check_name and all(name(lead.values, k) == name(values, k) for k in ("firstName", "lastName"))
            same_email = bool(emails & {item["lower"] for item in lead.values["emailAddressData"]})
            if same_name or same_email:
                found.append(lead)
        return found[:DUPLICATE_LIMIT]

    # --- writes --------------------------------------------------------------------------------

    def _attribute_names(self) -> set[str]:
        natives = {key for key in self._t.full_keys if not _CUSTOM_NAME.match(key)}
        return natives | set(self._custom)

    def _where_attributes(self) -> set[str]:
        return self._attribute_names() | {"phoneNumberNumeric"}

    def _is_attribute(self, key: str) -> bool:
        return key in self._attribute_names()

    def _check_rejected(self, data: Mapping[str, Any]) -> None:
        for attribute in data:
            named = self._rejected.get(attribute)
            if named is not None:
                raise self._validation_error(named, "valid" if named == attribute else "required")

    def _writable(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Drop what ``populateFromArray`` would not set: unknown and read-only attributes."""
        allowed = _WRITABLE_NATIVE | set(self._custom)
        writable = {key: value for key, value in data.items() if key in allowed}
        if "phoneNumber" in writable:
            writable["phoneNumber"] = _sanitize_phone(writable["phoneNumber"])
        if isinstance(writable.get("phoneNumberData"), list):
            writable["phoneNumberData"] = [
                {**item, "phoneNumber": _sanitize_phone(item.get("phoneNumber"))} if isinstance(item, dict) else item
                for item in writable["phoneNumberData"]
            ]
        return writable

    def _validate(self, data: Mapping[str, Any], *, creating: bool) -> None:
        """The field validators, in entityDefs order: on a create every field, on an update only
        the fields present in the request (``FieldValidationManager::processInternal``)."""
        for attribute in (*_VALIDATION_ORDER, *self._custom):
            check = self._failed_check(attribute, data, creating=creating)
            if check is not None:
                raise self._validation_error(attribute, check)

    def _failed_check(self, attribute: str, data: Mapping[str, Any], *, creating: bool) -> str | None:
        if attribute in self._required and (creating or attribute in data) and data.get(attribute) in (None, ""):
            return "required"
        if attribute in ("phoneNumber", "emailAddress"):
            return _failed_contact_check(attribute, data)
        if attribute not in data:
            return None
        value = data[attribute]
        limit = self._max_length.get(attribute)
        if limit is None and _CUSTOM_NAME.match(attribute) and attribute not in self._enums:
            limit = None if attribute in _BOOLEANS else _VARCHAR_DEFAULT_MAX_LENGTH
        if attribute in self._enums and value not in self._enum_values(attribute):
            check: str | None = "valid"
        elif attribute == "opportunityAmount" and value is not None and not _is_numeric(value):
            check = "valid"
        elif limit is not None and isinstance(value, str) and len(value) > limit:
            check = "maxLength"
        else:
            check = None
        return check

    def _enum_values(self, attribute: str) -> tuple[Any, ...]:
        """EnumType::checkValid: the options, "" meaning null, and "" taken as null too."""
        return tuple(None if option == "" else option for option in self._enums[attribute]) + (
            ("",) if "" in self._enums[attribute] else ()
        )

    def _new_id(self) -> str:
        """A 17-hex-digit id like EspoCRM's ``Util::generateId``."""
        while True:
            candidate = secrets.token_hex(9)[:17]
            if candidate not in self._state.leads:
                return candidate

    def _new_values(self, lead_id: str, moment: str) -> dict[str, Any]:
        values = copy.deepcopy(self._t.defaults)
        values.update(id=lead_id, createdAt=moment, modifiedAt=moment)
        return values

    def _store(self, values: dict[str, Any]) -> _Lead:
        self._state.seq += 1
        lead = _Lead(seq=self._state.seq, values=values)
        self._state.leads[values["id"]] = lead
        status = values["status"]
        self._add_note(
            values["id"],
            "Create",
            data={"statusValue": status, "statusField": "status", "statusStyle": _STATUS_STYLE.get(status, "default")},
        )
        return lead

    def _apply(self, values: dict[str, Any], data: Mapping[str, Any]) -> None:
        """Set attributes as the ORM does, then recompute what EspoCRM derives from them."""
        contact_keys = {"phoneNumber", "phoneNumberData", "emailAddress", "emailAddressData"}
        for key, value in data.items():
            if key not in contact_keys:
                values[key] = copy.deepcopy(value)
        self._set_contacts(values, data, "phoneNumber")
        self._set_contacts(values, data, "emailAddress")
        for kind in ("phoneNumber", "emailAddress"):
            primary = next((item for item in values[f"{kind}Data"] if item["primary"]), None)
            for flag, key in (("IsOptedOut", "optOut"), ("IsInvalid", "invalid")):
                if f"{kind}{flag}" in data and primary is not None:
                    primary[key] = bool(data[f"{kind}{flag}"])
                values[f"{kind}{flag}"] = bool(primary[key]) if primary is not None else False
            values[kind] = primary[kind] if primary is not None else None
        values["name"] = " ".join(str(part) for part in (values["firstName"], values["lastName"]) if part) or None
        if values.get("opportunityAmount") is not None:
            values["opportunityAmount"] = float(values["opportunityAmount"])
            values["opportunityAmountCurrency"] = values.get("opportunityAmountCurrency") or "USD"
        values["opportunityAmountConverted"] = values.get("opportunityAmount")
        if isinstance(values.get("teamsIds"), list):
            values["teamsNames"] = {str(team): values["teamsNames"].get(team) for team in values["teamsIds"]}

    @staticmethod
    def _set_contacts(values: dict[str, Any], data: Mapping[str, Any], kind: str) -> None:
        """``phoneNumberData`` replaces the list; ``phoneNumber`` replaces the primary entry."""
        data_key = f"{kind}Data"
        entries: list[dict[str, Any]] = values[data_key]
        if isinstance(data.get(data_key), list):
            entries = [
                _contact_entry(kind, item[kind], item)
                for item in data[data_key]
                if isinstance(item, dict) and item.get(kind)
            ]
            primaries = [index for index, item in enumerate(entries) if item["primary"]]
            chosen = primaries[0] if primaries else 0
            for index, item in enumerate(entries):
                item["primary"] = index == chosen
        elif kind in data:
            new = data[kind]
            secondaries = [item for item in entries if not item["primary"]]
            if new:
                secondaries = [item for item in secondaries if _fold(item[kind]) != _fold(new)]
                entries = [_contact_entry(kind, new, {"primary": True}), *secondaries]
            else:
                entries = secondaries
        values[data_key] = sorted(entries, key=lambda item: not item["primary"])

    def _add_note(self, parent_id: str | None, note_type: str, **fields: Any) -> dict[str, Any]:
        self._state.note_number += 1
        moment = _timestamp(_now())
        parent = self._state.leads.get(parent_id) if parent_id else None
        note: dict[str, Any] = {key: None for keys in self._t.stream_keys.values() for key in keys}
        note.update(
            id=secrets.token_hex(9)[:17],
            deleted=False,
            post=None,
            data={},
            type=note_type,
            number=self._state.note_number,
            isGlobal=False,
            isInternal=False,
            isPinned=False,
            createdAt=moment,
            modifiedAt=moment,
            parentId=parent_id,
            parentType="Lead" if parent_id and parent else None,
            parentName=parent.values["name"] if parent else None,
            relatedName=None,
            createdById=self._t.api_user_id,
            createdByName=self._t.api_user_name,
        )
        note.update(fields)
        self._state.notes.append(note)
        return note

    # --- views ---------------------------------------------------------------------------------

    def _attribute(self, lead: _Lead, attribute: str) -> Any:
        if _CUSTOM_NAME.match(attribute) and attribute not in self._custom:
            return None
        return lead.values.get(attribute)

    def _ordered(self, keys: Iterable[str]) -> list[str]:
        """Template key order with the install's custom attributes where the recorded one was."""
        ordered: list[str] = []
        for key in keys:
            if key == self._t.custom_slot:
                ordered.extend(self._custom)
            elif not _CUSTOM_NAME.match(key):
                ordered.append(key)
        return ordered

    def _full_view(self, lead: _Lead) -> dict[str, Any]:
        """``GET Lead/{id}``: every attribute, nulls included (fixture 03/39); a custom file field's
        file names too, as a moved record's (``cXName``, ``cXNames``)."""
        view = {key: copy.deepcopy(self._attribute(lead, key)) for key in self._ordered(self._t.full_keys)}
        for attribute in self._custom:
            held = view.get(attribute)
            if attribute.endswith("Ids") and isinstance(held, list):
                view[f"{attribute.removesuffix('Ids')}Names"] = self.moved.file_names(held)
            elif attribute.endswith("Id") and isinstance(held, str) and held in self.moved.files:
                view[f"{attribute.removesuffix('Id')}Name"] = self.moved.files[held].name
        return view

    def _list_view(self, lead: _Lead) -> dict[str, Any]:
        """A record as a list or a 409 carries it: no multi-value data or follower keys (fixture 15)."""
        full = self._full_view(lead)
        return {key: value for key, value in full.items() if key not in self._t.list_excluded}

    def _select_view(self, lead: _Lead, wanted: set[str]) -> dict[str, Any]:
        full = self._full_view(lead)
        return {key: value for key, value in full.items() if key in wanted}

    def _create_view(self, lead: _Lead, sent: set[str]) -> dict[str, Any]:
        """A create answers the attributes that were set plus the generated ones (fixtures 02/21/36)."""
        present = set(self._t.create_always) | sent
        if sent & {"phoneNumber", "phoneNumberData"}:
            present.add("phoneNumber")
        if sent & {"emailAddress", "emailAddressData"}:
            present.add("emailAddress")
        view: dict[str, Any] = {}
        for key in self._ordered(self._t.create_keys):
            if key not in present:
                continue
            if key in self._t.create_extra:
                view[key] = copy.deepcopy(self._t.create_extra[key])
            else:
                view[key] = copy.deepcopy(lead.values.get(key))
        return view


def _failed_contact_check(kind: str, data: Mapping[str, Any]) -> str | None:
    """Phone: every number exact E.164 (type ``valid``); e-mail: every address passes PHP's
    filter (``emailAddress``), then none is longer than 255 (``maxLength``)."""
    values = [data.get(kind)]
    if isinstance(data.get(f"{kind}Data"), list):
        values += [item.get(kind) for item in data[f"{kind}Data"] if isinstance(item, dict)]
    given = [value for value in values if value not in (None, "")]
    if kind == "phoneNumber":
        return "valid" if any(not _valid_phone(value) for value in given) else None
    if not all(php_validates_email(value) for value in given):
        return "emailAddress"
    return "maxLength" if any(len(value) > _EMAIL_MAX_LENGTH for value in given) else None


def _contact_entry(kind: str, value: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """One ``phoneNumberData`` / ``emailAddressData`` entry in the recorded shape."""
    text = str(value)
    if kind == "phoneNumber":
        return {
            "phoneNumber": text,
            "type": item.get("type") or "Mobile",
            "primary": bool(item.get("primary", False)),
            "optOut": bool(item.get("optOut", False)),
            "invalid": bool(item.get("invalid", False)),
        }
    return {
        "emailAddress": text,
        "lower": text.lower(),
        "primary": bool(item.get("primary", False)),
        "optOut": bool(item.get("optOut", False)),
        "invalid": bool(item.get("invalid", False)),
    }
