"""A stateful, simulated Bitrix24 REST API (inbound webhook), as a respx router.

Why: the Bitrix24 provider has to cope with quirks a hand-written mock would smooth over
(``[]`` versus ``{"LEAD": [...]}``, multifield items appended on update, legacy errors with an
empty code, rate limits that answer 503/429). This simulator answers the way the real portal
does, so that tests written against it exercise those quirks.

Sources (named next to every envelope below):
* "research §N" is ``/work/shared/research/bitrix24-api.md``;
* "DOCS: path" is the official docs repository ``bitrix24/b24restdocs`` (page
  ``https://apidocs.bitrix24.com/<path>.html``);
* "restservice.php" is Bitrix's own ``crm/classes/general/restservice.php`` (an older copy, stored
  in the code index): the legacy ``crm.lead.*`` / ``crm.duplicate.*`` handlers.

Usage::

    with SimulatedBitrix24() as sim:
        httpx.post(sim.webhook_url + "crm.lead.add.json", json={"fields": {"NAME": "Ada"}})
        assert sim.leads()[0]["NAME"] == "Ada"
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, NamedTuple

import httpx
import respx

from tests.simulators.base import Failure, SeededClosedLead

DEFAULT_USER_FIELDS: tuple[str, ...] = (
    "UF_CRM_REFERRAL_CODE",
    "UF_CRM_USER_TYPE",
    "UF_CRM_PREFERRED_LANGUAGE",
    "UF_CRM_PROGRAM",
    "UF_CRM_UNIVERSITY",
    "UF_CRM_CONSENT",
    "UF_CRM_GCLID",
    "UF_CRM_FBCLID",
    "UF_CRM_LANDING_PAGE",
    "UF_CRM_FIRST_REFERRAL_CODE",
    "UF_CRM_FIRST_UTM_SOURCE",
    "UF_CRM_FIRST_UTM_MEDIUM",
    "UF_CRM_FIRST_UTM_CAMPAIGN",
    "UF_CRM_FIRST_TOUCH_AT",
    "UF_CRM_CONSENT_VERSION",
    "UF_CRM_CONSENT_AT",
    "UF_CRM_VISITOR_SESSION_ID",
    "UF_CRM_MESSENGER_CHANNEL",
    "UF_CRM_SOURCE_RECORD",
    "UF_CRM_SOURCE_CREATED_AT",
)
# User fields of type "boolean": written and read as Y/N (research §9).
BOOLEAN_USER_FIELDS = frozenset({"UF_CRM_CONSENT"})
_USER_FIELD_LABELS = {
    "UF_CRM_REFERRAL_CODE": "Referral code",
    "UF_CRM_USER_TYPE": "User type",
    "UF_CRM_PREFERRED_LANGUAGE": "Preferred language",
    "UF_CRM_PROGRAM": "Program",
    "UF_CRM_UNIVERSITY": "University",
    "UF_CRM_CONSENT": "Consent",
    "UF_CRM_GCLID": "Google click id",
    "UF_CRM_FBCLID": "Facebook click id",
    "UF_CRM_LANDING_PAGE": "Landing page",
    "UF_CRM_FIRST_REFERRAL_CODE": "First touch: referral code",
    "UF_CRM_FIRST_UTM_SOURCE": "First touch: UTM source",
    "UF_CRM_FIRST_UTM_MEDIUM": "First touch: UTM medium",
    "UF_CRM_FIRST_UTM_CAMPAIGN": "First touch: UTM campaign",
    "UF_CRM_FIRST_TOUCH_AT": "First touch: time",
    "UF_CRM_CONSENT_VERSION": "Privacy notice version",
    "UF_CRM_CONSENT_AT": "Privacy consent given at",
    "UF_CRM_VISITOR_SESSION_ID": "Visitor session id",
    "UF_CRM_MESSENGER_CHANNEL": "Messenger channel",
    "UF_CRM_SOURCE_RECORD": "Copied from",
    "UF_CRM_SOURCE_CREATED_AT": "Created there on",
}

DEFAULT_TOKEN = "s3cr3tw3bh00kt0k3n"
FIRST_LEAD_ID = 101
FIRST_MULTIFIELD_ID = 1001
FIRST_COMMENT_ID = 1
PAGE_SIZE = 50  # "The page size of results is always static: 50 records" (DOCS: crm-lead-list)
FINDBYCOMM_MAX_VALUES = 20  # "Maximum number of values — 20" (DOCS: crm-duplicate-find-by-comm)
CRM_MODE_CLASSIC = 1  # crm.settings.mode.get (research §2): classic, with leads
CRM_MODE_SIMPLE = 2  # simple: no leads, a new lead is converted into a deal at once
FINDBYCOMM_MAX_PER_VALUE = 20  # restservice.php: $criterion->find($entityTypeID, 20)
_PORTAL_TZ = timezone(timedelta(hours=3))
_OPERATING_WINDOW_SECONDS = 600  # "10 one-minute baskets" (DOCS: limits.md)
# The leaky bucket of non-Enterprise plans: "the counter value automatically decreases by Y once per
# second", and over the threshold X a request is blocked with 503 QUERY_LIMIT_EXCEEDED; Y=2, X=50
# (DOCS: limits.md, research §6). "A batch counts as one HTTP request."
RATE_PER_SECOND = 2.0
BURST = 50


class LeakyBucket:
    """Bitrix24's limit (research §6): a counter that each request (a ``batch`` too) raises by one
    and that drains by ``rate`` per second; a request that would take it past ``capacity`` is
    refused and counts nothing. Thread-safe (the bench's loopback portal serves threads)."""

    def __init__(
        self, rate: float = RATE_PER_SECOND, capacity: int = BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """An empty counter, as a portal nobody has called for a while."""
        with self._lock:
            self._level = 0.0
            self._last = self._clock()

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            self._level = max(0.0, self._level - (now - self._last) * self.rate)
            self._last = now
            if self._level + 1 > self.capacity:
                return False
            self._level += 1
            return True


BATCH_MAX_COMMANDS = 50  # "The number of requests in a batch is limited to 50" (DOCS: batch)
_REFERENCE = re.compile(r"^\$result\[([^\]]+)\]((?:\[[^\]]*\])*)$")

# The multifield types of a lead (DOCS: crm-lead-fields: PHONE, EMAIL, WEB, IM, LINK).
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM", "LINK")
# Native scalar fields in the order crm.lead.get returns them (DOCS: crm-lead-get, response example).
_RECORD_FIELDS = (
    "ID",
    "TITLE",
    "HONORIFIC",
    "NAME",
    "SECOND_NAME",
    "LAST_NAME",
    "COMPANY_TITLE",
    "COMPANY_ID",
    "CONTACT_ID",
    "IS_RETURN_CUSTOMER",
    "BIRTHDATE",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "STATUS_ID",
    "STATUS_DESCRIPTION",
    "POST",
    "COMMENTS",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "IS_MANUAL_OPPORTUNITY",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "ASSIGNED_BY_ID",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "DATE_CLOSED",
    "STATUS_SEMANTIC_ID",
    "OPENED",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_ACTIVITY_BY",
    "LAST_ACTIVITY_TIME",
)
# Native field descriptors: name -> (type, isReadOnly, title, extra keys). DOCS: crm-lead-fields.
_NATIVE_DESCRIPTORS: dict[str, tuple[str, bool, str, dict[str, Any]]] = {
    "ID": ("integer", True, "ID", {}),
    "TITLE": ("string", False, "Lead Title", {}),
    "HONORIFIC": ("crm_status", False, "Salutation", {"statusType": "HONORIFIC"}),
    "NAME": ("string", False, "First Name", {}),
    "SECOND_NAME": ("string", False, "Middle Name", {}),
    "LAST_NAME": ("string", False, "Last Name", {}),
    "BIRTHDATE": ("date", False, "Birthdate", {}),
    "COMPANY_TITLE": ("string", False, "Company Name", {}),
    "SOURCE_ID": ("crm_status", False, "Source", {"statusType": "SOURCE"}),
    "SOURCE_DESCRIPTION": ("string", False, "Additional Source Information", {}),
    "STATUS_ID": ("crm_status", False, "Stage", {"statusType": "STATUS"}),
    "STATUS_DESCRIPTION": ("string", False, "Additional Stage Information", {}),
    "STATUS_SEMANTIC_ID": ("string", True, "Status Semantic", {}),
    "POST": ("string", False, "Position", {}),
    "ADDRESS": ("string", False, "Address", {}),
    "ADDRESS_2": ("string", False, "Address (Line 2)", {}),
    "ADDRESS_CITY": ("string", False, "City", {}),
    "ADDRESS_POSTAL_CODE": ("string", False, "Postal Code", {}),
    "ADDRESS_REGION": ("string", False, "Region", {}),
    "ADDRESS_PROVINCE": ("string", False, "Province", {}),
    "ADDRESS_COUNTRY": ("string", False, "Country", {}),
    "ADDRESS_COUNTRY_CODE": ("string", False, "Country Code", {}),
    "ADDRESS_LOC_ADDR_ID": ("integer", False, "Location Address ID", {}),
    "CURRENCY_ID": ("crm_currency", False, "Currency", {}),
    "OPPORTUNITY": ("double", False, "Amount", {}),
    "IS_MANUAL_OPPORTUNITY": ("char", False, "IS_MANUAL_OPPORTUNITY", {}),
    "OPENED": ("char", False, "Available to All", {}),
    "COMMENTS": ("string", False, "Comment", {}),
    "HAS_PHONE": ("char", True, "Phone Provided", {}),
    "HAS_EMAIL": ("char", True, "E-mail Provided", {}),
    "HAS_IMOL": ("char", True, "Open Channel Set", {}),
    "ASSIGNED_BY_ID": ("user", False, "Responsible User", {}),
    "CREATED_BY_ID": ("user", True, "Created By", {}),
    "MODIFY_BY_ID": ("user", True, "Modified By", {}),
    "MOVED_BY_ID": ("user", True, "MOVED_BY_ID", {}),
    "DATE_CREATE": ("datetime", True, "Creation Date", {}),
    "DATE_MODIFY": ("datetime", True, "Modification Date", {}),
    "MOVED_TIME": ("datetime", True, "MOVED_TIME", {}),
    "COMPANY_ID": ("crm_company", False, "Company", {"settings": {"parentEntityTypeId": 4}}),
    "CONTACT_ID": ("crm_contact", False, "Contact", {"isDeprecated": True}),
    "CONTACT_IDS": ("crm_contact", False, "CONTACT_IDS", {"isMultiple": True}),
    "IS_RETURN_CUSTOMER": ("char", True, "Returning Lead", {}),
    "DATE_CLOSED": ("datetime", True, "Closing Date", {}),
    "ORIGINATOR_ID": ("string", False, "External Source ID", {}),
    "ORIGIN_ID": ("string", False, "Element ID in External Source", {}),
    "UTM_SOURCE": ("string", False, "Advertising System", {}),
    "UTM_MEDIUM": ("string", False, "Traffic Type", {}),
    "UTM_CAMPAIGN": ("string", False, "Campaign Identifier", {}),
    "UTM_CONTENT": ("string", False, "Campaign Content", {}),
    "UTM_TERM": ("string", False, "Campaign Search Condition", {}),
    "LAST_ACTIVITY_TIME": ("datetime", True, "LAST_ACTIVITY_TIME", {}),
    "LAST_ACTIVITY_BY": ("user", True, "LAST_ACTIVITY_BY", {}),
    "PHONE": ("crm_multifield", False, "Phone", {"isMultiple": True}),
    "EMAIL": ("crm_multifield", False, "E-mail", {"isMultiple": True}),
    "WEB": ("crm_multifield", False, "Website", {"isMultiple": True}),
    "IM": ("crm_multifield", False, "Messenger", {"isMultiple": True}),
    "LINK": ("crm_multifield", False, "LINK", {"isMultiple": True}),
}
# Scalar fields a write may set. Read-only ones are dropped silently, like unknown ones
# (restservice.php internalizeFields: unset($fields[$k]) for unknown, Hidden and ReadOnly fields).
_WRITABLE_FIELDS = frozenset(
    name
    for name, (kind, read_only, _, extra) in _NATIVE_DESCRIPTORS.items()
    if not read_only and kind != "crm_multifield" and name in _RECORD_FIELDS and not extra.get("isMultiple")
)
# Loose check in the spirit of Bitrix's check_email(): local part, "@", dotted domain, 2+ letter TLD.
_EMAIL = re.compile(r"^[^@\s\"<>,;]+@(?:[-0-9a-z_]+\.)+[a-z0-9-]{2,20}$", re.IGNORECASE)
_FILTER_KEY = re.compile(r"^(>=|<=|!@|!%=|!%|!=|=%|%=|>|<|@|%|=|!)?(.+)$")
_ERROR_METHOD_NOT_FOUND = "Method not found!"
# {portal}/rest/{user_id}/{secret}/{method}[.json]; ".json" may be omitted (research §1).
_WEBHOOK_PATH = re.compile(r"/rest/(?P<user>[^/]+)/(?P<token>[^/]+)/(?P<method>[^/]+?)(?:\.json)?/?")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_ANONYMOUS_PATH = re.compile(r"/rest/(?P<method>[^/]+?)(?:\.json)?/?")


class _ApiError(Exception):
    """An error envelope ``{"error", "error_description"}`` with its HTTP status."""

    def __init__(self, status: int, code: str | int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description

    def response(self) -> httpx.Response:
        return _json_response(self.status, {"error": self.code, "error_description": self.description})


def _legacy(description: str) -> _ApiError:
    """A legacy CRM ``RestException``: empty code, HTTP 400.

    Source: research §5; DOCS: crm-lead-get / crm-lead-update error examples
    (``{"error": "", "error_description": "Not found"}``); restservice.php (``new RestException($msg)``).
    """
    return _ApiError(400, "", description)


def _json_response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )


def _php_intval(value: Any) -> int:
    """PHP ``intval``: how restservice.php's ``resolveEntityID`` reads ``id``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    return 0


def _php_string(value: Any) -> str | None:
    """How a scalar sent as JSON comes back from Bitrix's database: as a string ("1", not 1)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, dict | list):
        return "Array"
    return str(value)


def _yes_no(value: Any) -> str | None:
    """A boolean user field stored as Y/N whatever form it was sent in (Y/N, 1/0, true/false)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().upper()
        if text in ("", "N", "0", "FALSE"):
            return "N"
        return "Y"
    return "Y" if value else "N"


def _resolve_array_param(params: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``CCrmRestHelper::resolveArrayParam``: FIELDS, fields, Fields or arFields (restservice.php)."""
    upper, lower = name.upper(), name.lower()
    for key in (upper, lower, lower.capitalize(), f"ar{lower.capitalize()}"):
        if params.get(key) is not None:
            return params[key]
    return default


def _resolve_param(params: Mapping[str, Any], name: str) -> Any:
    """``CCrmRestHelper::resolveParam``: type, TYPE or Type (restservice.php)."""
    lower = name.lower()
    for key in (lower, name.upper(), lower.capitalize()):
        if params.get(key) is not None:
            return params[key]
    return ""


def _resolve_entity_id(params: Mapping[str, Any]) -> int:
    """``resolveEntityID``: ``ID`` wins over ``id``; anything not a positive integer is 0 (restservice.php)."""
    if params.get("ID") is not None:
        return _php_intval(params["ID"])
    if params.get("id") is not None:
        return _php_intval(params["id"])
    return 0


def _now_iso(moment: float | None = None) -> str:
    """Bitrix datetimes: ISO 8601 with the portal's offset, e.g. ``2024-05-23T18:18:25+02:00``."""
    stamp = time.time() if moment is None else moment
    return datetime.fromtimestamp(stamp, _PORTAL_TZ).isoformat(timespec="seconds")


@dataclass
class _Lead:
    id: int
    values: dict[str, Any]  # native scalars and user fields, as stored (strings or None)
    multifields: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # TYPE -> [{ID, ...}]
    comments: list[_Comment] = field(default_factory=list)


class _Comment(NamedTuple):
    id: int
    text: str
    created: str
    """ISO 8601 with the portal's offset, as ``CREATED`` reads (DOCS: crm-timeline-comment-list)."""
    author_id: str | None = None
    """Who wrote it (``AUTHOR_ID``); None: the webhook's user, who writes through the API."""
    file_ids: tuple[int, ...] = ()
    """Files attached to it (``FILES``), kept in :attr:`SimulatedBitrix24.entities`."""


@dataclass(frozen=True)
class _PlannedFailure:
    failure: Failure
    after_processing: bool


# Failures whose request may have run: only these make sense "after processing" (research §0, §6).
_AMBIGUOUS_FAILURES = frozenset({Failure.SERVER_ERROR, Failure.MAINTENANCE, Failure.TIMEOUT})


class SimulatedBitrix24:
    """A Bitrix24 portal with one inbound webhook, answering ``crm.*`` calls from memory.

    Satisfies :class:`tests.simulators.base.SimulatedCrm`. Requests to any other host are not
    mocked: respx raises ``AllMockedAssertionError``, so an accidental real call fails loudly.
    """

    provider_name = "bitrix24"

    def __init__(
        self,
        portal: str = "https://agency.bitrix24.test",
        user_id: int = 1,
        token: str = DEFAULT_TOKEN,
        user_fields: Iterable[str] = DEFAULT_USER_FIELDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_per_second: float | None = RATE_PER_SECOND,
        burst: int = BURST,
    ) -> None:
        """``clock`` drives the leaky bucket (tests inject one that they advance instead of
        sleeping); ``rate_per_second=None`` turns the limit off."""
        self.portal = portal.rstrip("/")
        self.user_id = user_id
        self.token = token
        self.webhook_url = f"{self.portal}/rest/{user_id}/{token}/"
        self.user_fields: list[str] = list(dict.fromkeys(user_fields))
        self.method_calls: list[tuple[str, dict[str, Any]]] = []
        """Every HTTP request (a ``batch`` once, its sub-calls in :attr:`batched_calls`)."""
        self.batched_calls: list[tuple[str, dict[str, Any]]] = []
        self.rate_limited = 0
        """Requests the leaky bucket refused (503 QUERY_LIMIT_EXCEEDED)."""
        self.limit = LeakyBucket(rate_per_second, burst, clock) if rate_per_second is not None else None
        self._leads: dict[int, _Lead] = {}
        self._next_lead_id = FIRST_LEAD_ID
        self._next_multifield_id = FIRST_MULTIFIELD_ID
        self._next_comment_id = FIRST_COMMENT_ID
        self._failures: list[_PlannedFailure] = []
        self._rejected: set[str] = set()
        self.crm_mode = CRM_MODE_CLASSIC
        """``crm.settings.mode.get``: 1 classic (leads), 2 simple (no leads: a lead becomes a deal)."""
        self._methods: dict[str, Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]] = {
            "crm.duplicate.findbycomm": self._findbycomm,
            "crm.lead.add": self._lead_add,
            "crm.lead.update": self._lead_update,
            "crm.lead.get": self._lead_get,
            "crm.lead.list": self._lead_list,
            "crm.lead.fields": self._lead_fields,
            "crm.timeline.comment.add": self._timeline_comment_add,
            "crm.timeline.comment.list": self._timeline_comment_list,
            "crm.settings.mode.get": self._settings_mode_get,
        }
        self._methods["batch"] = self._batch
        from tests.simulators.bitrix24_portal import PortalEntities  # it builds on this module's helpers

        self.entities = PortalEntities(self)
        """The rest of a real portal: contacts, companies, deals, activities, users, statuses, files."""
        self._methods |= self.entities.methods()

        url = httpx.URL(self.portal)
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        pattern: dict[str, Any] = {"scheme": url.scheme, "host": url.host}
        if url.port is not None:
            pattern["port"] = url.port
        self.router.route(**pattern).mock(side_effect=self._handle)

    # --- context manager -------------------------------------------------------------------------

    def __enter__(self) -> SimulatedBitrix24:
        self.router.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.router.stop(quiet=exc_type is not None)

    # --- fault injection (SimulatedCrm) ----------------------------------------------------------

    def fail_next(self, failure: Failure, times: int = 1, *, after_processing: bool = False) -> None:
        """Answer the next ``times`` requests with ``failure``, replacing any failures still pending.

        ``after_processing=True`` (SERVER_ERROR, MAINTENANCE, TIMEOUT only) runs the request first and
        then fails, the ambiguous case where e.g. a lead was created but the client never heard
        (research §0: "After a 5xx or a timeout on crm.lead.add, the lead may already exist").
        """
        if after_processing and failure not in _AMBIGUOUS_FAILURES:
            raise ValueError(f"{failure} proves the request never ran; it cannot come after processing")
        self._failures = [_PlannedFailure(failure, after_processing) for _ in range(times)]

    def reject_attribute(self, attribute: str) -> None:
        """Make any add/update carrying ``attribute`` fail with ERROR_CORE (a validation error)."""
        self._rejected.add(attribute)

    def drop_attribute(self, attribute: str) -> None:
        """Delete a user field: writes ignore it, crm.lead.fields/get/list omit it.

        Dropping a field the portal already lacks does nothing; a native field cannot be dropped.
        """
        if attribute in _NATIVE_DESCRIPTORS:
            raise ValueError(f"{attribute} is a native lead field: every Bitrix24 portal has it")
        if attribute in self.user_fields:
            self.user_fields.remove(attribute)

    # --- backdoor (SimulatedCrm) ---------------------------------------------------------------------

    def seed_lead(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        comments: Iterable[tuple[str, datetime]] = (),
    ) -> str:
        """Store a lead directly, without validation; return its id as a string. ``created_at``
        backdates it (its DATE_CREATE and DATE_MODIFY); ``comments`` (text, when) go on its timeline,
        as salespeople wrote them over time."""
        fields: dict[str, Any] = {}
        if first_name is not None:
            fields["NAME"] = first_name
        if last_name is not None:
            fields["LAST_NAME"] = last_name
        if phone is not None:
            fields["PHONE"] = [{"VALUE": phone, "VALUE_TYPE": "WORK"}]
        if email is not None:
            fields["EMAIL"] = [{"VALUE": email, "VALUE_TYPE": "WORK"}]
        for name, value in (attributes or {}).items():
            if name not in _WRITABLE_FIELDS and name not in self.user_fields and name not in MULTIFIELDS:
                raise ValueError(f"{name} is neither a writable lead field nor a user field of this portal")
            fields[name] = value
        lead_id = self._create(self._internalize(fields))
        lead = self._leads[lead_id]
        if created_at is not None:
            moment = _now_iso(created_at.timestamp())
            lead.values.update(DATE_CREATE=moment, DATE_MODIFY=moment, MOVED_TIME=moment, LAST_ACTIVITY_TIME=moment)
        for text, written_at in comments:
            lead.comments.append(_Comment(self.next_comment_id(), text, _now_iso(written_at.timestamp())))
        return str(lead_id)

    def seed_closed_lead(self, *, phone: str, email: str | None = None, converted: bool = True) -> SeededClosedLead:
        """A converted lead is linked to the contact and company its conversion created."""
        status = {"STATUS_ID": "CONVERTED" if converted else "JUNK"}
        lead_id = self.seed_lead(phone=phone, email=email, attributes=status)
        if not converted:
            return SeededClosedLead(lead_id)
        contact_id, company_id = str(1000 + int(lead_id)), str(2000 + int(lead_id))
        self._apply(self._stored(lead_id), {"CONTACT_ID": contact_id, "COMPANY_ID": company_id})
        return SeededClosedLead(lead_id, contact_id, company_id)

    def store_lead(
        self,
        values: Mapping[str, Any],
        multifields: Mapping[str, Iterable[tuple[str, str]]] | None = None,
        comments: Iterable[tuple[str, datetime, str | None, tuple[int, ...]]] = (),
    ) -> str:
        """Store a lead as the portal holds it, values already in their stored form (a list field's
        option ids, a file field's objects: what :meth:`seed_lead`'s write path would flatten);
        ``multifields``: kind -> (value, value type); ``comments``: (text, when, author id, file ids).
        ``DATE_CREATE`` is ``values``' or now."""
        lead_id = self._create({})
        lead = self._leads[lead_id]
        lead.values.update(values)
        for kind, items in (multifields or {}).items():
            lead.multifields[kind] = [self.multifield_item(value, value_type) for value, value_type in items]
        self._apply(lead, {})
        for text, written_at, author_id, file_ids in comments:
            moment = _now_iso(written_at.timestamp())
            lead.comments.append(_Comment(self.next_comment_id(), text, moment, author_id, file_ids))
        return str(lead_id)

    def multifield_item(self, value: str, value_type: str) -> dict[str, str]:
        """A new multi-field value: its ``ID`` is portal-wide, whatever record holds it."""
        self._next_multifield_id += 1
        return {"ID": str(self._next_multifield_id - 1), "VALUE_TYPE": value_type, "VALUE": value}

    def store_values(self, lead_id: str, values: Mapping[str, Any]) -> None:
        """Set a lead's values as they are stored, without the write path (a seed's file user field
        names the lead it belongs to, so it comes after :meth:`store_lead`)."""
        self._stored(lead_id).values.update(values)

    def next_comment_id(self) -> int:
        """Timeline comments of every entity share one sequence of ids."""
        self._next_comment_id += 1
        return self._next_comment_id - 1

    def leads(self) -> list[dict[str, Any]]:
        """Every lead as crm.lead.get returns it, oldest first."""
        return [self._record(lead) for lead in sorted(self._leads.values(), key=lambda lead: lead.id)]

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self._record(self._stored(lead_id))

    def lead_phones(self, lead_id: str) -> list[str]:
        return [item["VALUE"] for item in self._stored(lead_id).multifields.get("PHONE", [])]

    def lead_emails(self, lead_id: str) -> list[str]:
        return [item["VALUE"] for item in self._stored(lead_id).multifields.get("EMAIL", [])]

    @property
    def requests(self) -> int:
        """HTTP requests received, refused ones included: what the portal's budget counts."""
        return len(self.method_calls)

    def reset_counts(self) -> None:
        """Forget the requests seen so far (not the bucket's level): count one operation's."""
        self.method_calls.clear()
        self.batched_calls.clear()
        self.rate_limited = 0

    def timeline(self, lead_id: str) -> list[str]:
        return [comment.text for comment in self._stored(lead_id).comments]

    def delete_lead(self, lead_id: str) -> None:
        del self._leads[int(lead_id)]

    def _stored(self, lead_id: str) -> _Lead:
        try:
            return self._leads[int(lead_id)]
        except (KeyError, ValueError):
            raise KeyError(f"no lead {lead_id!r} in the simulated portal") from None

    # --- HTTP ------------------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        """Route one request: injected failure, then authentication, then the method.

        Every request is logged in :attr:`method_calls`, failed ones included (a retry shows twice).
        """
        path = request.url.path
        download = self.entities.serve_file(request)
        if download is not None:  # a file link is not a REST call: no method, no leaky bucket
            return download
        webhook = _WEBHOOK_PATH.fullmatch(path)
        anonymous = _ANONYMOUS_PATH.fullmatch(path)
        found = webhook or anonymous
        method = found.group("method").lower() if found else path
        params = self._decode(request)
        self.method_calls.append((method, params))
        if self.limit is not None and not self.limit.admit():
            self.rate_limited += 1
            return self._failure_response(Failure.RATE_LIMITED, request)

        planned = self._failures.pop(0) if self._failures else None
        if planned and not planned.after_processing:
            return self._failure_response(planned.failure, request)
        response = self._answer(request, webhook, method, params)
        if planned:
            return self._failure_response(planned.failure, request)
        return response

    def _answer(
        self, request: httpx.Request, webhook: re.Match[str] | None, method: str, params: dict[str, Any]
    ) -> httpx.Response:
        if webhook is None:
            if request.url.path.startswith("/rest/"):
                # No webhook code in the URL: 401 NO_AUTH_FOUND (DOCS: _includes/system-errors).
                return _ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data").response()
            return httpx.Response(404, text="Not Found", headers={"Content-Type": "text/html"})
        if webhook.group("user") != str(self.user_id) or webhook.group("token") != self.token:
            # Wrong user id or secret: 401 NO_AUTH_FOUND "Wrong authorization data" (research §5).
            return _ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data").response()
        handler = self._methods.get(method)
        if handler is None:
            # 404 ERROR_METHOD_NOT_FOUND "Method not found!" (DOCS: _includes/system-errors).
            return _ApiError(404, "ERROR_METHOD_NOT_FOUND", _ERROR_METHOD_NOT_FOUND).response()
        try:
            result, extra = handler(params)
        except _ApiError as error:
            return error.response()
        # Success envelope: {"result", ["next", "total",] "time"} (DOCS: crm-lead-add, crm-lead-list).
        return _json_response(200, {"result": result, **extra, "time": self._time()})

    # --- batch -------------------------------------------------------------------------------------

    def _batch(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """``batch``: sub-calls written as query strings, run in order, ``$result[key][...]`` replaced
        by an earlier answer; HTTP 200 whatever they answer (DOCS: settings/how-to-call-rest-api/batch).

        Not documented, assumed: a reference to an answer that does not exist (an earlier sub-call
        failed, or has no such element) is replaced by an empty string, so the sub-call fails."""
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(index): command for index, command in enumerate(commands)}
        if not isinstance(commands, dict):
            raise _legacy("Parameter 'cmd' must be array.")
        if len(commands) > BATCH_MAX_COMMANDS:
            raise _ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", 0)).lower() in ("1", "true", "y")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        nexts: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, command in commands.items():
            method, _, query = str(command).partition("?")
            method = method.strip().lower().removesuffix(".json")
            sub_params = _resolve_references(php_parse_str(query), results)
            self.batched_calls.append((method, sub_params))
            handler = self._methods.get(method)
            try:
                if method == "batch":
                    raise _ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                if handler is None:
                    raise _ApiError(404, "ERROR_METHOD_NOT_FOUND", _ERROR_METHOD_NOT_FOUND)
                result, extra = handler(sub_params)
            except _ApiError as error:
                errors[key] = {"error": error.code, "error_description": error.description}
                if halt:
                    break
                continue
            results[key] = result
            if "total" in extra:
                totals[key] = extra["total"]
            if "next" in extra:
                nexts[key] = extra["next"]
            times[key] = self._time()
        # PHP's empty arrays are [] in JSON (DOCS: batch, "result_error": []).
        return {
            "result": results or [],
            "result_error": errors or [],
            "result_total": totals or [],
            "result_next": nexts or [],
            "result_time": times or [],
        }, {}

    @staticmethod
    def _decode(request: httpx.Request) -> dict[str, Any]:
        """Query parameters, overlaid by the JSON body of a POST.

        A GET keeps only its query string: a JSON body sent with GET is lost, as a user found with
        crm.duplicate.findbycomm (research §1, bitrix-tools/b24-rest-docs#223).
        """
        params: dict[str, Any] = dict(request.url.params.multi_items())
        if request.method == "GET" or not request.content:
            return params
        try:
            body = json.loads(request.content)
        except ValueError:
            # Form encoding is flattened here (fields[NAME]=... stays one key): tests send JSON.
            body = dict(httpx.QueryParams(request.content.decode(errors="replace")).multi_items())
        if isinstance(body, dict):
            params.update(body)
        return params

    def _time(self) -> dict[str, Any]:
        """The ``time`` block of every success (DOCS: crm-lead-add response; limits.md)."""
        start = time.time()
        duration = 0.0123
        return {
            "start": start,
            "finish": start + duration,
            "duration": duration,
            "processing": 0.0061,
            "date_start": _now_iso(start),
            "date_finish": _now_iso(start + duration),
            "operating_reset_at": int(start) + _OPERATING_WINDOW_SECONDS,
            "operating": 0,
        }

    @staticmethod
    def _failure_response(failure: Failure, request: httpx.Request) -> httpx.Response:
        """The answer (or transport error) for an injected failure; codes from research §5 tables."""
        match failure:
            case Failure.TIMEOUT:
                raise httpx.ReadTimeout("The read operation timed out", request=request)
            case Failure.CONNECTION_REFUSED:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            case Failure.SERVER_ERROR:
                # DOCS: _includes/system-errors: 500 INTERNAL_SERVER_ERROR "Internal server error".
                return _ApiError(500, "INTERNAL_SERVER_ERROR", "Internal server error").response()
            case Failure.MAINTENANCE:
                return _ApiError(503, "INTERNAL_SERVER_ERROR", "Internal server error").response()
            case Failure.UNAUTHORIZED:
                return _ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data").response()
            case Failure.FORBIDDEN:
                # research §5: 403 insufficient_scope; text from DOCS: _includes/system-errors.
                return _ApiError(
                    403,
                    "insufficient_scope",
                    "The request requires higher privileges than provided by the webhook token",
                ).response()
            case Failure.RATE_LIMITED:
                # DOCS: limits.md / _includes/system-errors: 503 QUERY_LIMIT_EXCEEDED "Too many requests".
                return _ApiError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests").response()
            case Failure.TIME_LIMITED:
                # DOCS: _includes/system-errors: 429 OPERATION_TIME_LIMIT. No source shows a `time`
                # block on this error, so none is sent (a client must not rely on operating_reset_at).
                return _ApiError(
                    429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit"
                ).response()
        raise AssertionError(f"unhandled failure {failure}")  # pragma: no cover

    # --- crm.duplicate.findbycomm ----------------------------------------------------------------------

    def _findbycomm(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Checks and limits as in restservice.php ``CCrmDuplicateRestProxy`` (research §3).

        More than 20 values is not an error: only the first 20 distinct non-empty strings are
        searched (restservice.php: ``if($qty >= 20) break;``).
        """
        kind = str(_resolve_param(params, "type")).upper()
        if kind not in ("EMAIL", "PHONE"):
            if kind == "":
                raise _legacy("Communication type is not defined.")
            raise _legacy(f"Communication type '{kind}' is not supported in current context.")
        values = _resolve_array_param(params, "values", [])
        if isinstance(values, dict):
            values = list(values.values())
        if not isinstance(values, list) or not values:  # a string is "not defined" too (research §3)
            raise _legacy("Communication values is not defined.")
        entity_type = ""
        for key in ("ENTITY_TYPE", "entity_type", "EntityType", "arEntityType"):
            if params.get(key) is not None:
                entity_type = str(params[key]).upper()
                break
        if entity_type == "DEAL":
            raise _legacy("Deal is not supported in current context.")
        search_leads = entity_type not in ("CONTACT", "COMPANY")

        criteria: list[str] = []
        for value in values:
            if not isinstance(value, str) or value == "":
                continue
            key = _communication_key(kind, value)
            if key in criteria:
                continue
            criteria.append(key)
            if len(criteria) >= FINDBYCOMM_MAX_VALUES:
                break
        found: list[int] = []
        if search_leads:
            for key in criteria:
                matches = [
                    lead.id
                    for lead in sorted(self._leads.values(), key=lambda lead: lead.id)
                    if any(_communication_key(kind, item["VALUE"]) == key for item in lead.multifields.get(kind, []))
                ]
                found.extend(lead_id for lead_id in matches[:FINDBYCOMM_MAX_PER_VALUE] if lead_id not in found)
        # Nothing found: `result` is an empty *array*, not an object (research §3); ids are ints.
        return ({"LEAD": found} if found else []), {}

    # --- crm.settings.mode.get ----------------------------------------------------------------------

    def _settings_mode_get(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The CRM mode as an int: 1 classic, 2 simple (research §2; DOCS: how-to-add-objects-with-crm-mode)."""
        return self.crm_mode, {}

    # --- crm.lead.* --------------------------------------------------------------------------------------

    def _fields_param(self, params: dict[str, Any]) -> dict[str, Any]:
        fields = _resolve_array_param(params, "fields", {})
        if not isinstance(fields, dict):
            # DOCS: crm-company-add error table (same legacy proxy): "Parameter 'fields' must be array."
            raise _legacy("Parameter 'fields' must be array.")
        extra = _resolve_array_param(params, "params", {})
        if not isinstance(extra, dict):
            raise _legacy("Parameter 'params' must be array.")
        return fields

    def _lead_add(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.lead.add: unknown fields ignored, validation, then ``result: <int id>`` (DOCS: crm-lead-add)."""
        clean = self._internalize(self._fields_param(params))
        self._validate(clean, existing=None)
        return self._create(clean), {}

    def _lead_update(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.lead.update: only the fields sent change; multifields by item ID (research §9)."""
        lead_id = _resolve_entity_id(params)
        if lead_id <= 0:
            raise _legacy("ID is not defined or invalid.")  # DOCS: crm-lead-update error example
        fields = self._fields_param(params)
        lead = self._leads.get(lead_id)
        if lead is None:
            raise _legacy("Not found")  # DOCS: crm-lead-update "Possible Errors"
        clean = self._internalize(fields)
        self._validate(clean, existing=lead)
        self._apply(lead, clean)
        lead.values["DATE_MODIFY"] = _now_iso()
        lead.values["MODIFY_BY_ID"] = str(self.user_id)
        return True, {}

    def _lead_get(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.lead.get: the record, ID as a string (DOCS: crm-lead-get)."""
        lead_id = _resolve_entity_id(params)
        if lead_id <= 0:
            raise _legacy("ID is not defined or invalid.")
        lead = self._leads.get(lead_id)
        if lead is None:
            raise _legacy("Not found")  # DOCS: crm-lead-get error example
        return self._record(lead), {}

    def _lead_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.lead.list: filter, order, select, 50 per page, ``next``/``total`` (DOCS: crm-lead-list)."""
        filters, order, select, start = list_params(params)
        rows = [lead for lead in self._leads.values() if self._matches(lead, filters)]
        page, extra = list_page(self._sorted(rows, order), start)
        return [self._record(lead, select) for lead in page], extra

    def _lead_fields(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.lead.fields: native descriptors, then the portal's user fields (DOCS: crm-lead-fields)."""
        result: dict[str, Any] = {}
        for name, (kind, read_only, title, extra) in _NATIVE_DESCRIPTORS.items():
            result[name] = native_descriptor(kind, read_only, title, extra)
        for name in self.user_fields:
            result[name] = self.entities.user_field_descriptor("lead", name) or _user_field_descriptor(name)
        return result, {}

    # --- crm.timeline.comment.add ------------------------------------------------------------------------

    def _timeline_comment_add(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.timeline.comment.add on a lead (DOCS: crm/timeline/comments/crm-timeline-comment-add).

        Only a lowercase ``fields`` key is read ("Other undocumented variants (Fields, FIELDS,
        arFields) are not accepted", research §4); a missing parameter is the engine's code 100.
        """
        if "fields" not in params or params["fields"] is None:
            raise _ApiError(400, 100, "Could not find value for parameter {fields}")
        fields = params["fields"]
        if not isinstance(fields, dict):
            raise _ApiError(
                400,
                100,
                f"Invalid value {fields} to match with parameter {{fields}}. Should be value of type array.",
            )
        entity_type = str(fields.get("ENTITY_TYPE") or "").upper()
        lead = self._leads.get(_php_intval(fields.get("ENTITY_ID"))) if entity_type == "LEAD" else None
        if lead is None:
            # "you must get the error «Owner was not found»" (bitrix24/b24restdocs#13, maintainer).
            raise _ApiError(400, "OWNER_NOT_FOUND", "Owner was not found.")
        comment = fields.get("COMMENT")
        if not isinstance(comment, str) or not comment.strip():
            raise _ApiError(400, "INVALID_ARG_VALUE", "Empty comment.")
        comment_id = self.next_comment_id()
        lead.comments.append(_Comment(comment_id, comment, _now_iso()))
        return comment_id, {}

    def _timeline_comment_list(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """crm.timeline.comment.list: the filter must name ENTITY_ID and ENTITY_TYPE; ``select``,
        ``order`` by ID, 50 per page with ``next``/``total`` (DOCS: crm/timeline/comment/
        crm_timeline_comment_list). Not documented, assumed: a missing filter field is a legacy
        error, and an entity without comments (or none at all) answers an empty list."""
        filters = _resolve_array_param(params, "filter", {})
        if not isinstance(filters, dict) or not filters.get("ENTITY_ID") or not filters.get("ENTITY_TYPE"):
            raise _legacy("ENTITY_ID and ENTITY_TYPE are required in the filter.")
        entity_type = str(filters["ENTITY_TYPE"]).lower()
        entity_id = _php_intval(filters["ENTITY_ID"])
        lead = self._leads.get(entity_id) if entity_type == "lead" else None
        comments = lead.comments if lead is not None else self.entities.comments_of(entity_type, entity_id)
        # "`%` — LIKE, substring search ... in any position" (DOCS: crm-timeline-comment-list);
        # MySQL's LIKE under the portal's default collation ignores case.
        needle = filters.get("%COMMENT")
        if needle is not None:
            comments = [comment for comment in comments if str(needle).lower() in comment.text.lower()]
        order = _resolve_array_param(params, "order", {})
        descending = isinstance(order, dict) and str(order.get("ID", "ASC")).upper() == "DESC"
        rows = sorted(comments, reverse=descending)
        select = _resolve_array_param(params, "select", [])
        wanted = {str(name) for name in (select.values() if isinstance(select, dict) else select or [])}
        start = max(_php_intval(params.get("start", 0)), 0)
        page = [
            {
                key: value
                for key, value in {
                    "ID": str(comment.id),
                    "CREATED": comment.created,
                    "ENTITY_ID": str(entity_id),
                    "ENTITY_TYPE": entity_type,
                    "AUTHOR_ID": comment.author_id or str(self.user_id),
                    "COMMENT": comment.text,
                    "FILES": self.entities.comment_files(comment) if comment.file_ids else None,
                }.items()
                if (not wanted or "*" in wanted or key in wanted) and value is not None
            }
            for comment in rows[start : start + PAGE_SIZE]
        ]
        extra: dict[str, Any] = {"next": start + PAGE_SIZE} if start + PAGE_SIZE < len(rows) else {}
        return page, extra | {"total": len(rows)}

    # --- storage ---------------------------------------------------------------------------------------

    def _internalize(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only fields the portal has and a write may set; the rest is ignored silently.

        "An incorrect field in fields will be ignored" (DOCS: crm-lead-update); restservice.php
        ``internalizeFields`` unsets unknown, hidden and read-only fields.
        """
        clean: dict[str, Any] = {}
        for name, value in fields.items():
            if name in MULTIFIELDS:
                items = list(value.values()) if isinstance(value, dict) else value
                if isinstance(items, list):
                    clean[name] = [item for item in items if isinstance(item, dict)]
            elif name in _WRITABLE_FIELDS or name in self.user_fields:
                clean[name] = value
        return clean

    def _validate(self, fields: Mapping[str, Any], *, existing: _Lead | None) -> None:
        """Validation errors of a write, checked before anything is stored."""
        for name in fields:
            if name in self._rejected:
                raise _ApiError(400, "ERROR_CORE", f"Field '{name}' has an invalid value")
        for item in fields.get("EMAIL", []):
            value = str(item.get("VALUE") or "")
            deleting = str(item.get("DELETE", "")).upper() == "Y" or (existing is not None and value == "")
            if value and not deleting and not _EMAIL.match(value.strip()):
                # ERROR_CORE "The E-mail field contains an invalid address" (DOCS: crm-company-add).
                raise _ApiError(400, "ERROR_CORE", "The E-mail field contains an invalid address")

    def _create(self, fields: dict[str, Any]) -> int:
        lead_id = self._next_lead_id
        self._next_lead_id += 1
        now = _now_iso()
        user = str(self.user_id)
        # Defaults of a new lead (DOCS: crm-lead-get response example).
        values: dict[str, Any] = dict.fromkeys(_RECORD_FIELDS)
        values |= {
            "ID": str(lead_id),
            "TITLE": f"Lead #{lead_id}",
            "IS_RETURN_CUSTOMER": "N",
            "BIRTHDATE": "",
            "STATUS_ID": "NEW",
            "CURRENCY_ID": "USD",
            "OPPORTUNITY": "0.00",
            "IS_MANUAL_OPPORTUNITY": "N",
            "HAS_IMOL": "N",
            "ASSIGNED_BY_ID": user,
            "CREATED_BY_ID": user,
            "MODIFY_BY_ID": user,
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
            "DATE_CLOSED": "",
            "OPENED": "Y",
            "MOVED_BY_ID": user,
            "MOVED_TIME": now,
            "LAST_ACTIVITY_BY": user,
            "LAST_ACTIVITY_TIME": now,
        }
        lead = _Lead(lead_id, values)
        self._leads[lead_id] = lead
        if not fields.get("TITLE"):
            fields = {key: value for key, value in fields.items() if key != "TITLE"}
        self._apply(lead, fields)
        return lead_id

    def _apply(self, lead: _Lead, fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name in MULTIFIELDS:
                self._apply_multifield(lead, name, value)
            elif name in BOOLEAN_USER_FIELDS and name in self.user_fields:
                lead.values[name] = _yes_no(value)
            elif name == "OPPORTUNITY" and value not in (None, ""):
                try:
                    lead.values[name] = f"{float(value):.2f}"
                except (TypeError, ValueError):
                    lead.values[name] = "0.00"
            else:
                lead.values[name] = _php_string(value)
        status = lead.values.get("STATUS_ID")
        lead.values["STATUS_SEMANTIC_ID"] = self.entities.lead_semantics(str(status))
        lead.values |= communication_flags(lead.multifields)
        if lead.values.get("COMPANY_ID") or lead.values.get("CONTACT_ID"):
            lead.values["IS_RETURN_CUSTOMER"] = "Y"  # DOCS: crm-lead-add note on IS_RETURN_CUSTOMER

    def _apply_multifield(self, lead: _Lead, kind: str, items: list[dict[str, Any]]) -> None:
        """Item without ID: appended. With ID: that value replaced, or removed by DELETE=Y or an empty
        VALUE. IDs of other leads are ignored (research §9, DOCS: crm-contact-update)."""
        stored = lead.multifields.setdefault(kind, [])
        for item in items:
            value = _php_string(item.get("VALUE")) or ""
            value_type = _php_string(item.get("VALUE_TYPE")) or "WORK"
            item_id = _php_string(item.get("ID"))
            if item_id:
                current = next((entry for entry in stored if entry["ID"] == item_id), None)
                if current is None:
                    continue
                if str(item.get("DELETE", "")).upper() == "Y" or value == "":
                    stored.remove(current)
                else:
                    current["VALUE"] = value
                    current["VALUE_TYPE"] = value_type
            elif value:
                stored.append(self.multifield_item(value, value_type))
        if not stored:
            del lead.multifields[kind]

    def _record(self, lead: _Lead, select: list[str] | None = None) -> dict[str, Any]:
        """A lead as crm.lead.get (``select=None``) or crm.lead.list (``select``) returns it.

        get: every native field, the user fields (null when unset), then the non-empty multifields
        with ``TYPE_ID`` (DOCS: crm-lead-get example has PHONE and IM, and no empty EMAIL).
        list: "*" is every native field, "UF_*" every user field, multifields only when named; an
        empty select means "*" (DOCS: crm-lead-list, select).
        """
        names = selected_names(select, _RECORD_FIELDS, self.user_fields)
        record: dict[str, Any] = {}
        for name in (*_RECORD_FIELDS, *self.user_fields):
            if name in names:
                record[name] = lead.values.get(name)
        for kind in MULTIFIELDS:
            if kind in names and lead.multifields.get(kind):
                record[kind] = [{**item, "TYPE_ID": kind} for item in lead.multifields[kind]]
        return record

    def _field_values(self, lead: _Lead, name: str) -> list[Any] | None:
        """The values a filter on ``name`` compares against, or None when the portal lacks the field."""
        if name in MULTIFIELDS:
            return [item["VALUE"] for item in lead.multifields.get(name, [])]
        if name in _RECORD_FIELDS or name in self.user_fields:
            value = lead.values.get(name)
            return value if isinstance(value, list) else [value]  # a multiple field matches by any value
        return None

    def _matches(self, lead: _Lead, filters: Mapping[str, Any]) -> bool:
        """crm.lead.list filter (:func:`filter_matches`)."""
        return filter_matches(filters, lambda name: self._field_values(lead, name), BOOLEAN_USER_FIELDS)

    @staticmethod
    def _sorted(rows: list[_Lead], order: Mapping[str, Any]) -> list[_Lead]:
        """Sort by ``order`` ({"FIELD": "ASC"|"DESC"}); ID ascending when no order is given."""
        return sorted_rows(sorted(rows, key=lambda lead: lead.id), order, lambda lead, name: lead.values.get(name))


OPEN_CHANNEL_TYPES = frozenset({"OPENLINE", "IMOL"})
"""IM value types an Open Channel chat writes (DOCS: crm/data-types, crm_multifield)."""


def communication_flags(multifields: Mapping[str, list[dict[str, str]]]) -> dict[str, str]:
    """``HAS_PHONE``, ``HAS_EMAIL`` and ``HAS_IMOL`` (Y/N) of a lead, contact or company by its multi-fields;
    ``HAS_IMOL`` when a messenger handle is an Open Channel chat's (assumed from its title "Open Channel
    Set"; DOCS: crm-lead-fields)."""
    open_channel = any(item["VALUE_TYPE"] in OPEN_CHANNEL_TYPES for item in multifields.get("IM", []))
    return {
        "HAS_PHONE": "Y" if multifields.get("PHONE") else "N",
        "HAS_EMAIL": "Y" if multifields.get("EMAIL") else "N",
        "HAS_IMOL": "Y" if open_channel else "N",
    }


def list_page[T](rows: list[T], start: int) -> tuple[list[T], dict[str, Any]]:
    """A list method's page: 50 rows from ``start`` with ``next``/``total`` (DOCS: crm-lead-list);
    ``start=-1`` is the first 50 without a count (DOCS: settings/performance/huge-data)."""
    if start < 0:
        return rows[:PAGE_SIZE], {}
    extra: dict[str, Any] = {"next": start + PAGE_SIZE} if start + PAGE_SIZE < len(rows) else {}
    return rows[start : start + PAGE_SIZE], extra | {"total": len(rows)}


def list_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str], int]:
    """A legacy list method's ``filter``, ``order``, ``select`` and ``start`` (restservice.php)."""
    order = _resolve_array_param(params, "order", {})
    if not isinstance(order, dict | list):
        raise _legacy("Parameter 'order' must be array.")  # restservice.php processMethodRequest
    filters = _resolve_array_param(params, "filter", {})
    if not isinstance(filters, dict | list):
        raise _legacy("Parameter 'filter' must be array.")
    select = _resolve_array_param(params, "select", [])
    select = list(select.values()) if isinstance(select, dict) else select
    select = [str(name) for name in select] if isinstance(select, list) else []
    return (
        filters if isinstance(filters, dict) else {},
        order if isinstance(order, dict) else {},
        select,
        _php_intval(params.get("start", 0)),
    )


def selected_names(select: list[str] | None, natives: Iterable[str], user_fields: Iterable[str]) -> set[str]:
    """The fields a record answers with: every one for a get (``select=None``); for a list, "*" is every
    native field, "UF_*" every user field, and multifields only when named, an empty select meaning
    "*" (DOCS: crm-lead-list, select; crm-contact-list)."""
    natives, user_fields = set(natives), set(user_fields)
    if select is None:
        return natives | user_fields | set(MULTIFIELDS)
    wanted = set(select) or {"*"}
    names = {name for name in wanted if name in natives or name in user_fields or name in MULTIFIELDS}
    if "*" in wanted:
        names |= natives
    if "UF_*" in wanted:
        names |= user_fields
    if names & set(MULTIFIELDS):
        names.add("ID")  # restservice.php getList adds the identity field for multifields
    return names


def filter_matches(
    filters: Mapping[str, Any], values_of: Callable[[str], list[Any] | None], booleans: Iterable[str] = ()
) -> bool:
    """A list filter: "=" (the default) is an exact match (DOCS: crm-lead-list, filter).

    Strings compare case-insensitively, as MySQL's default collation does. Keys naming a field
    the portal lacks (``values_of`` None, e.g. a dropped user field) are ignored, so such a filter
    matches every record. ``booleans``: Y/N user fields, selected by 1/0, true/false and Y/N alike.
    """
    boolean_names = set(booleans)
    for raw_key, expected in filters.items():
        wanted = expected
        parsed = _FILTER_KEY.match(str(raw_key))
        if parsed is None:
            continue
        operator, name = parsed.group(1) or "=", parsed.group(2).upper()
        actual = values_of(name)
        if actual is None:
            continue
        if name in boolean_names:
            wanted = [_yes_no(value) for value in expected] if isinstance(expected, list) else _yes_no(expected)
        if not _filter_holds(operator, actual, wanted):
            return False
    return True


def sorted_rows[T](rows: list[T], order: Mapping[str, Any], value_of: Callable[[T, str], Any]) -> list[T]:
    """Sort by ``order`` ({"FIELD": "ASC"|"DESC"}) over rows already in ID order."""
    result = list(rows)
    for name, direction in reversed(list(order.items())):
        field_name = str(name).upper()

        def key(row: T, field_name: str = field_name) -> tuple[int, float, str]:
            return _sort_key(value_of(row, field_name))

        result.sort(key=key, reverse=str(direction).upper() == "DESC")
    return result


def php_parse_str(query: str) -> dict[str, Any]:
    """PHP's ``parse_str``: ``a[b][]=1&a[b][]=2&c=3`` -> ``{"a": {"b": {"0": "1", "1": "2"}}, "c": "3"}``;
    lists come back as dicts with string keys, as PHP arrays decoded by the handlers here."""
    parsed: dict[str, Any] = {}
    for name, value in httpx.QueryParams(query).multi_items():
        base, _, rest = name.partition("[")
        keys = [base] + ([part.rstrip("]") for part in f"[{rest}".split("[")[1:]] if rest else [])
        node = parsed
        for depth, part in enumerate(keys):
            last = depth == len(keys) - 1
            key = part or str(len(node))
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = node[key] = {}
                node = child
    listed: dict[str, Any] = _listify(parsed)
    return listed


def _listify(value: Any) -> Any:
    """PHP arrays with keys 0..n-1 as JSON lists, as ``json_encode`` would read them back."""
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and list(items) == [str(index) for index in range(len(items))]:
        return list(items.values())
    return items


def _resolve_references(params: Any, results: Mapping[str, Any]) -> Any:
    """Replace ``$result[key][field]...`` values by the earlier sub-call's answer (empty if none)."""
    if isinstance(params, dict):
        return {key: _resolve_references(value, results) for key, value in params.items()}
    if isinstance(params, list):
        return [_resolve_references(value, results) for value in params]
    match = _REFERENCE.match(params) if isinstance(params, str) else None
    if match is None:
        return params
    value: Any = results.get(match.group(1))
    for part in re.findall(r"\[([^\]]*)\]", match.group(2)):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = None
    return "" if value is None or isinstance(value, dict | list) else str(value)


def native_descriptor(kind: str, read_only: bool, title: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """A standard field as ``crm.*.fields`` describes it (DOCS: crm-lead-fields)."""
    descriptor: dict[str, Any] = {
        "type": kind,
        "isRequired": False,
        "isReadOnly": read_only,
        "isImmutable": False,
        "isMultiple": bool(extra.get("isMultiple", False)),
        "isDynamic": False,
    }
    descriptor |= {key: value for key, value in extra.items() if key != "isMultiple"}
    return descriptor | {"title": title}


def _user_field_descriptor(name: str) -> dict[str, Any]:
    """A user field as crm.lead.fields describes it: ``isDynamic`` true, code as ``title``, and the
    human labels in listLabel/formLabel/filterLabel (DOCS: crm/_include/user-fields-for-examples-cut)."""
    label = _USER_FIELD_LABELS.get(name, name)
    descriptor: dict[str, Any] = {
        "type": "boolean" if name in BOOLEAN_USER_FIELDS else "string",
        "isRequired": False,
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": False,
        "isDynamic": True,
        "title": name,
        "listLabel": label,
        "formLabel": label,
        "filterLabel": label,
    }
    if name not in BOOLEAN_USER_FIELDS:
        descriptor["settings"] = {
            "SIZE": 20,
            "ROWS": 1,
            "REGEXP": "",
            "MIN_LENGTH": 0,
            "MAX_LENGTH": 0,
            "DEFAULT_VALUE": "",
        }
    return descriptor


def _communication_key(kind: str, value: str) -> str:
    """What findbycomm compares: e-mails trimmed and lower-cased; phones as
    ``DuplicateCommunicationCriterion::normalizePhone`` codes them, on the stored value and on each
    searched one alike (``bitrix_normalize_phone``)."""
    return value.strip().lower() if kind == "EMAIL" else bitrix_normalize_phone(value)


def bitrix_normalize_phone(value: str) -> str:
    """``Bitrix\\Crm\\Integrity\\DuplicateCommunicationCriterion::normalizePhone``: the main module's
    ``NormalizePhone($value, 1)`` (main/tools.php), then only the first run of digits (an extension
    after ``;`` or ``#`` is dropped).

    ``NormalizePhone``: a number of 10 characters or more starting ``+8`` becomes ``00`` + the rest;
    everything but digits, ``#`` and ``*`` is stripped; then, when 10 or more are left, a leading
    ``80``/``81``/``82`` is kept, else a leading ``00`` or ``011`` is dropped, a leading ``8`` becomes
    ``7``, a leading ``0`` is dropped. So ``0532 123 45 67`` is ``5321234567``, ``+90 532 123 45 67``
    is ``905321234567`` and ``8 (916) 123-45-67`` is ``79161234567``.
    """
    number = value
    if len(number) >= 10 and number.startswith("+8"):
        number = "00" + number[1:]
    number = re.sub(r"[^0-9#*]", "", number)
    if len(number) >= 10:
        if number[:2] in ("80", "81", "82"):
            pass
        elif number.startswith("00"):
            number = number[2:]
        elif number.startswith("011"):
            number = number[3:]
        elif number.startswith("8"):
            number = "7" + number[1:]
        elif number.startswith("0"):
            number = number[1:]
    if not number:  # NormalizePhone gave nothing: the value cleared of all but digits, # * , ;
        number = re.sub(r"[^0-9#*,;]", "", value)
    match = re.match(r"\d+", number)
    return match.group(0) if match else number


def _comparable(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value).lower()


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _datetime(value: str) -> datetime | None:
    """A date or datetime a filter compares as a moment (one without an offset is the portal's time)."""
    if not _DATE.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_PORTAL_TZ)


def _compare(operator: str, actual: str, expected: str) -> bool:
    left, right = _number(actual), _number(expected)
    moments = (_datetime(actual), _datetime(expected))
    if left is not None and right is not None:
        pair: tuple[Any, Any] = (left, right)
    elif moments[0] is not None and moments[1] is not None:
        pair = moments
    else:
        pair = (actual, expected)
    match operator:
        case ">":
            return bool(pair[0] > pair[1])
        case ">=":
            return bool(pair[0] >= pair[1])
        case "<":
            return bool(pair[0] < pair[1])
        case _:
            return bool(pair[0] <= pair[1])


def _filter_holds(operator: str, actual: list[Any], expected: Any) -> bool:
    values = [_comparable(value) for value in actual] or [""]
    if operator in ("@", "!@"):
        options = {_comparable(value) for value in (expected if isinstance(expected, list) else [expected])}
        hit = any(value in options for value in values)
        return hit if operator == "@" else not hit
    wanted = _comparable(expected)
    if operator in ("%", "!%"):
        hit = any(wanted in value for value in values)
        return hit if operator == "%" else not hit
    if operator in ("=%", "%=", "!%="):
        pattern = re.compile("^" + ".*".join(re.escape(part) for part in wanted.split("%")) + "$", re.DOTALL)
        hit = any(pattern.match(value) for value in values)
        return hit if operator != "!%=" else not hit
    if operator in ("!", "!="):
        return all(value != wanted for value in values)
    if operator in (">", ">=", "<", "<="):
        return any(value != "" and _compare(operator, value, wanted) for value in values)
    return any(value == wanted for value in values)


def _sort_key(value: Any) -> tuple[int, float, str]:
    text = "" if value is None else str(value)
    number = _number(text) if text else None
    return (0, number, "") if number is not None else (1, 0.0, text.lower())
