"""The sandbox CRM: leads and their notes in a local SQLite file, for ``make run`` without a CRM.

An honest third provider rather than a mock: it implements the same primitives as EspoCRM and
Bitrix24 and passes the same contract suite, so what a person tries locally behaves as a CRM would
(upsert by phone or e-mail, unknown attributes silently dropped and reported, validation refusals,
outages). The SQLite file is the sandbox's whole state, and :class:`SandboxStore` is its admin
console: it lists what arrived and makes the next calls fail the way a CRM fails (down, slow,
rate-limited, rejecting credentials, refusing a field), which is how a local run shows retries and
the dead-letter queue.

It is for local runs only, so it lives with the local runner and not in the shared layer: a deployed
function has neither this module nor anything that imports it. Importing it registers it with the
layer's factory (:func:`crm_bridge.providers.factory.register_provider`), which is how the runner
offers it to its function processes (it imports this module in each of them before the handler, see
:mod:`infra.local.functions`). Without that registration ``CRM_PROVIDER=sandbox`` is refused, as are
settings without ``SANDBOX_DB_PATH``; and the deployed template does not offer it at all.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from crm_bridge.errors import CrmConfigurationError, CrmError, LeadNotFound, PermanentCrmError, RetryableCrmError
from crm_bridge.field_mapping import SANDBOX_NATIVE_ATTRIBUTES, FieldMapping, MappedField, SandboxMapping
from crm_bridge.providers.base import ClosedLeadAttributes, CrmProvider, ExistingLead, LeadChanges, WriteOutcome
from crm_bridge.providers.budget import remaining_seconds
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.providers.factory import register_provider
from crm_bridge.providers.http import BudgetExhausted
from crm_bridge.providers.lead_draft import LeadDraft, fill_empty, operation_marker
from crm_bridge.settings import CrmProviderName, SandboxSettings, Settings

PROVIDER_NAME = "sandbox"
CONTACT_ATTRIBUTES = ("phones", "emails")
DEFAULT_CUSTOM_FIELDS = tuple(field.value for field in MappedField)
"""The custom fields a fresh sandbox "install" has: one per domain field, named like it."""
_NEVER_FILLED = frozenset({"status", *CONTACT_ATTRIBUTES})
CLOSED_STATUSES = {"Converted": True, "Dead": False}
"""Statuses of a lead nobody works any more (as EspoCRM's), and whether it was converted."""
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id INTEGER NOT NULL REFERENCES leads (id),
    created_at TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS custom_fields (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS rejected_attributes (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS faults (seq INTEGER PRIMARY KEY AUTOINCREMENT, fault TEXT NOT NULL);
"""


class SandboxFault(StrEnum):
    """How the sandbox can be told to fail its next calls: the ways a real CRM fails."""

    SERVER_ERROR = "server_error"
    MAINTENANCE = "maintenance"
    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    TIME_LIMITED = "time_limited"


_FAULT_ERRORS: dict[SandboxFault, Callable[[], CrmError]] = {
    SandboxFault.SERVER_ERROR: lambda: RetryableCrmError("simulated server error", provider=PROVIDER_NAME, status=500),
    SandboxFault.MAINTENANCE: lambda: RetryableCrmError("simulated maintenance", provider=PROVIDER_NAME, status=503),
    SandboxFault.TIMEOUT: lambda: RetryableCrmError("no answer in time (simulated)", provider=PROVIDER_NAME),
    SandboxFault.CONNECTION_REFUSED: lambda: RetryableCrmError(
        "connection failed (simulated: refused)", provider=PROVIDER_NAME
    ),
    SandboxFault.UNAUTHORIZED: lambda: CrmConfigurationError(
        "credentials rejected (simulated)", provider=PROVIDER_NAME, status=401
    ),
    SandboxFault.FORBIDDEN: lambda: CrmConfigurationError("forbidden (simulated)", provider=PROVIDER_NAME, status=403),
    SandboxFault.RATE_LIMITED: lambda: RetryableCrmError(
        "rate limit exceeded (simulated)", provider=PROVIDER_NAME, status=429, retry_after_seconds=1.0
    ),
    SandboxFault.TIME_LIMITED: lambda: RetryableCrmError(
        "time budget exhausted (simulated)", provider=PROVIDER_NAME, status=429, retry_after_seconds=5.0
    ),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _check_attribute(name: str) -> str:
    if not _ATTRIBUTE.fullmatch(name):
        raise ValueError(f"{name!r} is not a sandbox attribute name")
    return name


class SandboxStore:
    """The SQLite file: leads (attributes as JSON), notes, and the sandbox's own configuration.

    Every call opens its own connection: several processes (the API functions and the worker of a
    local run) share the file, and SQLite's locking keeps their writes apart.
    """

    def __init__(self, path: Path, *, busy_timeout_seconds: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            if db.execute("SELECT count(*) FROM custom_fields").fetchone()[0] == 0 and not self._has_leads(db):
                db.executemany("INSERT INTO custom_fields VALUES (?)", [(name,) for name in DEFAULT_CUSTOM_FIELDS])

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=timeout or self._busy_timeout, isolation_level=None)) as db:
            yield db

    @contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction (taken at once, so concurrent read-then-write sequences serialise)."""
        with self._connection(timeout) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _has_leads(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM leads LIMIT 1").fetchone() is not None

    # --- what the provider uses ---------------------------------------------------------------------

    @staticmethod
    def take_fault(db: sqlite3.Connection) -> SandboxFault | None:
        row = db.execute("SELECT seq, fault FROM faults ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM faults WHERE seq = ?", (row[0],))
        return SandboxFault(row[1])

    @staticmethod
    def known_attributes(db: sqlite3.Connection) -> set[str]:
        custom = {row[0] for row in db.execute("SELECT name FROM custom_fields")}
        return custom | SANDBOX_NATIVE_ATTRIBUTES

    @staticmethod
    def rejected_attributes(db: sqlite3.Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT name FROM rejected_attributes")}

    @staticmethod
    def stored_attributes(db: sqlite3.Connection, lead_id: str) -> dict[str, Any] | None:
        if not lead_id.isdigit():
            return None
        row = db.execute("SELECT attributes FROM leads WHERE id = ?", (int(lead_id),)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @staticmethod
    def insert_lead(db: sqlite3.Connection, attributes: dict[str, Any]) -> str:
        cursor = db.execute(
            "INSERT INTO leads (created_at, attributes) VALUES (?, ?)",
            (_now(), json.dumps(attributes, ensure_ascii=False)),
        )
        return str(cursor.lastrowid)

    @staticmethod
    def replace_attributes(db: sqlite3.Connection, lead_id: str, attributes: dict[str, Any]) -> None:
        db.execute(
            "UPDATE leads SET attributes = ? WHERE id = ?", (json.dumps(attributes, ensure_ascii=False), int(lead_id))
        )

    @staticmethod
    def insert_note(db: sqlite3.Connection, lead_id: str, text: str) -> str:
        cursor = db.execute(
            "INSERT INTO notes (lead_id, created_at, text) VALUES (?, ?, ?)", (int(lead_id), _now(), text)
        )
        return str(cursor.lastrowid)

    @staticmethod
    def has_note_containing(db: sqlite3.Connection, lead_id: str, text: str) -> bool:
        row = db.execute("SELECT 1 FROM notes WHERE lead_id = ? AND instr(text, ?) > 0", (int(lead_id), text))
        return row.fetchone() is not None

    @staticmethod
    def find_by_contact(db: sqlite3.Connection, *, phone: str | None, email: str | None) -> list[str]:
        """The leads with this phone (E.164, exact) or e-mail (any case), oldest first."""
        rows = db.execute(
            """
            SELECT leads.id FROM leads, json_each(leads.attributes, '$.phones') AS phone
             WHERE phone.value = :phone
            UNION
            SELECT leads.id FROM leads, json_each(leads.attributes, '$.emails') AS email
             WHERE lower(email.value) = lower(:email)
            ORDER BY 1
            """,
            {"phone": phone, "email": email},
        ).fetchall()
        return [str(row[0]) for row in rows]

    @staticmethod
    def find_by_text(db: sqlite3.Connection, text: str) -> str | None:
        """The oldest lead whose description holds ``text``."""
        row = db.execute(
            "SELECT id FROM leads WHERE instr(coalesce(json_extract(attributes, '$.description'), ''), ?) > 0"
            " ORDER BY id LIMIT 1",
            (text,),
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def find_by_attribute(db: sqlite3.Connection, attribute: str, value: str) -> str | None:
        row = db.execute(
            "SELECT id FROM leads WHERE json_extract(attributes, ?) = ? ORDER BY id LIMIT 1",
            (f'$."{_check_attribute(attribute)}"', value),
        ).fetchone()
        return None if row is None else str(row[0])

    # --- the admin console: what a person (or a test) sees and sets ---------------------------------

    def leads(self) -> list[dict[str, Any]]:
        """Every lead as the sandbox shows it (attributes it lacks hidden), oldest first."""
        with self._connection() as db:
            known = self.known_attributes(db)
            rows = db.execute("SELECT id, created_at, attributes FROM leads ORDER BY id").fetchall()
        return [self._view(str(row[0]), row[1], json.loads(row[2]), known) for row in rows]

    def lead(self, lead_id: str) -> dict[str, Any]:
        with self._connection() as db:
            known = self.known_attributes(db)
            row = db.execute("SELECT id, created_at, attributes FROM leads WHERE id = ?", (int(lead_id),)).fetchone()
        if row is None:
            raise KeyError(lead_id)
        return self._view(str(row[0]), row[1], json.loads(row[2]), known)

    def notes(self, lead_id: str) -> list[str]:
        """Texts of the lead's notes, oldest first."""
        with self._connection() as db:
            return self.note_texts(db, lead_id)

    @staticmethod
    def note_texts(db: sqlite3.Connection, lead_id: str) -> list[str]:
        rows = db.execute("SELECT text FROM notes WHERE lead_id = ? ORDER BY id", (int(lead_id),)).fetchall()
        return [str(row[0]) for row in rows]

    def seed_lead(self, attributes: dict[str, Any]) -> str:
        """Store a lead directly, as if it had been created in the CRM earlier."""
        with self.transaction() as db:
            return self.insert_lead(db, attributes)

    def fail_next(self, fault: SandboxFault, times: int = 1) -> None:
        """Make the next ``times`` calls (by any process using this file) fail with ``fault``."""
        with self.transaction() as db:
            db.executemany("INSERT INTO faults (fault) VALUES (?)", [(fault.value,)] * times)

    def reject_attribute(self, attribute: str) -> None:
        """Refuse any write carrying ``attribute`` with a validation error, as a CRM refuses bad data."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO rejected_attributes VALUES (?)", (_check_attribute(attribute),))

    def accept_attribute(self, attribute: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM rejected_attributes WHERE name = ?", (attribute,))

    def drop_attribute(self, attribute: str) -> None:
        """Remove a custom field: writes ignore it, reads omit it, the health check reports it."""
        with self.transaction() as db:
            db.execute("DELETE FROM custom_fields WHERE name = ?", (attribute,))

    def clear_faults(self) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM faults")

    @staticmethod
    def _view(lead_id: str, created_at: str, attributes: dict[str, Any], known: set[str]) -> dict[str, Any]:
        shown = {key: value for key, value in attributes.items() if key in known}
        return {"id": lead_id, "created_at": created_at, **shown}


class SandboxProvider(CrmProvider):
    name = PROVIDER_NAME
    person_attributes = frozenset({"first_name", "last_name", *CONTACT_ATTRIBUTES})
    identity_attributes = CONTACT_ATTRIBUTES
    replaced_on_completion = ("first_name", "last_name", "source")
    closed_lead = ClosedLeadAttributes("status", CLOSED_STATUSES, "contact_id", "account_id")
    text_attribute = "description"
    status_attribute = "status"
    status_values = EspoCrmProvider.status_values  # the sandbox names its statuses and sources as EspoCRM does
    source_attribute = "source"
    origins = EspoCrmProvider.origins

    def __init__(
        self,
        settings: SandboxSettings,
        mapping: SandboxMapping,
        *,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(mapping, **({"clock": clock} if clock else {}))
        self.store = SandboxStore(settings.db_path, busy_timeout_seconds=timeout_seconds)
        self._timeout = timeout_seconds
        self._log.warning(
            "CRM_PROVIDER=sandbox: leads are kept in a local SQLite file, not sent to any CRM",
            extra={"provider": self.name, "sandbox_db": settings.db_path.name},
        )

    @contextmanager
    def _request(self) -> Iterator[sqlite3.Connection]:
        """One call to the sandbox "CRM": within the caller's time budget, and failing first when a
        fault was injected (the fault is used up even though the call fails)."""
        remaining = remaining_seconds()
        if remaining is not None and remaining <= 0:
            raise BudgetExhausted("time budget spent before the CRM answered", provider=self.name)
        timeout = min(self._timeout, remaining) if remaining is not None else self._timeout
        with self.store.transaction(timeout) as db:
            fault = self.store.take_fault(db)
            if fault is None:
                yield db
                return
        raise _FAULT_ERRORS[fault]()

    def _refuse_rejected(self, db: sqlite3.Connection, payload: dict[str, Any]) -> None:
        rejected = sorted(self.store.rejected_attributes(db) & payload.keys())
        if rejected:
            raise PermanentCrmError("validation failed (valid)", provider=self.name, status=400, field=rejected[0])

    def _known(self, db: sqlite3.Connection, payload: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The attributes the sandbox has, and the names of those it silently drops."""
        known = self.store.known_attributes(db)
        return {k: v for k, v in payload.items() if k in known}, tuple(sorted(payload.keys() - known))

    # --- CrmProvider primitives ---------------------------------------------------------------------

    def _lead_payload(self, draft: LeadDraft, operation_id: UUID) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "first_name": draft.first_name,
            "last_name": draft.last_name,
            "phones": [draft.phone] if draft.phone else None,
            "emails": [draft.email] if draft.email else None,
            "description": draft.description,
            "status": "New",
            "source": self.mapping.source_value(draft.source),
            **self._mapped_attributes(draft.values),
        }
        return {key: value for key, value in payload.items() if value is not None}

    def _changes_payload(self, record_id: str, changes: LeadChanges) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "phones": [changes.phone] if changes.phone else None,
            "emails": [changes.email] if changes.email else None,
            **self._mapped_attributes(changes.values),
        }
        return {key: value for key, value in payload.items() if value is not None}

    def _find_lead(self, *, phone: str | None, email: str | None) -> ExistingLead | None:
        with self._request() as db:
            leads = [
                ExistingLead(lead_id, self.store.stored_attributes(db, lead_id) or {})
                for lead_id in self.store.find_by_contact(db, phone=phone, email=email)
            ]
        open_leads = [lead for lead in leads if self._closed(lead) is None]
        return open_leads[0] if open_leads else (leads[-1] if leads else None)

    def _read_lead(self, record_id: str) -> ExistingLead:
        with self._request() as db:
            attributes = self.store.stored_attributes(db, record_id)
        if attributes is None:
            raise LeadNotFound(f"lead {record_id} does not exist", provider=self.name, status=404)
        return ExistingLead(record_id, attributes)

    def _find_created_by(self, operation_id: UUID) -> ExistingLead | None:
        with self._request() as db:
            lead_id = self.store.find_by_text(db, operation_marker(operation_id))
        return ExistingLead(lead_id) if lead_id else None

    def _find_by_attribute(self, attribute: str, value: str) -> ExistingLead | None:
        with self._request() as db:
            if attribute not in self.store.known_attributes(db):
                return None
            lead_id = self.store.find_by_attribute(db, attribute, value)
        return ExistingLead(lead_id) if lead_id else None

    def _create(self, payload: dict[str, Any], *, check_duplicates: bool = True) -> WriteOutcome:
        # Like Bitrix24, the sandbox runs no duplicate check of its own: the upsert searched first.
        with self._request() as db:
            self._refuse_rejected(db, payload)
            kept, ignored = self._known(db, payload)
            lead_id = self.store.insert_lead(db, kept)
        return WriteOutcome(lead_id, ignored_fields=ignored)

    def _update(self, record_id: str, patch: dict[str, Any]) -> WriteOutcome:
        """Set the patch's attributes; phones and e-mails in it are added beside the lead's own."""
        with self._request() as db:
            attributes = self.store.stored_attributes(db, record_id)
            if attributes is None:
                raise LeadNotFound(f"lead {record_id} does not exist", provider=self.name, status=404)
            self._refuse_rejected(db, patch)
            kept, ignored = self._known(db, patch)
            for contact in CONTACT_ATTRIBUTES:
                if contact in kept:
                    kept[contact] = _merged_contacts(attributes.get(contact) or [], kept[contact])
            self.store.replace_attributes(db, record_id, attributes | kept)
        return WriteOutcome(record_id, ignored_fields=ignored)

    def _missing_values(self, existing: ExistingLead, payload: dict[str, Any]) -> dict[str, Any]:
        patch = fill_empty(existing.attributes, payload, keep=_NEVER_FILLED)
        for contact in CONTACT_ATTRIBUTES:
            have = {str(value).lower() for value in existing.attributes.get(contact) or []}
            new = [value for value in payload.get(contact) or [] if str(value).lower() not in have]
            if new:
                patch[contact] = new
        return patch

    def _add_note(self, record_id: str, text: str) -> str:
        with self._request() as db:
            if self.store.stored_attributes(db, record_id) is None:
                raise LeadNotFound(f"lead {record_id} does not exist", provider=self.name, status=404)
            return self.store.insert_note(db, record_id, text)

    def _timeline_texts(self, record_id: str) -> list[str]:
        with self._request() as db:
            return self.store.note_texts(db, record_id)

    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        marker = operation_marker(operation_id)
        with self._request() as db:
            attributes = self.store.stored_attributes(db, lead.record_id)
            if attributes is None:
                raise LeadNotFound(f"lead {lead.record_id} does not exist", provider=self.name, status=404)
            return marker in str(attributes.get("description") or "") or self.store.has_note_containing(
                db, lead.record_id, marker
            )

    def _missing_mapped_fields(self) -> list[str] | None:
        with self._request() as db:
            known = self.store.known_attributes(db)
        return self._domain_fields_for(set(self.mapping.lead_fields.values()) - known)


def _merged_contacts(current: list[str], added: list[str]) -> list[str]:
    """The lead's contacts plus the new ones it lacks (compared without case), never twice."""
    seen = {value.lower() for value in current}
    return [*current, *(value for value in added if value.lower() not in seen)]


def build_sandbox_provider(settings: Settings, mapping: FieldMapping) -> SandboxProvider:
    """The factory's builder for ``CRM_PROVIDER=sandbox`` (settings validation guarantees the section)."""
    if settings.sandbox is None:  # pragma: no cover - load_settings refuses the sandbox without a file
        raise AssertionError("CRM_PROVIDER=sandbox without SANDBOX_DB_PATH was not validated")
    return SandboxProvider(settings.sandbox, mapping.sandbox, timeout_seconds=settings.crm_timeout_seconds)


register_provider(CrmProviderName.SANDBOX, build_sandbox_provider)
