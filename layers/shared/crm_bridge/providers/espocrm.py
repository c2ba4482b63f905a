"""EspoCRM provider: a thin httpx client for the REST API (``/api/v1``), faithful to 8.4+.

Quirks it handles (see shared/research/espocrm-api.md and the recorded fixtures):
* phones are matched and stored only as E.164; the domain models normalise before we get here;
* searches go as one ``searchParams`` JSON parameter (httpx cannot build PHP bracket params);
* a create may answer 409 with a JSON *array* of "duplicates" matched on name or e-mail; we
  accept it as a duplicate only when our own phone/e-mail criteria agree, else we create anyway
  with ``X-Skip-Duplicate-Check``;
* unknown attributes are silently dropped with a 200, so every write compares what it sent with
  what came back and reports the attributes the CRM ignored;
* a value one field refuses (longer than its maxLength, an option its enum lacks, a phone number
  its libphonenumber does not know yet) fails the whole write with a 400 naming the field: the
  lead is written again without it, the value in its description (``CrmProvider.free_text_attribute``);
* activities are stream Notes of type Post: there is no Activity entity to POST;
* record ids are 17 lower-case hex characters (or a UUID where ``recordIdType`` is ``uuid4``): an
  id of another form (a Bitrix24 number the site kept after a switch, garbage) is a lead that is
  not here, before any request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

import httpx

from crm_bridge.errors import (
    CrmConfigurationError,
    CrmError,
    LeadNotFound,
    PermanentCrmError,
    RefusedCrmError,
    RetryableCrmError,
)
from crm_bridge.field_mapping import EspoCrmMapping
from crm_bridge.observability import redact
from crm_bridge.providers.base import (
    ClosedLeadAttributes,
    CrmProvider,
    DuplicateLeadFound,
    ExistingLead,
    LeadChanges,
    WriteOutcome,
)
from crm_bridge.providers.http import error_for_status, json_body, make_client, send
from crm_bridge.providers.lead_draft import LeadDraft, fill_empty, operation_marker
from crm_bridge.providers.records import CrmLead, LeadOrigin, LeadPage, LeadReader, LeadStatus, RecordedNote
from crm_bridge.settings import EspoCrmSettings

_NEVER_FILLED = frozenset({"status"})
_MAX_REASON_LENGTH = 200
_STREAM_PAGE = 100
_READ_PAGE = 200
"""A migration's page: EspoCRM's largest ``maxSize`` (``recordListMaxSizeLimit``)."""
_STATUSES = {
    "New": LeadStatus.NEW,
    "Assigned": LeadStatus.IN_PROCESS,
    "In Process": LeadStatus.IN_PROCESS,
    "Converted": LeadStatus.CONVERTED,
    "Recycled": LeadStatus.LOST,
    "Dead": LeadStatus.LOST,
}
"""Lead statuses nobody works any more, and whether the lead was converted (else lost)."""
_MATCHES = 20
"""Leads of one phone or e-mail considered: an open one among them is the match."""
_RECORD_ID = re.compile(r"[0-9a-f]{17}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""EspoCRM's record ids: ``uniqid()`` and 4 more hex digits (``6b0244fec9dffa4c4``), or a UUID."""
"""Newest stream entries searched for an earlier attempt's note: retries follow within hours."""


class EspoCrmProvider(CrmProvider, LeadReader):
    name = "espocrm"
    free_text_attribute = "description"
    contact_attributes: ClassVar[Mapping[str, str]] = {
        "first_name": "firstName",
        "last_name": "lastName",
        "phone": "phoneNumber",
        "email": "emailAddress",
    }
    person_attributes = frozenset(
        {"firstName", "lastName", "phoneNumber", "phoneNumberData", "emailAddress", "emailAddressData"}
    )
    identity_attributes = ("phoneNumber", "emailAddress")
    replaced_on_completion = ("firstName", "lastName", "source")
    text_attribute = "description"
    status_attribute = "status"
    status_values: ClassVar[Mapping[LeadStatus, str]] = {
        LeadStatus.NEW: "New",
        LeadStatus.IN_PROCESS: "In Process",
        LeadStatus.CONVERTED: "Converted",
        LeadStatus.LOST: "Dead",
    }
    source_attribute = "source"
    origins: ClassVar[Mapping[str, LeadOrigin]] = {
        "Web Site": LeadOrigin.WEBSITE,
        "Call": LeadOrigin.CALL,
        "Email": LeadOrigin.EMAIL,
        "Partner": LeadOrigin.PARTNER,
        "Campaign": LeadOrigin.ADVERTISING,
        "Existing Customer": LeadOrigin.EXISTING_CUSTOMER,
        "Other": LeadOrigin.OTHER,
        "Public Relations": LeadOrigin.OTHER,
    }
    """Lead's ``source`` options (entityDefs/Lead.json)."""
    closed_lead = ClosedLeadAttributes(
        "status", {"Converted": True, "Dead": False}, "createdContactId", "createdAccountId"
    )
    """A Lead's only links to what it became are ``createdContact`` and ``createdAccount``, the other
    ends of a Contact's and an Account's one ``originalLead``: giving them to a new lead takes them
    from the converted one (EspoCRM 8.4.2), so a new lead names them in its description only
    (:meth:`CrmProvider._successor_link` stays empty)."""

    def __init__(
        self,
        settings: EspoCrmSettings,
        mapping: EspoCrmMapping,
        *,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(mapping, **({"clock": clock} if clock else {}))
        self._settings = settings
        self._base = settings.api_base
        self._client = make_client(timeout_seconds, transport)

    def close(self) -> None:
        self._client.close()

    # --- HTTP --------------------------------------------------------------------------------------

    def _auth_headers(self, method: str, path: str) -> dict[str, str]:
        api_key = self._settings.api_key.get()
        if self._settings.hmac_secret is None:
            return {"X-Api-Key": api_key}
        # Signed string: "<METHOD> /<path below /api/v1, no query>", lower-case hex (EspoCRM >= 8.4.1).
        digest = hmac.new(
            self._settings.hmac_secret.get().encode(), f"{method} /{path}".encode(), hashlib.sha256
        ).hexdigest()
        return {"X-Hmac-Authorization": base64.b64encode(f"{api_key}:{digest}".encode()).decode()}

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        request = self._client.build_request(
            method,
            f"{self._base}/{path}",
            params=params,
            json=body,
            headers={**self._auth_headers(method, path), **(headers or {})},
        )
        response = send(self._client, self.name, request, writes=method != "GET")
        if response.is_success or response.status_code in accept:
            return response
        raise self._error(response)

    def _error(self, response: httpx.Response) -> CrmError:
        status = response.status_code
        reason_header = redact(response.headers.get("X-Status-Reason", ""))[:_MAX_REASON_LENGTH]
        if status == 400:
            field, check = _validation_failure(response)
            if field:
                return PermanentCrmError(f"validation failed ({check})", provider=self.name, status=400, field=field)
            return PermanentCrmError(reason_header or "bad request", provider=self.name, status=400)
        if status in (401, 403):
            # The key may have been rotated in its store: read it afresh before the next attempt.
            self._settings.api_key.refresh()
            if self._settings.hmac_secret is not None:
                self._settings.hmac_secret.refresh()
            reason = (
                "credentials rejected: check the API key and that the API user is active"
                if status == 401
                else reason_header
                or "forbidden: the API user's role lacks access, or logins from this IP are locked out"
            )
            return CrmConfigurationError(reason, provider=self.name, status=status)
        if status == 404:
            return PermanentCrmError(reason_header or "not found", provider=self.name, status=404)
        if status == 503:
            # Maintenance mode (or the proxy's "no upstream"): turned away before anything ran.
            return RefusedCrmError(reason_header or "service unavailable", provider=self.name, status=503)
        return error_for_status(self.name, status, reason_header or f"HTTP {status}")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One call of the API user beyond leads (the whole-CRM move: ``migrate/espocrm_target.py``),
        with this provider's authentication, budget and typed errors."""
        return self._request(method, path, params=params, body=body, headers=headers)

    def search(
        self,
        where: list[dict[str, Any]],
        *,
        entity: str = "Lead",
        select: list[str] | None = None,
        max_size: int = 5,
        order: str = "ASC",
        order_by: str = "createdAt",
        totals: list[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Records of ``entity`` matching ``where``; ``totals`` receives how many match in all."""
        search_params = {
            "where": where,
            "select": ["id", *(select or [])],
            "orderBy": order_by,
            "order": order,
            "maxSize": max_size,
        }
        response = self._request("GET", entity, params={"searchParams": json.dumps(search_params)})
        found = json_body(response, self.name)
        if not isinstance(found, dict):
            return []
        if totals is not None and isinstance(found.get("total"), int) and found["total"] >= 0:
            totals.append(found["total"])
        return list(found.get("list", []))

    def record_of(self, response: httpx.Response) -> dict[str, Any]:
        record = json_body(response, self.name)
        if not isinstance(record, dict) or "id" not in record:
            raise RetryableCrmError("unexpected answer: no record", provider=self.name, status=response.status_code)
        return record

    def _read(self, record_id: str) -> dict[str, Any]:
        return self.record_of(self._request("GET", f"Lead/{record_id}"))

    def _write(self, method: str, path: str, payload: dict[str, Any], **kwargs: Any) -> WriteOutcome:
        return write_outcome(payload, self.record_of(self._request(method, path, body=payload, **kwargs)))

    # --- CrmProvider primitives ---------------------------------------------------------------------

    def _lead_payload(self, draft: LeadDraft, operation_id: UUID) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "firstName": draft.first_name,
            "lastName": draft.last_name,
            "phoneNumber": draft.phone,
            "emailAddress": draft.email,
            "description": draft.description,
            "status": "New",
            "source": self.mapping.source_value(draft.source),
            **self._mapped_attributes(draft.values),
        }
        return {key: value for key, value in payload.items() if value is not None}

    def _changes_payload(self, record_id: str, changes: LeadChanges) -> dict[str, Any]:
        payload = {
            "phoneNumber": changes.phone,
            "emailAddress": changes.email,
            **self._mapped_attributes(changes.values),
        }
        return {key: value for key, value in payload.items() if value is not None}

    def _find_lead(self, *, phone: str | None, email: str | None) -> ExistingLead | None:
        clauses = [
            {"type": "equals", "attribute": attribute, "value": value}
            for attribute, value in (("phoneNumber", phone), ("emailAddress", email))
            if value
        ]
        found = self.search(
            [{"type": "or", "value": clauses}] if len(clauses) > 1 else clauses, select=["status"], max_size=_MATCHES
        )
        if not found:
            return None
        open_leads = [lead for lead in found if lead.get("status") not in self.closed_lead.closed]
        record_id = str((open_leads[0] if open_leads else found[-1])["id"])
        return ExistingLead(record_id, self._read(record_id))

    def _read_lead(self, record_id: str) -> ExistingLead:
        try:
            return ExistingLead(record_id, self._read(record_id))
        except PermanentCrmError as error:
            if error.status == 404:
                raise LeadNotFound(f"lead {record_id} does not exist", provider=self.name, status=404) from None
            raise

    def _find_created_by(self, operation_id: UUID) -> ExistingLead | None:
        marker = operation_marker(operation_id)
        found = self.search([{"type": "contains", "attribute": "description", "value": marker}], select=["description"])
        matches = [lead for lead in found if marker in str(lead.get("description") or "")]
        return ExistingLead(str(matches[0]["id"])) if matches else None

    def _find_by_attribute(self, attribute: str, value: str) -> ExistingLead | None:
        found = self.search([{"type": "equals", "attribute": attribute, "value": value}], select=[attribute])
        # Never trust the filter alone: a lead is this one only if it carries the value.
        matches = [lead for lead in found if lead.get(attribute) == value]
        return ExistingLead(str(matches[0]["id"])) if matches else None

    def _create(self, payload: dict[str, Any], *, check_duplicates: bool = True) -> WriteOutcome:
        if not check_duplicates:
            return self._write("POST", "Lead", payload, headers={"X-Skip-Duplicate-Check": "true"})
        response = self._request("POST", "Lead", body=payload, accept=frozenset({409}))
        if response.status_code == 409:
            candidates = json_body(response, self.name)
            confirmed = _same_person(candidates if isinstance(candidates, list) else [], payload)
            if confirmed is not None:
                raise DuplicateLeadFound(ExistingLead(str(confirmed["id"]), confirmed))
            # EspoCRM matched on the name alone: a different person with the same name.
            return self._write("POST", "Lead", payload, headers={"X-Skip-Duplicate-Check": "true"})
        return write_outcome(payload, self.record_of(response))

    def _update(self, record_id: str, patch: dict[str, Any]) -> WriteOutcome:
        return self._write("PUT", f"Lead/{record_id}", patch)

    def _missing_values(self, existing: ExistingLead, payload: dict[str, Any]) -> dict[str, Any]:
        patch = fill_empty(existing.attributes, payload, keep=_NEVER_FILLED)
        for attribute, data_attribute, extra in (
            ("phoneNumber", "phoneNumberData", {"type": "Mobile"}),
            ("emailAddress", "emailAddressData", {}),
        ):
            added = _added_contact(existing.attributes, attribute, data_attribute, payload.get(attribute), extra)
            if added is not None:
                patch[data_attribute] = added
        return patch

    def _add_note(self, record_id: str, text: str) -> str:
        note = {"type": "Post", "parentType": "Lead", "parentId": record_id, "post": text}
        try:
            return self._write("POST", "Note", note).record_id
        except CrmConfigurationError as error:
            # A note on a lead that does not exist is refused with 403 "No create access.", the same
            # answer as a role without stream access: only reading the lead tells the two apart.
            if error.status == 403 and self._lead_is_missing(record_id):
                raise LeadNotFound(f"lead {record_id} does not exist", provider=self.name, status=404) from None
            raise

    def _lead_is_missing(self, record_id: str) -> bool:
        try:
            self._read(record_id)
        except PermanentCrmError as error:
            return error.status == 404
        return False

    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        marker = operation_marker(operation_id)
        try:
            attributes = lead.attributes or self._read(lead.record_id)
        except PermanentCrmError as error:
            if error.status == 404:
                raise LeadNotFound(f"lead {lead.record_id} does not exist", provider=self.name, status=404) from None
            raise
        if marker in str(attributes.get("description") or ""):
            return True
        return any(marker in str(note.get("post") or "") for note in self._stream(lead.record_id, _STREAM_PAGE))

    def _stream(self, record_id: str, size: int, offset: int = 0) -> list[dict[str, Any]]:
        """The lead's stream entries (newest first), from ``offset``, at most ``size`` of them."""
        params = {"maxSize": str(size), "offset": str(offset)}
        stream = json_body(self._request("GET", f"Lead/{record_id}/stream", params=params), self.name)
        notes = stream.get("list", []) if isinstance(stream, dict) else []
        return [note for note in notes if isinstance(note, dict)]

    def _posts(self, record_id: str) -> list[RecordedNote]:
        """Every Post on the lead's stream (what people and crm-bridge wrote), oldest first."""
        posts: list[RecordedNote] = []
        offset = 0
        while True:
            page = self._stream(record_id, _READ_PAGE, offset)
            posts += [
                RecordedNote(str(note["id"]), str(note.get("post") or ""), _moment(note.get("createdAt")))
                for note in page
                if note.get("type") == "Post" and note.get("post")
            ]
            if len(page) < _READ_PAGE:
                return posts[::-1]
            offset += _READ_PAGE

    def _timeline_texts(self, record_id: str) -> list[str]:
        return [note.text for note in self._posts(record_id)]

    # --- LeadReader ----------------------------------------------------------------------------------

    def read_leads(self, *, after: str | None, since: datetime | None, with_notes: bool = True) -> LeadPage:
        """A page of lead ids in id order, then each lead in full (its list of phones and e-mails is
        not in a list's answer) and its Posts."""
        where: list[dict[str, Any]] = []
        if after:
            where.append({"type": "greaterThan", "attribute": "id", "value": after})
        if since is not None:
            moment = f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
            where.append({"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": moment})
        totals: list[int] = []
        found = self.search(where, max_size=_READ_PAGE, order_by="id", totals=totals)
        leads = []
        for row in found:
            record = self._read(str(row["id"]))
            leads.append(self._crm_lead(record, tuple(self._posts(record["id"])) if with_notes else ()))
        more = len(found) == _READ_PAGE
        return LeadPage(leads, leads[-1].record_id if more else None, remaining=totals[0] if totals else None)

    def _crm_lead(self, record: Mapping[str, Any], notes: tuple[RecordedNote, ...]) -> CrmLead:
        return CrmLead(
            provider=self.name,
            record_id=str(record["id"]),
            created_at=_moment(record.get("createdAt")),
            first_name=record.get("firstName") or None,
            last_name=record.get("lastName") or None,
            phones=tuple(_contact_values_in_order(record, "phoneNumber", "phoneNumberData")),
            emails=tuple(_contact_values_in_order(record, "emailAddress", "emailAddressData")),
            status=_STATUSES.get(str(record.get("status")), LeadStatus.IN_PROCESS),
            source=record.get("source") or None,
            origin=self.origins.get(str(record.get("source"))),
            description=record.get("description") or None,
            values=self._domain_values(record),
            mapped_fields=frozenset(self.mapping.lead_fields),
            notes=notes,
        )

    def _accepts_record_id(self, record_id: str) -> bool:
        return _RECORD_ID.fullmatch(record_id) is not None

    def _field_attributes(self, field_name: str) -> tuple[str, ...]:
        """A phone or e-mail field is written through its primary value and its list of values."""
        if field_name in ("phoneNumber", "emailAddress"):
            return (field_name, f"{field_name}Data")
        return (field_name,)

    def _missing_mapped_fields(self) -> list[str] | None:
        newest = self.search([], max_size=1, order="DESC")
        if not newest:
            return None  # an empty CRM: nothing to read the attribute list from yet
        attributes = set(self._read(str(newest[0]["id"])))
        return self._domain_fields_for(set(self.mapping.lead_fields.values()) - attributes)


def _moment(value: Any) -> datetime | None:
    """An EspoCRM datetime (``2026-12-05 17:43:09``, UTC) as an aware datetime."""
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def _contact_values_in_order(record: Mapping[str, Any], attribute: str, data_attribute: str) -> list[str]:
    """The lead's phones (or e-mails): the primary one first."""
    items = [item for item in record.get(data_attribute) or [] if isinstance(item, dict) and item.get(attribute)]
    values = [str(item[attribute]) for item in sorted(items, key=lambda item: not item.get("primary"))]
    if record.get(attribute) and str(record[attribute]) not in values:
        values.insert(0, str(record[attribute]))
    return values


def write_outcome(payload: dict[str, Any], record: dict[str, Any]) -> WriteOutcome:
    """The written record's id, and the attributes we sent that it does not have (silently dropped)."""
    return WriteOutcome(str(record["id"]), ignored_fields=tuple(sorted(payload.keys() - record.keys())))


def _validation_failure(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(field, check)`` from the 400 body ``{"messageTranslation":{"data":{"field","type"}}}``."""
    try:
        data = response.json()["messageTranslation"]["data"]
        return str(data["field"]), str(data.get("type") or "invalid")
    except (ValueError, KeyError, TypeError):
        return None, None


def _same_person(candidates: list[Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    """The first 409 candidate that shares our phone or e-mail, the criteria we dedupe on."""
    phone, email = payload.get("phoneNumber"), payload.get("emailAddress")
    for candidate in candidates:
        if not isinstance(candidate, dict) or "id" not in candidate:
            continue
        if phone and phone in _contact_values(candidate, "phoneNumber", "phoneNumberData"):
            return candidate
        if email and email in {v.lower() for v in _contact_values(candidate, "emailAddress", "emailAddressData")}:
            return candidate
    return None


def _contact_values(record: dict[str, Any], attribute: str, data_attribute: str) -> set[str]:
    values = {str(item.get(attribute)) for item in record.get(data_attribute) or [] if isinstance(item, dict)}
    if record.get(attribute):
        values.add(str(record[attribute]))
    return values


def _added_contact(
    existing: dict[str, Any], attribute: str, data_attribute: str, value: Any, extra: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """The lead's contact list plus our value as a secondary entry, when it has others but not ours."""
    if not value or not existing.get(attribute):
        return None
    current = [item for item in existing.get(data_attribute) or [] if isinstance(item, dict)]
    known = {str(item.get(attribute, "")).lower() for item in current} | {str(existing[attribute]).lower()}
    if str(value).lower() in known:
        return None
    entry = {attribute: value, "primary": False, "optOut": False, "invalid": False, **extra}
    return [*current, entry]
