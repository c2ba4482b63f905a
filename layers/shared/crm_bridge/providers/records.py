"""A CRM's leads as they are, read for a migration: the same shape whatever the CRM.

A migration (``python -m crm_bridge.migrate``) reads leads from one CRM as :class:`CrmLead` and
writes them into the other with :meth:`crm_bridge.providers.CrmProvider.import_lead`. What ties a
copy to its original is written into the copy: the source field (``bitrix24:101``) and a marker
line in its text and in each note's, so that a rerun finds every write it made before.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property

from crm_bridge.field_mapping import MappedField
from crm_bridge.normalization import normalize_email, normalize_phone

_IMPORT_PREFIX = "crm-bridge import "
_OPERATION = re.compile(r"crm-bridge operation ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_IMPORTED = re.compile(re.escape(_IMPORT_PREFIX) + r"(\w+:[\w-]+)(?: note [\w-]+)?$", re.MULTILINE)
PROVIDER_LABELS = {"espocrm": "EspoCRM", "bitrix24": "Bitrix24", "sandbox": "the sandbox"}


class LeadStatus(StrEnum):
    """Where a lead stands, in words both CRMs have (each maps them to its own statuses)."""

    NEW = "new"
    IN_PROCESS = "in_process"
    CONVERTED = "converted"
    LOST = "lost"


class LeadOrigin(StrEnum):
    """Where a lead came from, in words both CRMs have (each maps its own sources to them)."""

    WEBSITE = "website"
    CALL = "call"
    EMAIL = "email"
    PARTNER = "partner"
    ADVERTISING = "advertising"
    EXISTING_CUSTOMER = "existing_customer"
    OTHER = "other"


@dataclass(frozen=True)
class Contacts:
    """A lead's phones and e-mails as a CRM matches them (E.164, lower case), and the rest as typed."""

    phones: tuple[str, ...]
    emails: tuple[str, ...]
    unrecognised: tuple[str, ...]

    @classmethod
    def of(cls, phones_typed: Iterable[str], emails_typed: Iterable[str]) -> Contacts:
        phones: list[str] = []
        emails: list[str] = []
        unrecognised: list[str] = []
        for values, normalize, into in (
            (phones_typed, normalize_phone, phones),
            (emails_typed, normalize_email, emails),
        ):
            for value in values:
                try:
                    into.append(normalize(value))
                except ValueError:
                    unrecognised.append(value)
        return cls(tuple(dict.fromkeys(phones)), tuple(dict.fromkeys(emails)), tuple(unrecognised))

    def pairs(self) -> list[tuple[str | None, str | None]]:
        """(phone, e-mail) pairs to search by, the primary ones first."""
        count = max(len(self.phones), len(self.emails))
        return [
            (self.phones[i] if i < len(self.phones) else None, self.emails[i] if i < len(self.emails) else None)
            for i in range(count)
        ]

    def matchable(self) -> set[str]:
        """Every phone and e-mail a CRM can find the person by."""
        return {*self.phones, *self.emails}


@dataclass(frozen=True)
class RecordedNote:
    """A comment on a lead's timeline (EspoCRM: a stream Post; Bitrix24: a timeline comment)."""

    note_id: str
    text: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class CrmLead:
    """A lead as its CRM holds it, in domain terms."""

    provider: str
    record_id: str
    created_at: datetime | None
    first_name: str | None = None
    last_name: str | None = None
    phones: tuple[str, ...] = ()
    """As stored: in whatever form a salesperson typed them."""
    emails: tuple[str, ...] = ()
    status: LeadStatus = LeadStatus.NEW
    source: str | None = None
    """The CRM's own lead source, as stored (``RECOMMENDATION``): a copy's text keeps it."""
    origin: LeadOrigin | None = None
    """That source in words both CRMs have, when it has one: what a copy's source field takes."""
    description: str | None = None
    values: Mapping[MappedField, str | bool] = field(default_factory=dict)
    mapped_fields: frozenset[MappedField] = frozenset()
    """The fields its CRM has a place for (a value it cannot hold is not missing from it)."""
    notes: tuple[RecordedNote, ...] = ()

    @cached_property
    def contacts(self) -> Contacts:
        """Its phones and e-mails as a CRM matches them."""
        return Contacts.of(self.phones, self.emails)

    @property
    def key(self) -> str:
        """How crm-bridge names this lead in another CRM: ``bitrix24:101``."""
        return f"{self.provider}:{self.record_id}"

    @property
    def copied_from(self) -> str | None:
        """The lead this one is a copy of (its source field), if a migration made or merged it."""
        value = self.values.get(MappedField.SOURCE_RECORD)
        return str(value) if value else None

    def imported_as_copy_of(self) -> str | None:
        """The lead whose copy this one was created as (the marker in its own text), if any."""
        match = _IMPORTED.search(self.description or "")
        return match.group(1) if match else None

    def created_by_operation(self) -> str | None:
        """The crm-bridge operation that created this lead (the first marker in its text), if any."""
        match = _OPERATION.search(self.description or "")
        return match.group(1) if match else None


@dataclass(frozen=True)
class LeadPage:
    leads: list[CrmLead]
    cursor: str | None
    """The last record id of the page: the next page starts after it; None when this was the last."""
    remaining: int | None = None
    """How many leads the query has from this page on (None: the CRM did not say)."""


def import_marker(source_key: str, note_id: str | None = None) -> str:
    """The last line of what a migration writes: the lead (``bitrix24:101``) or its note it copies."""
    return f"{_IMPORT_PREFIX}{source_key}" + (f" note {note_id}" if note_id else "")


def imported_from(text: str, provider: str) -> bool:
    """Whether ``text`` is a migration's copy of something of ``provider``'s: copying it back there
    would duplicate the original."""
    return any(match.group(1).startswith(f"{provider}:") for match in _IMPORTED.finditer(text))


def written_by_operation_in(text: str, known: str) -> bool:
    """Whether ``text`` was written by a crm-bridge operation whose marker ``known`` holds too: a
    dual-written note the other CRM has already (copying it would show it twice)."""
    match = _OPERATION.search(text)
    return match is not None and match.group(0) in known


class LeadReader(ABC):
    """A CRM whose leads a migration can read: every lead, in record id order, page by page."""

    @abstractmethod
    def read_leads(self, *, after: str | None, since: datetime | None, with_notes: bool = True) -> LeadPage:
        """The leads after record ``after`` (None: from the first), created or changed at or after
        ``since`` (None: all), in record id order, with their notes oldest first."""
