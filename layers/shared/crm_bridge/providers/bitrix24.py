"""Bitrix24 provider: JSON POSTs to an inbound webhook (``<webhook>/<method>.json``).

Quirks it handles (see shared/research/bitrix24-api.md):
* the webhook URL contains its token: it is read from its secret store per call, never logged,
  and transport errors are re-raised without it;
* ``crm.duplicate.findbycomm`` answers ``[]`` when nothing matched and ``{"LEAD": [...]}`` otherwise;
* a PHONE/EMAIL item sent without ``ID`` to ``crm.lead.update`` is *appended*, so we send only the
  values the lead does not have yet;
* rate limits: 503 ``QUERY_LIMIT_EXCEEDED`` and 429 ``OPERATION_TIME_LIMIT`` mean the request did
  not run and are retried later; ``OVERLOAD_LIMIT`` is a manual block an operator must lift;
* list (enum) user fields take portal-specific item ids and booleans are ``Y``/``N``: both come
  from the field mapping.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import phonenumbers

from crm_bridge.errors import CrmConfigurationError, CrmError, LeadNotFound, PermanentCrmError, RetryableCrmError
from crm_bridge.field_mapping import Bitrix24Mapping, LeadSourceKind
from crm_bridge.observability import redact
from crm_bridge.providers.base import CrmProvider, ExistingLead, LeadChanges, WriteOutcome
from crm_bridge.providers.http import error_for_status, make_client, retry_after_header, send
from crm_bridge.providers.lead_draft import LeadDraft, fill_empty, operation_marker
from crm_bridge.settings import Bitrix24Settings

ORIGINATOR_ID = "crm-bridge"
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


_WRITING_METHODS = frozenset({"add", "update", "delete"})
"""Bitrix24 calls everything with POST; these method names (``crm.lead.add``...) change data."""


class Bitrix24Provider(CrmProvider):
    name = "bitrix24"

    def __init__(
        self,
        settings: Bitrix24Settings,
        mapping: Bitrix24Mapping,
        *,
        timeout_seconds: float,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(mapping, **({"clock": clock} if clock else {}))
        self._settings = settings
        self._client = make_client(timeout_seconds, transport)
        self._wall_clock = wall_clock

    def close(self) -> None:
        self._client.close()

    # --- HTTP --------------------------------------------------------------------------------------

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        webhook = self._settings.webhook.get().rstrip("/")
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

    def _error(self, response: httpx.Response, body: dict[str, Any]) -> CrmError:
        status = response.status_code
        code = str(body.get("error") or "")
        description = redact(str(body.get("error_description") or ""))[:_MAX_REASON_LENGTH]
        reason = description or code or f"HTTP {status}"
        details: dict[str, Any] = {"provider": self.name, "status": status, "code": code or None}
        if code == "QUERY_LIMIT_EXCEEDED":
            return RetryableCrmError(
                "rate limit exceeded", retry_after_seconds=QUERY_LIMIT_RETRY_AFTER_SECONDS, **details
            )
        if code == "OPERATION_TIME_LIMIT":
            return RetryableCrmError(
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

    # --- CrmProvider primitives ---------------------------------------------------------------------

    def _lead_payload(self, draft: LeadDraft, operation_id: UUID) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "TITLE": f"{draft.title}: {_TITLES[draft.source]}",
            "NAME": draft.first_name,
            "LAST_NAME": draft.last_name,
            "COMMENTS": draft.description,
            "SOURCE_ID": self.mapping.lead_source.get(draft.source),
            "ORIGINATOR_ID": ORIGINATOR_ID,
            "ORIGIN_ID": str(operation_id),
            **_multifield_items({}, draft.phone, draft.email),
            **self._mapped_attributes(draft.values),
        }
        return {key: value for key, value in fields.items() if value is not None}

    def _changes_payload(self, record_id: str, changes: LeadChanges) -> dict[str, Any]:
        fields = self._mapped_attributes(changes.values)
        if changes.phone or changes.email:
            fields |= _multifield_items(self._read(record_id), changes.phone, changes.email)
        return fields

    @staticmethod
    def _boolean(value: bool) -> Any:
        return "Y" if value else "N"

    def _read(self, record_id: str) -> dict[str, Any]:
        record = self._call("crm.lead.get", {"id": record_id})
        if not isinstance(record, dict):
            raise RetryableCrmError("unexpected answer reading a lead", provider=self.name)
        return record

    def _find_lead(self, *, phone: str | None, email: str | None) -> ExistingLead | None:
        for kind, value in (("PHONE", phone), ("EMAIL", email)):
            if not value:
                continue
            found = self._call("crm.duplicate.findbycomm", {"entity_type": "LEAD", "type": kind, "values": [value]})
            # Nothing found is an empty *list*; matches are {"LEAD": [ids]} (ids only).
            lead_ids = found.get("LEAD", []) if isinstance(found, dict) else []
            if lead_ids:
                oldest = str(min(int(lead_id) for lead_id in lead_ids))
                return ExistingLead(oldest, self._read(oldest))
        return None

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
        return patch | _multifield_items(existing.attributes, phone, email)

    def _add_note(self, record_id: str, text: str) -> str:
        comment = {"fields": {"ENTITY_ID": int(record_id), "ENTITY_TYPE": "lead", "COMMENT": text}}
        return str(self._call("crm.timeline.comment.add", comment))

    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        """Our own lead (``ORIGIN_ID``), or the marker in its comments or newest timeline comments."""
        marker = operation_marker(operation_id)
        record = lead.attributes or self._read(lead.record_id)
        if record.get("ORIGIN_ID") == str(operation_id) or marker in str(record.get("COMMENTS") or ""):
            return True
        comments = self._call(
            "crm.timeline.comment.list",
            {
                "filter": {"ENTITY_ID": int(lead.record_id), "ENTITY_TYPE": "lead"},
                "select": ["ID", "COMMENT"],
                "order": {"ID": "DESC"},
            },
        )
        return any(isinstance(item, dict) and marker in str(item.get("COMMENT") or "") for item in comments or [])

    def _missing_mapped_fields(self) -> list[str] | None:
        fields = self._call("crm.lead.fields", {})
        if not isinstance(fields, dict):
            raise RetryableCrmError("unexpected answer to crm.lead.fields", provider=self.name)
        return self._domain_fields_for(set(self.mapping.lead_fields.values()) - fields.keys())


def _first_value(items: Any) -> str | None:
    return str(items[0]["VALUE"]) if isinstance(items, list) and items else None


def _comparable(kind: str, value: str) -> str:
    """Phones compared as E.164 whatever format a person typed into the CRM; e-mails lower-cased."""
    if kind == "EMAIL":
        return value.strip().lower()
    try:
        return phonenumbers.format_number(phonenumbers.parse(value, None), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return re.sub(r"[^\d+]", "", value)


def _multifield_items(existing: dict[str, Any], phone: str | None, email: str | None) -> dict[str, Any]:
    """New PHONE/EMAIL items for values the lead lacks (an item without ID is appended by Bitrix)."""
    items: dict[str, Any] = {}
    for (kind, value_type), value in zip(_MULTIFIELDS, (phone, email), strict=True):
        if not value:
            continue
        known = {_comparable(kind, str(item.get("VALUE", ""))) for item in existing.get(kind) or []}
        if _comparable(kind, value) not in known:
            items[kind] = [{"VALUE": value, "VALUE_TYPE": value_type}]
    return items
