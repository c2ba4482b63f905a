"""Bitrix24 provider: JSON POSTs to an inbound webhook (``<webhook>/<method>.json``).

Quirks it handles (see shared/research/bitrix24-api.md):
* the webhook URL contains its token: it is read from its secret store per call, never logged,
  and transport errors are re-raised without it;
* ``crm.duplicate.findbycomm`` answers ``[]`` when nothing matched and ``{"LEAD": [...]}`` otherwise;
  it normalises phones (main module's ``NormalizePhone``: digits only, a leading ``00``, ``011`` or
  ``0`` dropped, a leading ``8`` made ``7``), so ``0532 123 45 67`` is found by ``5321234567`` and not
  by ``+905321234567``: we search with every form a number of the default region may be stored in;
* lead ids are positive integers: an id of another form (an EspoCRM id the site kept after a
  switch, garbage PHP would read as a number) is a lead that is not here, before any request;
* a portal in simple CRM mode (``crm.settings.mode.get`` 2) has no leads: the health check says so;
* a PHONE/EMAIL item sent without ``ID`` to ``crm.lead.update`` is *appended*, so we send only the
  values the lead does not have yet;
* rate limits: 503 ``QUERY_LIMIT_EXCEEDED`` and 429 ``OPERATION_TIME_LIMIT`` mean the request did
  not run and are retried later; ``OVERLOAD_LIMIT`` is a manual block an operator must lift;
* list (enum) user fields take portal-specific item ids and booleans are ``Y``/``N``: both come
  from the field mapping;
* the request budget (about 2 requests/s per portal, issue #13): the reads an operation needs go
  in one ``batch`` (one request however many sub-calls, at most 50), the de-duplication check asks
  the portal only for the comments carrying the operation's marker (``%COMMENT``), and requests are
  paced per container when ``BITRIX24_REQUESTS_PER_SECOND`` is set (:mod:`.pace`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote
from uuid import UUID

import httpx
import phonenumbers

from crm_bridge.errors import (
    CrmConfigurationError,
    CrmError,
    LeadNotFound,
    PermanentCrmError,
    RefusedCrmError,
    RetryableCrmError,
)
from crm_bridge.field_mapping import Bitrix24Mapping, LeadSourceKind
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.observability import redact
from crm_bridge.providers.base import (
    ClosedLead,
    ClosedLeadAttributes,
    CrmProvider,
    ExistingLead,
    LeadChanges,
    ProviderResult,
    WriteOutcome,
)
from crm_bridge.providers.http import error_for_status, make_client, retry_after_header, send
from crm_bridge.providers.lead_draft import LeadDraft, fill_empty, operation_marker
from crm_bridge.providers.pace import RequestPacer
from crm_bridge.providers.records import CrmLead, LeadOrigin, LeadPage, LeadReader, LeadStatus, RecordedNote
from crm_bridge.settings import Bitrix24Settings, default_phone_region

ORIGINATOR_ID = "crm-bridge"
"""``STATUS_SEMANTIC_ID`` of a closed lead (success: converted; failure: junk), and whether converted."""
_MATCHES = 20
"""Leads of one phone or e-mail read in search of an open one."""
_NEVER_FILLED = frozenset({"TITLE", "ORIGINATOR_ID", "ORIGIN_ID", "PHONE", "EMAIL"})
_CONFIGURATION_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "INSUFFICIENT_SCOPE",
        "ACCESS_DENIED",
        "EXPIRED_TOKEN",
        "INVALID_TOKEN",
        "OVERLOAD_LIMIT",
        "ERROR_METHOD_NOT_FOUND",
        "INVALID_REQUEST",
    }
)
# The leaky bucket refills at 2 requests/s on most plans: one second frees room for a retry.
QUERY_LIMIT_RETRY_AFTER_SECONDS = 1.0
# Per-method time budget: counted over ten one-minute baskets; without a reset time, wait a minute.
OPERATION_TIME_LIMIT_RETRY_AFTER_SECONDS = 60.0
_FIELD_IN_DESCRIPTION = re.compile(r"\b(UF_CRM_[A-Z0-9_]+|[A-Z][A-Z_]{2,})\b")
_MAX_REASON_LENGTH = 200
_TITLES = {LeadSourceKind.APPLICATION: "website application", LeadSourceKind.MESSENGER: "messenger click"}
_MULTIFIELDS = (("PHONE", "MOBILE"), ("EMAIL", "WORK"))
_LEAD_ID = re.compile(r"[1-9][0-9]{0,17}")
"""A lead id as Bitrix24 issues it: a positive decimal integer (of at most 18 digits: PHP's int)."""
FINDBYCOMM_MAX_VALUES = 20
CRM_MODE_CLASSIC = 1
SIMPLE_CRM_MODE = (
    "Bitrix24 CRM is in simple mode: it has no leads and turns every new lead into a deal at once. "
    "In CRM settings, switch the CRM mode to classic (with leads)."
)


_WRITING_METHODS = frozenset({"add", "update", "delete"})
"""Bitrix24 calls everything with POST; these method names (``crm.lead.add``...) change data."""
BATCH_MAX_COMMANDS = 50
""""A single batch contains no more than 50 subqueries" (DOCS: settings/how-to-call-rest-api/batch)."""
_LIST_PAGE = 50
""""The page size of results is always static: 50 records" (DOCS: crm-lead-list; comments alike)."""


class _Ref(str):
    """A ``$result[key][...]`` reference to an earlier sub-call of the same batch: sent as is."""


def batch_reference(key: str, *path: str | int) -> str:
    """``$result[key][0][ID]``: an earlier sub-call's answer, for a batch sub-call's parameter."""
    return _Ref(f"$result[{key}]" + "".join(f"[{part}]" for part in path))


@dataclass
class _Prefetched:
    """Reads an operation's batches answered ahead of the primitive that needs them (one operation)."""

    operation_id: UUID | None
    leads: dict[str, dict[str, Any]] = field(default_factory=dict)
    marked: dict[str, bool] = field(default_factory=dict)
    """Lead id -> whether a timeline comment carries the operation's marker."""


_prefetched: ContextVar[_Prefetched | None] = ContextVar("bitrix24_prefetched", default=None)


class Bitrix24Provider(CrmProvider, LeadReader):
    name = "bitrix24"
    person_attributes = frozenset({"TITLE", "NAME", "LAST_NAME", "SECOND_NAME", "PHONE", "EMAIL"})
    identity_attributes = ("PHONE", "EMAIL")
    replaced_on_completion = ("TITLE", "NAME", "LAST_NAME", "SOURCE_ID")
    text_attribute = "COMMENTS"
    status_attribute = "STATUS_ID"
    status_values: ClassVar[Mapping[LeadStatus, str]] = {
        LeadStatus.NEW: "NEW",
        LeadStatus.IN_PROCESS: "IN_PROCESS",
        LeadStatus.CONVERTED: "CONVERTED",
        LeadStatus.LOST: "JUNK",
    }
    source_attribute = "SOURCE_ID"
    origins: ClassVar[Mapping[str, LeadOrigin]] = {
        "WEB": LeadOrigin.WEBSITE,
        "WEBFORM": LeadOrigin.WEBSITE,
        "CALL": LeadOrigin.CALL,
        "CALLBACK": LeadOrigin.CALL,
        "EMAIL": LeadOrigin.EMAIL,
        "PARTNER": LeadOrigin.PARTNER,
        "RECOMMENDATION": LeadOrigin.PARTNER,
        "ADVERTISING": LeadOrigin.ADVERTISING,
        "TRADE_SHOW": LeadOrigin.ADVERTISING,
        "OTHER": LeadOrigin.OTHER,
    }
    """A portal's default sources (``crm.status.list``, ENTITY_ID SOURCE); one it added is kept in the text only."""
    closed_lead = ClosedLeadAttributes("STATUS_SEMANTIC_ID", {"S": True, "F": False}, "CONTACT_ID", "COMPANY_ID")

    def __init__(
        self,
        settings: Bitrix24Settings,
        mapping: Bitrix24Mapping,
        *,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
        phone_region: str | None = None,
    ) -> None:
        super().__init__(mapping, **({"clock": clock} if clock else {}))
        self._settings = settings
        self._client = make_client(timeout_seconds, transport)
        self._wall_clock = wall_clock
        self._phone_region = phone_region or default_phone_region()
        """Where a number written without a country code is (``DEFAULT_PHONE_REGION``)."""
        rate = settings.requests_per_second
        self.pacer = RequestPacer(rate) if rate is not None else None
        """Paces this container's requests (``BITRIX24_REQUESTS_PER_SECOND``); None: unpaced."""

    def close(self) -> None:
        self._client.close()

    # --- the interface: one operation's reads shared between its primitives ---------------------------

    @contextmanager
    def operation(self, operation_id: UUID | None) -> Iterator[None]:
        """Within the block, reads are for this operation: a lead is read with its comments carrying
        the operation's marker, in one batch, and kept for the primitives that need them."""
        token = _prefetched.set(_Prefetched(operation_id))
        try:
            yield
        finally:
            _prefetched.reset(token)

    def upsert_lead(
        self,
        application: Application,
        operation_id: UUID,
        session_lead: Callable[[], str | None] | None = None,
    ) -> ProviderResult:
        with self.operation(operation_id):
            return super().upsert_lead(application, operation_id, session_lead)

    def log_activity(
        self,
        lead_id: str,
        activity: MessengerActivity,
        operation_id: UUID | None = None,
        *,
        earlier_leads: Sequence[str] = (),
    ) -> ProviderResult:
        with self.operation(operation_id):
            return super().log_activity(lead_id, activity, operation_id, earlier_leads=earlier_leads)

    def create_minimal_lead_from_activity(self, activity: MessengerActivity, operation_id: UUID) -> ProviderResult:
        with self.operation(operation_id):
            return super().create_minimal_lead_from_activity(activity, operation_id)

    # --- HTTP --------------------------------------------------------------------------------------

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        webhook = self._settings.webhook.get().rstrip("/")
        if self.pacer is not None:
            self.pacer.acquire(self.name)
        response = send(
            self._client,
            self.name,
            self._client.build_request("POST", f"{webhook}/{method}.json", json=params),
            writes=method.rsplit(".", 1)[-1] in _WRITING_METHODS,
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and "result" in body and not body.get("error"):
            return body["result"]
        if response.is_success and body is None:
            raise RetryableCrmError("answer was not JSON", provider=self.name, status=response.status_code)
        raise self._error(response, body if isinstance(body, dict) else {})

    def _batch(
        self, commands: Mapping[str, tuple[str, dict[str, Any]]], totals: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Run read-only sub-calls in one request (``halt: 0``); each key answers its result or the
        :class:`CrmError` its ``result_error`` entry stands for. The batch itself failing raises.
        ``totals`` receives the ``total`` of the list sub-calls that gave one."""
        if len(commands) > BATCH_MAX_COMMANDS:
            raise ValueError(f"a batch takes at most {BATCH_MAX_COMMANDS} sub-calls")
        cmd = {key: f"{method}?{_query_string(params)}" for key, (method, params) in commands.items()}
        answer = self._call("batch", {"halt": 0, "cmd": cmd})
        # Empty collections come back as PHP's empty array, [] (DOCS: batch, response examples).
        results = answer.get("result") if isinstance(answer, dict) else None
        errors = answer.get("result_error") if isinstance(answer, dict) else None
        results = results if isinstance(results, dict) else {}
        errors = errors if isinstance(errors, dict) else {}
        counted = answer.get("result_total") if isinstance(answer, dict) else None
        if totals is not None and isinstance(counted, dict):
            totals.update({key: int(total) for key, total in counted.items() if str(total).isdigit()})
        outcome: dict[str, Any] = {}
        for key in commands:
            if key in errors:
                error = errors[key] if isinstance(errors[key], dict) else {}
                outcome[key] = self._error(httpx.Response(400), error)  # a sub-call has no status of its own
            elif key in results:
                outcome[key] = results[key]
            else:
                outcome[key] = RetryableCrmError(f"batch answered nothing for {key}", provider=self.name)
        return outcome

    def _error(self, response: httpx.Response, body: dict[str, Any]) -> CrmError:
        status = response.status_code
        code = str(body.get("error") or "")
        description = redact(str(body.get("error_description") or ""))[:_MAX_REASON_LENGTH]
        reason = description or code or f"HTTP {status}"
        details: dict[str, Any] = {"provider": self.name, "status": status, "code": code or None}
        if code == "QUERY_LIMIT_EXCEEDED":
            return RefusedCrmError(
                "rate limit exceeded", retry_after_seconds=QUERY_LIMIT_RETRY_AFTER_SECONDS, **details
            )
        if code == "OPERATION_TIME_LIMIT":
            return RefusedCrmError(
                "method time budget exhausted", retry_after_seconds=self._time_limit_wait(response, body), **details
            )
        if code in ("OWNER_NOT_FOUND", "NOT_FOUND") or description == "Not found":
            return LeadNotFound(reason, **details)
        if code.upper() in _CONFIGURATION_CODES or status in (401, 403):
            self._settings.webhook.refresh()  # the webhook may have been re-issued in its store
            return CrmConfigurationError(reason, **details)
        if status >= 500:
            return RetryableCrmError(reason, **details)
        error = error_for_status(self.name, status, reason, code=code or None)
        if isinstance(error, PermanentCrmError):
            match = _FIELD_IN_DESCRIPTION.search(description)
            error.field = match.group(1) if match else None
        return error

    def _time_limit_wait(self, response: httpx.Response, body: dict[str, Any]) -> float:
        header = retry_after_header(response)
        if header is not None:
            return header
        reset_at = (body.get("time") or {}).get("operating_reset_at")
        if isinstance(reset_at, int | float):
            return max(1.0, round(reset_at - self._wall_clock(), 1))
        return OPERATION_TIME_LIMIT_RETRY_AFTER_SECONDS

    # --- reads for the whole-portal move (migrate/bitrix24_portal.py) ----------------------------------

    def read(self, method: str, params: dict[str, Any]) -> Any:
        """A reading method's ``result``, paced and with this provider's error mapping; any other
        method (a write, a ``batch``) is refused before anything is sent: the portal stays untouched
        until the switch."""
        _check_reads(method)
        return self._call(method, params)

    def read_batch(
        self, commands: Mapping[str, tuple[str, dict[str, Any]]], totals: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Read-only sub-calls in one request (see :meth:`_batch`); a ``$result[...]`` reference to an
        earlier sub-call's answer is written :func:`batch_reference`."""
        for method, _ in commands.values():
            _check_reads(method)
        return self._batch(commands, totals)

    def download(self, url: str) -> bytes:
        """The bytes behind a file link the portal gave (a path on the portal, or a full URL on its host),
        paced like a request; the link's host must be the portal's (the webhook's token goes nowhere else)."""
        portal = httpx.URL(self._settings.webhook.get())
        target = portal.join(url)
        if target.host != portal.host:
            raise PermanentCrmError("a file link points outside the portal", provider=self.name)
        if self.pacer is not None:
            self.pacer.acquire(self.name)
        response = send(self._client, self.name, self._client.build_request("GET", target), writes=False)
        if not response.is_success:
            raise error_for_status(self.name, response.status_code, f"file download: HTTP {response.status_code}")
        return response.content

    # --- CrmProvider primitives ---------------------------------------------------------------------

    def _lead_payload(self, draft: LeadDraft, operation_id: UUID) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "TITLE": f"{draft.title}: {_TITLES[draft.source]}" if draft.source else draft.title,
            "NAME": draft.first_name,
            "LAST_NAME": draft.last_name,
            "COMMENTS": draft.description,
            "SOURCE_ID": self.mapping.source_value(draft.source),
            "ORIGINATOR_ID": ORIGINATOR_ID,
            "ORIGIN_ID": str(operation_id),
            **_multifield_items({}, draft.phone, draft.email, self._phone_region),
            **self._mapped_attributes(draft.values),
        }
        return {key: value for key, value in fields.items() if value is not None}

    def _changes_payload(self, record_id: str, changes: LeadChanges) -> dict[str, Any]:
        fields = self._mapped_attributes(changes.values)
        if changes.phone or changes.email:
            fields |= _multifield_items(self._read(record_id), changes.phone, changes.email, self._phone_region)
        return fields

    @staticmethod
    def _boolean(value: bool) -> Any:
        return "Y" if value else "N"

    @staticmethod
    def _read_boolean(value: Any) -> bool:
        return str(value).upper() in ("Y", "1")

    def _read(self, record_id: str) -> dict[str, Any]:
        record = self._call("crm.lead.get", {"id": record_id})
        if not isinstance(record, dict):
            raise RetryableCrmError("unexpected answer reading a lead", provider=self.name)
        return record

    def _find_lead(self, *, phone: str | None, email: str | None) -> ExistingLead | None:
        """Both searches in one batch, with the first lead each one finds read in the same batch
        (``$result[phone][LEAD][0]``) with its marked comments: a repeat costs this one request.

        When a search finds nothing, the sub-calls referring to its result fail (an id that is not
        defined) and are ignored; which lead a reference names is checked against the search's
        answer before its read is used."""
        searches = {
            "phone": ("PHONE", _phone_forms(phone, self._phone_region)),
            "email": ("EMAIL", [email] if email else []),
        }
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        for key, (kind, values) in searches.items():
            if values:
                commands[key] = ("crm.duplicate.findbycomm", {"entity_type": "LEAD", "type": kind, "values": values})
                commands |= self._lead_reads(f"{key}_", _Ref(f"$result[{key}][LEAD][0]"))
        if not commands:
            return None
        answers = self._batch(commands)
        for key in searches:
            if key not in commands:
                continue
            found = answers[key]
            if isinstance(found, CrmError):
                raise found
            # Nothing found is an empty *list*; matches are {"LEAD": [ids]} (ids only).
            lead_ids = found.get("LEAD", []) if isinstance(found, dict) else []
            if lead_ids:
                self._keep_reads(answers, f"{key}_")
                return self._first_open(sorted(int(lead_id) for lead_id in lead_ids)[:_MATCHES])
        return None

    def _first_open(self, lead_ids: list[int]) -> ExistingLead:
        """The oldest of these leads that is open, else the newest (findbycomm gives ids only).
        Leads not read yet are read together, in one batch."""
        state = _prefetched.get()
        if state is not None:
            unread = [str(lead_id) for lead_id in lead_ids if str(lead_id) not in state.leads]
            first = state.leads.get(str(lead_ids[0]))
            if unread and (first is None or self._closed(ExistingLead(str(lead_ids[0]), first)) is not None):
                self._read_leads(unread)
        lead = ExistingLead("")
        for lead_id in lead_ids:
            lead = self._read_lead(str(lead_id))
            if self._closed(lead) is None:
                break
        return lead

    def _read_lead(self, record_id: str) -> ExistingLead:
        state = _prefetched.get()
        if state is not None and record_id not in state.leads:
            self._read_leads([record_id])
        if state is not None and record_id in state.leads:
            return ExistingLead(record_id, state.leads.pop(record_id))
        return ExistingLead(record_id, self._read(record_id))

    def _lead_reads(self, prefix: str, record_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """Sub-calls reading a lead and, within an operation, its comments carrying the marker."""
        reads: dict[str, tuple[str, dict[str, Any]]] = {f"{prefix}lead": ("crm.lead.get", {"id": record_id})}
        state = _prefetched.get()
        if state is not None and state.operation_id is not None:
            marker = operation_marker(state.operation_id)
            reads[f"{prefix}marked"] = ("crm.timeline.comment.list", _marked_comments(record_id, marker))
        return reads

    def _read_leads(self, record_ids: list[str]) -> None:
        """Read these leads (and their marked comments) in one batch into the operation's reads;
        a lead that cannot be read raises its error (:class:`LeadNotFound`...)."""
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        for number, record_id in enumerate(record_ids):
            commands |= self._lead_reads(f"r{number}_", record_id)
        answers = self._batch(commands)
        for number, record_id in enumerate(record_ids):
            record = answers[f"r{number}_lead"]
            if isinstance(record, CrmError):
                raise record
            self._keep_reads(answers, f"r{number}_", record_id)

    def _keep_reads(self, answers: Mapping[str, Any], prefix: str, record_id: str | None = None) -> None:
        """Keep a lead read by a batch (and whether its comments carry the marker) for this operation."""
        state = _prefetched.get()
        record = answers.get(f"{prefix}lead")
        if state is None or not isinstance(record, dict) or not record.get("ID"):
            return
        lead_id = str(record["ID"])
        if record_id is not None and lead_id != record_id:
            return
        state.leads[lead_id] = record
        marked = answers.get(f"{prefix}marked")
        if state.operation_id is not None and isinstance(marked, list):
            state.marked[lead_id] = _carries(marked, operation_marker(state.operation_id))

    def _successor_link(self, closed: ClosedLead) -> dict[str, Any]:
        """A repeat lead linked to the client it came back as (``IS_RETURN_CUSTOMER`` follows)."""
        link = {"CONTACT_ID": closed.contact_id, "COMPANY_ID": closed.account_id}
        return {key: value for key, value in link.items() if value}

    def _find_created_by(self, operation_id: UUID) -> ExistingLead | None:
        found = self._call(
            "crm.lead.list",
            {
                "filter": {"ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": str(operation_id)},
                "select": ["ID", "ORIGIN_ID"],
                "order": {"ID": "ASC"},
            },
        )
        matches = [
            lead for lead in found or [] if isinstance(lead, dict) and lead.get("ORIGIN_ID") == str(operation_id)
        ]
        return ExistingLead(str(matches[0]["ID"])) if matches else None

    def _find_by_attribute(self, attribute: str, value: str) -> ExistingLead | None:
        found = self._call(
            "crm.lead.list", {"filter": {attribute: value}, "select": ["ID", attribute], "order": {"ID": "ASC"}}
        )
        # A filter on a field the portal lacks is ignored and matches every lead: check the value.
        matches = [lead for lead in found or [] if isinstance(lead, dict) and lead.get(attribute) == value]
        return ExistingLead(str(matches[0]["ID"])) if matches else None

    def _create(self, payload: dict[str, Any], *, check_duplicates: bool = True) -> WriteOutcome:
        # Bitrix24 runs no duplicate check on REST adds; we searched before creating.
        lead_id = self._call("crm.lead.add", {"fields": payload, "params": {"REGISTER_SONET_EVENT": "Y"}})
        return WriteOutcome(str(lead_id))

    def _update(self, record_id: str, patch: dict[str, Any]) -> WriteOutcome:
        self._call("crm.lead.update", {"id": record_id, "fields": patch, "params": {"REGISTER_SONET_EVENT": "N"}})
        return WriteOutcome(record_id)

    def _missing_values(self, existing: ExistingLead, payload: dict[str, Any]) -> dict[str, Any]:
        patch = fill_empty(existing.attributes, payload, keep=_NEVER_FILLED)
        phone = _first_value(payload.get("PHONE"))
        email = _first_value(payload.get("EMAIL"))
        return patch | _multifield_items(existing.attributes, phone, email, self._phone_region)

    def _add_note(self, record_id: str, text: str) -> str:
        comment = {"fields": {"ENTITY_ID": int(record_id), "ENTITY_TYPE": "lead", "COMMENT": text}}
        return str(self._call("crm.timeline.comment.add", comment))

    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        """Our own lead (``ORIGIN_ID``), the marker in its comments, or a timeline comment carrying
        it: the portal filters the comments by the marker (``%COMMENT``, a substring search), so
        however long the timeline, one page answers. Read with the lead when this operation's batch
        read it (no request of its own)."""
        marker = operation_marker(operation_id)
        state = _prefetched.get()
        ours = state is not None and state.operation_id == operation_id
        record = lead.attributes
        if not record:
            record = self._read_lead(lead.record_id).attributes if ours else self._read(lead.record_id)
        if record.get("ORIGIN_ID") == str(operation_id) or marker in str(record.get("COMMENTS") or ""):
            return True
        if state is not None and ours and lead.record_id in state.marked:
            return state.marked.pop(lead.record_id)
        return _carries(self._call("crm.timeline.comment.list", _marked_comments(lead.record_id, marker)), marker)

    def _accepts_record_id(self, record_id: str) -> bool:
        return _LEAD_ID.fullmatch(record_id) is not None

    def _timeline_texts(self, record_id: str) -> list[str]:
        return [note.text for note in self._comments(record_id)]

    def _comments(self, record_id: str, start: int = 0) -> list[RecordedNote]:
        """The lead's timeline comments from ``start`` on, oldest first, page by page."""
        notes: list[RecordedNote] = []
        while True:
            params = _comment_list(int(record_id)) | {"start": start}
            page = self._call("crm.timeline.comment.list", params)
            notes += _notes(page)
            if not isinstance(page, list) or len(page) < _LIST_PAGE:
                return notes
            start += _LIST_PAGE

    # --- LeadReader: a migration's reads, within the request budget ----------------------------------

    def read_leads(self, *, after: str | None, since: datetime | None, with_notes: bool = True) -> LeadPage:
        """One request per page: a ``batch`` of the lead list (50 at most, by ID) and, for its first
        49 leads, their comments (``$result[page][i][ID]``); the page ends at the 49th lead, so the
        50th comes first in the next one. A lead with more than a page of comments costs more."""
        filters: dict[str, Any] = {">ID": int(after) if after else 0}
        if since is not None:
            filters[">=DATE_MODIFY"] = since.isoformat()
        listing = {"filter": filters, "order": {"ID": "ASC"}, "select": ["*", "UF_*", "PHONE", "EMAIL"], "start": 0}
        if not with_notes:
            records = self._call("crm.lead.list", listing)
            leads = [self._crm_lead(record, ()) for record in records or [] if isinstance(record, dict)]
            return LeadPage(leads, leads[-1].record_id if len(leads) == _LIST_PAGE else None)
        commands: dict[str, tuple[str, dict[str, Any]]] = {"page": ("crm.lead.list", listing)}
        for index in range(BATCH_MAX_COMMANDS - 1):
            commands[f"notes{index}"] = (
                "crm.timeline.comment.list",
                _comment_list(_Ref(f"$result[page][{index}][ID]")),
            )
        totals: dict[str, int] = {}
        answers = self._batch(commands, totals)
        page = answers["page"]
        if isinstance(page, CrmError):
            raise page
        records = [record for record in page if isinstance(record, dict)][: BATCH_MAX_COMMANDS - 1]
        leads = []
        for index, record in enumerate(records):
            comments = answers[f"notes{index}"]
            if isinstance(comments, CrmError):
                raise comments
            notes = _notes(comments)
            if len(notes) >= _LIST_PAGE:
                notes += self._comments(str(record["ID"]), start=_LIST_PAGE)
            leads.append(self._crm_lead(record, tuple(notes)))
        more = len(page) > len(records)
        return LeadPage(leads, leads[-1].record_id if more else None, remaining=totals.get("page"))

    def _crm_lead(self, record: Mapping[str, Any], notes: tuple[RecordedNote, ...]) -> CrmLead:
        return CrmLead(
            provider=self.name,
            record_id=str(record["ID"]),
            created_at=_moment(record.get("DATE_CREATE")),
            first_name=record.get("NAME") or None,
            last_name=record.get("LAST_NAME") or None,
            phones=_values_of(record.get("PHONE")),
            emails=_values_of(record.get("EMAIL")),
            status=_status(record),
            source=record.get("SOURCE_ID") or None,
            origin=self.origins.get(str(record.get("SOURCE_ID"))),
            description=record.get("COMMENTS") or None,
            values=self._domain_values(record),
            mapped_fields=frozenset(self.mapping.lead_fields),
            notes=notes,
        )

    def _configuration_problem(self) -> str | None:
        """Simple CRM mode (``crm.settings.mode.get`` answers 2): leads we write become deals nobody
        reads as leads, so the portal is misconfigured for crm-bridge."""
        mode = self._call("crm.settings.mode.get", {})
        return None if str(mode) == str(CRM_MODE_CLASSIC) else SIMPLE_CRM_MODE

    def _missing_mapped_fields(self) -> list[str] | None:
        fields = self._call("crm.lead.fields", {})
        if not isinstance(fields, dict):
            raise RetryableCrmError("unexpected answer to crm.lead.fields", provider=self.name)
        return self._domain_fields_for(set(self.mapping.lead_fields.values()) - fields.keys())


_READING_METHODS = frozenset({"list", "get", "fields"})
"""How every method that only reads is named (``crm.lead.list``, ``user.get``, ``crm.deal.fields``)."""


def _check_reads(method: str) -> None:
    if method.rsplit(".", 1)[-1] not in _READING_METHODS:
        raise ValueError(f"{method} is not a read: the portal is only read")


def _marked_comments(record_id: str, marker: str) -> dict[str, Any]:
    """``crm.timeline.comment.list`` for the lead's comments containing ``marker``: ``%`` is LIKE,
    "the search looks for the substring in any position" (DOCS: crm-timeline-comment-list)."""
    entity_id: Any = record_id if isinstance(record_id, _Ref) else int(record_id)
    listing = _comment_list(entity_id)
    listing["filter"]["%COMMENT"] = marker
    return listing | {"select": ["ID", "COMMENT"], "order": {"ID": "DESC"}}


def _comment_list(entity_id: int | _Ref) -> dict[str, Any]:
    """``crm.timeline.comment.list`` for a lead's comments, oldest first (50 a page)."""
    return {
        "filter": {"ENTITY_ID": entity_id, "ENTITY_TYPE": "lead"},
        "select": ["ID", "CREATED", "COMMENT"],
        "order": {"ID": "ASC"},
    }


def _notes(comments: Any) -> list[RecordedNote]:
    items = comments if isinstance(comments, list) else []
    return [
        RecordedNote(str(item.get("ID")), str(item.get("COMMENT") or ""), _moment(item.get("CREATED")))
        for item in items
        if isinstance(item, dict)
    ]


def _carries(comments: Any, marker: str) -> bool:
    """Whether a comment of this page carries the marker (checked here too: a portal that ignored
    the filter answers the newest 50 comments, and the check is then what it was before)."""
    items = comments if isinstance(comments, list) else []
    return any(isinstance(item, dict) and marker in str(item.get("COMMENT") or "") for item in items)


def _query_string(params: Mapping[str, Any], prefix: str = "") -> str:
    """PHP's ``http_build_query`` form of nested parameters (``filter[ENTITY_ID]=5&select[0]=ID``):
    what a batch sub-call is written in. Values are URL-encoded once (DOCS: data-encoding);
    a :class:`_Ref` is sent as is, for the portal to replace."""
    pairs: list[str] = []
    for name, value in params.items():
        key = f"{prefix}[{quote(str(name), safe='')}]" if prefix else quote(str(name), safe="")
        if isinstance(value, Mapping):
            pairs.append(_query_string(value, key))
        elif isinstance(value, list | tuple):
            pairs.append(_query_string({str(index): item for index, item in enumerate(value)}, key))
        elif isinstance(value, _Ref):
            pairs.append(f"{key}={value}")
        elif isinstance(value, bool):
            pairs.append(f"{key}={'Y' if value else 'N'}")
        elif value is not None:
            pairs.append(f"{key}={quote(str(value), safe='')}")
    return "&".join(pair for pair in pairs if pair)


def _first_value(items: Any) -> str | None:
    return str(items[0]["VALUE"]) if isinstance(items, list) and items else None


def _phone_forms(phone: str | None, region: str) -> list[str]:
    """The values to search an E.164 number by: itself and, for a number of the default region, its
    national significant number with and without the trunk prefix (``5321234567``, ``05321234567``),
    the forms a salesperson types and findbycomm does not equate with the international one. A
    national form of another country's number is never searched: it is someone else's here."""
    if not phone:
        return []
    forms = [phone]
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return forms
    if parsed.country_code == phonenumbers.country_code_for_region(region):
        national = phonenumbers.national_significant_number(parsed)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefix = metadata.national_prefix if metadata is not None else None
        forms += [national, f"{prefix}{national}"] if prefix else [national]
    return list(dict.fromkeys(forms))[:FINDBYCOMM_MAX_VALUES]


def _comparable(kind: str, value: str, region: str) -> str:
    """Phones compared as E.164 whatever format a person typed into the CRM (a number without a
    country code read as the default region's); e-mails lower-cased."""
    if kind == "EMAIL":
        return value.strip().lower()
    try:
        return phonenumbers.format_number(phonenumbers.parse(value, region), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return re.sub(r"[^\d+]", "", value)


def _multifield_items(existing: dict[str, Any], phone: str | None, email: str | None, region: str) -> dict[str, Any]:
    """New PHONE/EMAIL items for values the lead lacks (an item without ID is appended by Bitrix)."""
    items: dict[str, Any] = {}
    for (kind, value_type), value in zip(_MULTIFIELDS, (phone, email), strict=True):
        if not value:
            continue
        known = {_comparable(kind, str(item.get("VALUE", "")), region) for item in existing.get(kind) or []}
        if _comparable(kind, value, region) not in known:
            items[kind] = [{"VALUE": value, "VALUE_TYPE": value_type}]
    return items


def _moment(value: Any) -> datetime | None:
    """A Bitrix24 datetime (ISO 8601 with the portal's offset) as an aware datetime."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _status(record: Mapping[str, Any]) -> LeadStatus:
    """Bitrix24's stage by its semantics: S converted, F lost (junk), P in progress (NEW: new)."""
    semantic = record.get("STATUS_SEMANTIC_ID")
    if semantic == "S":
        return LeadStatus.CONVERTED
    if semantic == "F":
        return LeadStatus.LOST
    return LeadStatus.NEW if record.get("STATUS_ID") in (None, "", "NEW") else LeadStatus.IN_PROCESS


def _values_of(items: Any) -> tuple[str, ...]:
    return tuple(str(item["VALUE"]) for item in items or [] if isinstance(item, dict) and item.get("VALUE"))
