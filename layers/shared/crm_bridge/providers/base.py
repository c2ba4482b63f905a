"""The provider interface every CRM implements, and the upsert logic they all share.

A provider supplies a handful of CRM-specific primitives (find, read, create, update, add a note,
list the attributes it has); :class:`CrmProvider` composes them into the five operations the rest
of crm-bridge uses, so "a repeat submission updates the empty fields and adds a note" is written
once for every CRM.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel, ConfigDict

from crm_bridge.errors import CrmError, ErrorKind, LeadNotFound, PermanentCrmError
from crm_bridge.field_mapping import MappedField, ProviderMapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.observability import get_logger
from crm_bridge.providers.lead_draft import (
    CONTACT_LABELS,
    FIELD_LABELS,
    LeadDraft,
    activity_note,
    add_details,
    application_summary,
    closed_lead_line,
    copied_note,
    draft_from_activity,
    draft_from_application,
    draft_from_copy,
    is_empty,
    repeat_application_note,
)
from crm_bridge.providers.records import (
    Contacts,
    CrmLead,
    LeadOrigin,
    LeadStatus,
    import_marker,
    imported_from,
    written_by_operation_in,
)


class LeadAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    HELD = "held"
    """A click kept beside its visitor session, not written: nothing shows a person behind it yet."""
    FOLDED = "folded"
    """A click over its visitor session's hourly cap: counted, not written."""


class ProviderResult(BaseModel):
    """What a CRM write did. Carries ids only: safe to log and to return to the website."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    provider: str
    record_id: str
    action: LeadAction
    elapsed_ms: float
    activity_id: str | None = None
    ignored_fields: tuple[str, ...] = ()
    """Attributes the CRM silently dropped (EspoCRM ignores unknown ones): a mapping problem."""
    dropped_fields: tuple[str, ...] = ()
    """Attributes the CRM refused (a validation failure naming the field: a value too long for it,
    an option it lacks) and the lead was written without; their values are in its description, or
    in the note recording the submission when the description was not written."""


class ImportAction(StrEnum):
    CREATED = "created"
    """No lead of this person here: the copy is a new lead."""
    MERGED = "merged"
    """This CRM had the person's lead (the live flow made it, or another copy): the history was added to it."""
    COMPLETED = "completed"
    """An earlier run copied the lead but not all of it (stopped midway, or the original changed since)."""
    UNCHANGED = "unchanged"
    """Everything was here already."""


@dataclass(frozen=True)
class ImportResult:
    action: ImportAction
    record_id: str
    """The lead here ("" for a dry run's new lead)."""
    notes_written: int = 0
    dropped_fields: tuple[str, ...] = ()


class ConnectionReport(BaseModel):
    """The health check's view of a CRM: reachable, how fast, and which mapped fields it lacks."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    provider: str
    reachable: bool
    elapsed_ms: float
    missing_fields: list[str] | None = None
    """Domain fields whose mapped attribute the CRM does not have; None when it cannot be told."""
    error_kind: ErrorKind | None = None
    error: str | None = None


class LeadChanges(BaseModel):
    """Fields to set on a known lead, in domain terms; what is None is left alone."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    values: dict[MappedField, str | bool] = {}
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class ExistingLead:
    record_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClosedLeadAttributes:
    """Where a CRM's lead says it is closed, and what it became."""

    status: str
    closed: Mapping[str, bool]
    """Closing values of ``status`` -> whether the lead was converted (else: lost)."""
    contact: str
    account: str


@dataclass(frozen=True)
class ClosedLead:
    """A lead nobody works any more: converted (into a contact, an account) or closed as lost.
    A repeat application or a click for it makes a new lead instead of a note on it."""

    record_id: str
    converted: bool
    contact_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class WriteOutcome:
    record_id: str
    ignored_fields: tuple[str, ...] = ()
    dropped_fields: tuple[str, ...] = ()


Details = Mapping[str, tuple[str, object]]
"""CRM attribute -> (label, value) of what a write carries, as a salesperson reads it."""


_REFUSED_NOTE = "The CRM refused to store these values in their fields; they are kept here."


_COPIES = UUID("5b0c3f47-8d0e-4f6a-9c1e-2a7d6e4b9f10")
"""Namespace of the operation ids of a migration's copies: one per original lead, the same every run."""


def copy_operation_id(lead: CrmLead) -> UUID:
    """The copy's operation id (Bitrix24 keeps it as ``ORIGIN_ID``): derived from the original lead."""
    return uuid5(_COPIES, lead.key)


class DuplicateLeadFound(Exception):
    """Raised by ``_create`` when the CRM reveals that the lead exists already (a race or a retry)."""

    def __init__(self, existing: ExistingLead) -> None:
        super().__init__(existing.record_id)
        self.existing = existing


class CrmProvider(ABC):
    name: ClassVar[str]
    free_text_attribute: ClassVar[str | None] = None
    """The lead attribute holding its text, where a value the CRM refuses to store in its own field
    is written instead (``Label: value``) so that the lead is not lost with it. Set by providers
    whose CRM refuses a whole write over one field's value and names that field (EspoCRM's 400
    ``validationFailure``); None keeps such a refusal permanent (a dead letter)."""
    contact_attributes: ClassVar[Mapping[str, str]] = {}
    """The CRM's attributes for :meth:`LeadDraft.contacts`' keys (``first_name``, ``phone``, ...)."""
    closed_lead: ClassVar[ClosedLeadAttributes]
    person_attributes: ClassVar[frozenset[str]]
    """The lead attributes that name and reach the person (names, phones, e-mails): a repeat submission
    never writes them, since matching a lead by one phone or e-mail proves nothing about who typed the
    rest. They go into the repeat's note (:func:`repeat_application_note`)."""
    identity_attributes: ClassVar[tuple[str, ...]] = ()
    """The lead attributes holding its phones and e-mails: a lead with none is an anonymous visitor's
    (made from a click), which the visitor's application completes instead of making a second lead."""
    text_attribute: ClassVar[str]
    """The lead attribute holding its text (the description): where a copy's marker is."""
    status_attribute: ClassVar[str]
    """The lead attribute a migration's copy takes its status in (see :attr:`status_values`)."""
    status_values: ClassVar[Mapping[LeadStatus, str]]
    source_attribute: ClassVar[str]
    """The lead attribute holding its source (a migration's copy takes the original's, see :attr:`origins`)."""
    origins: ClassVar[Mapping[str, LeadOrigin]]
    """This CRM's lead sources and what they mean; the first listed for an origin is the one written."""
    replaced_on_completion: ClassVar[tuple[str, ...]] = ()
    """The attributes an application overwrites on an anonymous visitor's lead: its placeholder name,
    and its source (a messenger click's, which the lead no longer is)."""

    def __init__(self, mapping: ProviderMapping, clock: Callable[[], float] = time.perf_counter) -> None:
        self.mapping = mapping
        self._clock = clock
        self._log = get_logger()

    def close(self) -> None:  # noqa: B027  # a provider without connections has nothing to release
        """Release pooled connections. A Lambda keeps its provider for the container's life; tools and
        tests that build many close each one."""

    # --- the interface ---------------------------------------------------------------------------

    def upsert_lead(
        self,
        application: Application,
        operation_id: UUID,
        session_lead: Callable[[], str | None] | None = None,
    ) -> ProviderResult:
        """Create the lead, or, when one with the same phone or e-mail exists, fill its empty
        fields but the person's name and contacts (:attr:`person_attributes`) and record the repeat
        submission on its timeline, with the name and contacts it gave. Safe to retry.

        ``session_lead`` tells the lead of the applicant's visitor session (asked only when no lead
        has their phone or e-mail): when it is an anonymous visitor's lead, made from their clicks,
        the application completes it, so the clicks and the application are one lead."""
        started = self._clock()
        draft = draft_from_application(application, operation_id)
        payload = self._lead_payload(draft, operation_id)
        details = self._details(draft.values, draft.contacts())
        existing = self._find_lead(phone=draft.phone, email=draft.email)
        anonymous = self._anonymous_lead(session_lead()) if existing is None and session_lead is not None else None
        if anonymous is not None:
            return self._complete_anonymous_lead(anonymous, application, payload, details, operation_id, started)
        if existing is None:
            try:
                created, _ = self._write_without_refused(self._create, payload, details)
            except DuplicateLeadFound as duplicate:
                existing = duplicate.existing
            else:
                return self._result(created.record_id, LeadAction.CREATED, started, created)
        if self._recorded(existing, operation_id):  # an earlier attempt wrote it; its answer was lost
            return self._result(existing.record_id, LeadAction.UNCHANGED, started)
        closed = self._closed(existing)
        if closed is not None:  # converted or lost: a new lead, not a note nobody reads
            return self._create_successor(closed, draft, operation_id, started, again="Applied again")
        patch = {
            attribute: value
            for attribute, value in self._missing_values(existing, payload).items()
            if attribute not in self.person_attributes
        }
        action = LeadAction.UNCHANGED
        outcome = WriteOutcome(existing.record_id)
        unwritten: list[tuple[str, object]] = []
        if patch:
            outcome, unwritten = self._write_without_refused(
                lambda attributes: self._update(existing.record_id, attributes), patch, details
            )
            action = LeadAction.UPDATED
        note = add_details(repeat_application_note(application, operation_id), unwritten)
        note_id = self._add_note(existing.record_id, note)
        return self._result(existing.record_id, action, started, outcome, activity_id=note_id)

    def log_activity(
        self,
        lead_id: str,
        activity: MessengerActivity,
        operation_id: UUID | None = None,
        *,
        earlier_leads: Sequence[str] = (),
    ) -> ProviderResult:
        """Record a messenger click on a known lead's timeline, once per ``operation_id``.

        The id is the visitor session's lead (no caller names one); one that cannot be this CRM's
        is :class:`LeadNotFound` before any request, as a deleted lead. ``earlier_leads``: the leads
        the session pointed at before (the visitor applied meanwhile): an attempt whose answer was
        lost may have written the click there, and then it is not written again.

        A click for a closed lead (converted, lost) makes a new lead instead, once per
        ``operation_id``: the result's ``record_id`` is then the new lead's."""
        started = self._clock()
        if not self._accepts_record_id(lead_id):
            raise LeadNotFound(f"the lead id is not of {self.name}'s form", provider=self.name)
        lead = self._read_lead(lead_id)
        if operation_id is not None and (
            self._recorded(lead, operation_id) or self._recorded_on_any(earlier_leads, operation_id)
        ):
            return self._result(lead_id, LeadAction.UNCHANGED, started)
        closed = self._closed(lead)
        if closed is not None:
            made = self._find_created_by(operation_id) if operation_id is not None else None
            if made is not None:  # an earlier attempt of this click made it; its answer was lost
                return self._result(made.record_id, LeadAction.UNCHANGED, started)
            draft = draft_from_activity(activity, operation_id)
            again = "Clicked a messenger link again"
            return self._create_successor(closed, draft, operation_id or uuid4(), started, again=again)
        note_id = self._add_note(lead_id, activity_note(activity, operation_id))
        return self._result(lead_id, LeadAction.UPDATED, started, activity_id=note_id)

    def create_minimal_lead_from_activity(self, activity: MessengerActivity, operation_id: UUID) -> ProviderResult:
        """One lead per anonymous visitor session: found again by its session id when the mapping
        stores it, so a retried or repeated click adds an activity instead of a second lead."""
        started = self._clock()
        session_attribute = self.mapping.attribute(MappedField.VISITOR_SESSION_ID)
        existing = self._find_by_attribute(session_attribute, activity.session_id) if session_attribute else None
        if existing is not None:
            if self._recorded(existing, operation_id):  # this very click made the lead, or noted it
                return self._result(existing.record_id, LeadAction.UNCHANGED, started)
            note_id = self._add_note(existing.record_id, activity_note(activity, operation_id))
            return self._result(existing.record_id, LeadAction.UPDATED, started, activity_id=note_id)
        draft = draft_from_activity(activity, operation_id)
        created, _ = self._write_without_refused(
            lambda payload: self._create(payload, check_duplicates=False),
            self._lead_payload(draft, operation_id),
            self._details(draft.values, draft.contacts()),
        )
        return self._result(created.record_id, LeadAction.CREATED, started, created)

    def update_lead(self, lead_id: str, changes: LeadChanges) -> ProviderResult:
        """Set the given fields on a known lead (overwriting what it has); a value the CRM refuses
        to store in its field goes on the lead's timeline instead."""
        started = self._clock()
        patch = self._changes_payload(lead_id, changes)
        if not patch:
            return self._result(lead_id, LeadAction.UNCHANGED, started)
        details = self._details(changes.values, {"phone": changes.phone, "email": changes.email})
        outcome, unwritten = self._write_without_refused(
            lambda attributes: self._update(lead_id, attributes), patch, details
        )
        note_id = self._add_note(lead_id, add_details(_REFUSED_NOTE, unwritten)) if unwritten else None
        return self._result(lead_id, LeadAction.UPDATED, started, outcome, activity_id=note_id)

    def import_lead(self, lead: CrmLead, *, dry_run: bool = False) -> ImportResult:
        """Copy another CRM's lead into this one with its notes, oldest first: onto the lead it was
        copied to before (its source field, its marker), else onto this CRM's lead of the same person
        (phone or e-mail, the live flow's rule: an applicant who arrived here already gets the history,
        not a second lead), else as a new lead. Writes only what is missing (empty fields, notes whose
        marker is not here yet), so a rerun, or a run resumed after a crash, writes nothing twice.
        ``dry_run`` reads and writes nothing; the result says what would have been done."""
        contacts = lead.contacts
        pairs = contacts.pairs()
        primary = pairs[0] if pairs else (None, None)
        draft = draft_from_copy(lead, *primary, contacts.unrecognised)
        payload = self._lead_payload(draft, copy_operation_id(lead)) | {
            self.status_attribute: self.status_values[lead.status]
        }
        source = next((value for value, origin in self.origins.items() if origin is lead.origin), None)
        if source is not None:
            payload[self.source_attribute] = source
        details = self._details(draft.values, draft.contacts())
        notes = [note for note in lead.notes if not imported_from(note.text, self.name)]
        existing = self._copy_of(lead, contacts)
        if existing is None:
            if dry_run:
                return ImportResult(ImportAction.CREATED, "", len(notes))
            created, _ = self._write_without_refused(
                lambda attributes: self._create(attributes, check_duplicates=False), payload, details
            )
            self._add_contacts(created.record_id, contacts)
            for note in notes:
                self._add_note(created.record_id, copied_note(lead, note))
            return ImportResult(ImportAction.CREATED, created.record_id, len(notes), created.dropped_fields)
        known = "\n".join(
            [
                str(existing.attributes.get(self.text_attribute) or ""),
                *self._timeline_texts(existing.record_id),
            ]
        )
        original = lead.copied_from == f"{self.name}:{existing.record_id}"
        if original:  # the lead comes back where it was copied from: it names no source, has its own text
            payload = {key: value for key, value in payload.items() if key not in self._copy_attributes()}
        copied_before = original or import_marker(lead.key) in known
        missing_notes = [
            note
            for note in notes
            if import_marker(lead.key, note.note_id) not in known and not written_by_operation_in(note.text, known)
        ]
        patch = self._missing_values(existing, payload)
        extra_contacts = self._contacts_missing(existing, contacts)
        if copied_before and not patch and not missing_notes and not extra_contacts:
            return ImportResult(ImportAction.UNCHANGED, existing.record_id)
        action = ImportAction.COMPLETED if copied_before else ImportAction.MERGED
        if dry_run:
            return ImportResult(action, existing.record_id, len(missing_notes))
        dropped: tuple[str, ...] = ()
        unwritten: list[tuple[str, object]] = []
        if patch:
            outcome, unwritten = self._write_without_refused(
                lambda attributes: self._update(existing.record_id, attributes), patch, details
            )
            dropped = outcome.dropped_fields
        self._add_contacts(existing.record_id, contacts)
        if not copied_before:
            self._add_note(existing.record_id, add_details(draft.description, unwritten))
        for note in missing_notes:
            self._add_note(existing.record_id, copied_note(lead, note))
        return ImportResult(action, existing.record_id, len(missing_notes), dropped)

    def _copy_attributes(self) -> set[str]:
        """What only a copy has: the text saying where it comes from, the source field and date."""
        sources = (
            self.mapping.attribute(MappedField.SOURCE_RECORD),
            self.mapping.attribute(MappedField.SOURCE_CREATED_AT),
        )
        return {self.text_attribute, *(attribute for attribute in sources if attribute)}

    def _copy_of(self, lead: CrmLead, contacts: Contacts) -> ExistingLead | None:
        """This CRM's lead for ``lead``, with its attributes: the original it was copied from (a lead
        coming back after a rollback), the copy an earlier run made, the lead an operation written to
        both CRMs made here (dual-write), else the person's lead by phone or e-mail."""
        origin = lead.copied_from
        if origin is not None and origin.startswith(f"{self.name}:"):
            record_id = origin.split(":", 1)[1]
            if self._accepts_record_id(record_id):
                try:
                    return self._read_lead(record_id)
                except LeadNotFound:
                    pass
        source_attribute = self.mapping.attribute(MappedField.SOURCE_RECORD)
        found = self._find_by_attribute(source_attribute, lead.key) if source_attribute else None
        operation = lead.created_by_operation()
        if found is None and operation is not None:
            found = self._find_created_by(UUID(operation))
        if found is not None:
            return found if found.attributes else self._read_lead(found.record_id)
        for phone, email in contacts.pairs():
            match = self._find_lead(phone=phone, email=email)
            if match is not None:
                return match
        return None

    def _contacts_missing(self, lead: ExistingLead, contacts: Contacts) -> bool:
        """Whether the lead lacks a phone or an e-mail of the copy."""
        return any(self._contact_patch(lead, phone, email) for phone, email in contacts.pairs())

    def _add_contacts(self, record_id: str, contacts: Contacts) -> None:
        """Give the lead the copy's further phones and e-mails (the first ones went with its payload),
        reading it again after each addition: a CRM appends a value to the lead's list, which the
        next addition must include."""
        further = contacts.pairs()[1:]
        if not further:
            return
        current = self._read_lead(record_id)
        for phone, email in further:
            patch = self._contact_patch(current, phone, email)
            if patch:
                self._update(record_id, patch)
                current = self._read_lead(record_id)

    def _contact_patch(self, lead: ExistingLead, phone: str | None, email: str | None) -> dict[str, Any]:
        """The update adding ``phone`` and ``email`` to the lead when it lacks them (else {})."""
        probe = self._lead_payload(
            LeadDraft(first_name=None, last_name=None, phone=phone, email=email, description="", source=None),
            UUID(int=0),
        )
        contact_attributes = set(self.identity_attributes) | {f"{name}Data" for name in self.identity_attributes}
        wanted = {key: value for key, value in probe.items() if key in self.identity_attributes}
        patch = self._missing_values(lead, wanted)
        return {key: value for key, value in patch.items() if key in contact_attributes}

    def test_connection(self) -> ConnectionReport:
        """Reachability, credentials, the CRM's settings and the mapped fields it lacks. Never raises."""
        started = self._clock()
        try:
            problem = self._configuration_problem()
            if problem is not None:
                return ConnectionReport(
                    provider=self.name,
                    reachable=True,
                    elapsed_ms=self._elapsed_ms(started),
                    error_kind=ErrorKind.CONFIGURATION,
                    error=problem,
                )
            missing = self._missing_mapped_fields()
        except CrmError as error:
            return ConnectionReport(
                provider=self.name,
                reachable=error.kind is not ErrorKind.RETRYABLE,
                elapsed_ms=self._elapsed_ms(started),
                error_kind=error.kind,
                error=error.reason,
            )
        return ConnectionReport(
            provider=self.name, reachable=True, elapsed_ms=self._elapsed_ms(started), missing_fields=missing
        )

    # --- what each CRM supplies ------------------------------------------------------------------

    @abstractmethod
    def _lead_payload(self, draft: LeadDraft, operation_id: UUID) -> dict[str, Any]:
        """The CRM's create payload for a draft."""

    @abstractmethod
    def _changes_payload(self, record_id: str, changes: LeadChanges) -> dict[str, Any]:
        """The CRM's update payload for explicit changes to the lead ``record_id``."""

    @abstractmethod
    def _find_lead(self, *, phone: str | None, email: str | None) -> ExistingLead | None:
        """The oldest open lead with this phone or e-mail or, when every one is closed (see
        :meth:`_closed`), the newest of them; with the attributes ``_missing_values`` and
        ``_closed`` need."""

    @abstractmethod
    def _read_lead(self, record_id: str) -> ExistingLead:
        """The lead with its attributes; raises :class:`LeadNotFound` for one that does not exist."""

    def _closed(self, lead: ExistingLead) -> ClosedLead | None:
        """What the lead became when it is closed (converted, or lost), read from its attributes
        (:attr:`closed_lead`); None while it is open."""
        attributes = self.closed_lead
        state = lead.attributes.get(attributes.status)
        if state not in attributes.closed:
            return None
        return ClosedLead(
            lead.record_id,
            converted=attributes.closed[str(state)],
            contact_id=str(lead.attributes.get(attributes.contact) or "") or None,
            account_id=str(lead.attributes.get(attributes.account) or "") or None,
        )

    def _successor_link(self, closed: ClosedLead) -> dict[str, Any]:
        """Attributes linking a new lead to what the closed one became, where the CRM has them."""
        return {}

    @abstractmethod
    def _find_created_by(self, operation_id: UUID) -> ExistingLead | None:
        """The lead this operation created, if any: its marker is in the lead's own text."""

    @abstractmethod
    def _find_by_attribute(self, attribute: str, value: str) -> ExistingLead | None: ...

    @abstractmethod
    def _create(self, payload: dict[str, Any], *, check_duplicates: bool = True) -> WriteOutcome: ...

    @abstractmethod
    def _update(self, record_id: str, patch: dict[str, Any]) -> WriteOutcome: ...

    @abstractmethod
    def _missing_values(self, existing: ExistingLead, payload: dict[str, Any]) -> dict[str, Any]:
        """The part of ``payload`` that fills what the existing lead lacks, never overwriting."""

    @abstractmethod
    def _add_note(self, record_id: str, text: str) -> str:
        """Add a timeline entry to the lead; return its id."""

    @abstractmethod
    def _timeline_texts(self, record_id: str) -> list[str]:
        """The texts of every note on the lead's timeline (a migration looks for its markers there)."""

    @abstractmethod
    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        """Whether the lead's own text or its timeline carries ``operation_marker(operation_id)``:
        an earlier attempt of this operation reached the CRM and only its answer was lost (a timeout,
        a reset, a 5xx after the write, a worker that died before acknowledging). Raises
        :class:`LeadNotFound` for a lead that does not exist."""

    def _recorded_on_any(self, lead_ids: Sequence[str], operation_id: UUID) -> bool:
        """Whether one of these leads (those that still exist) carries the operation's marker."""
        for lead_id in lead_ids:
            try:
                if self._accepts_record_id(lead_id) and self._recorded(self._read_lead(lead_id), operation_id):
                    return True
            except LeadNotFound:
                continue
        return False

    @abstractmethod
    def _missing_mapped_fields(self) -> list[str] | None:
        """Domain fields whose attribute the CRM lacks (None: cannot tell); raises CrmError."""

    def _accepts_record_id(self, record_id: str) -> bool:
        """Whether ``record_id`` has the form of this CRM's lead ids (any form, unless it says)."""
        return True

    def _configuration_problem(self) -> str | None:
        """A CRM setting that defeats crm-bridge, as a sentence saying what to change (None: none);
        raises CrmError."""
        return None

    # --- shared helpers ---------------------------------------------------------------------------

    def _anonymous_lead(self, record_id: str | None) -> ExistingLead | None:
        """The lead ``record_id`` when it is an open lead without a phone or an e-mail; else None."""
        if record_id is None or not self.identity_attributes or not self._accepts_record_id(record_id):
            return None
        try:
            lead = self._read_lead(record_id)
        except LeadNotFound:
            return None
        if self._closed(lead) is not None:
            return None
        if any(not is_empty(lead.attributes.get(attribute)) for attribute in self.identity_attributes):
            return None
        return lead

    def _complete_anonymous_lead(
        self,
        lead: ExistingLead,
        application: Application,
        payload: dict[str, Any],
        details: Details,
        operation_id: UUID,
        started: float,
    ) -> ProviderResult:
        """The application written onto the visitor's anonymous lead: the name replaces the
        placeholder, the empty fields (contacts, first touch, ...) are filled, and the application is a
        note beside the clicks.

        The note goes first, with the operation's marker, so that a retry after any part of this failed
        writes only what is missing: before the update the lead is still the session's anonymous lead
        (no contacts), and this finds its note and makes the update; after it, the retry finds the lead
        by phone or e-mail with its note's marker. (Update first, a note that then failed made the retry
        a "submitted again" note on a lead the application never reached.)"""
        written = not self._recorded(lead, operation_id)
        note_id = self._add_note(lead.record_id, application_summary(application, operation_id)) if written else None
        replaced = {
            attribute: payload[attribute]
            for attribute in self.replaced_on_completion
            if attribute in payload and lead.attributes.get(attribute) != payload[attribute]
        }
        patch = self._missing_values(lead, payload) | replaced
        if not patch:
            return self._result(lead.record_id, LeadAction.UPDATED if written else LeadAction.UNCHANGED, started)
        outcome, unwritten = self._write_without_refused(
            lambda attributes: self._update(lead.record_id, attributes), patch, details
        )
        if unwritten:
            self._add_note(lead.record_id, add_details(_REFUSED_NOTE, unwritten))
        self._log.info(
            "application completed the visitor's anonymous lead",
            extra={"provider": self.name, "record_id": lead.record_id},
        )
        return self._result(lead.record_id, LeadAction.UPDATED, started, outcome, activity_id=note_id)

    def _create_successor(
        self, closed: ClosedLead, draft: LeadDraft, operation_id: UUID, started: float, *, again: str
    ) -> ProviderResult:
        """A new lead for someone whose lead is closed, saying so (ids only) and linked to what the
        closed lead became where the CRM allows it. The CRM's duplicate check is skipped: the
        closed lead is the duplicate it would find."""
        line = closed_lead_line(again, closed.record_id, closed.converted, closed.contact_id, closed.account_id)
        draft = replace(draft, description=f"{line}\n{draft.description}")
        payload = self._lead_payload(draft, operation_id) | self._successor_link(closed)
        created, _ = self._write_without_refused(
            lambda attributes: self._create(attributes, check_duplicates=False),
            payload,
            self._details(draft.values, draft.contacts()),
        )
        self._log.info(
            "earlier lead is closed; created a new lead",
            extra={
                "provider": self.name,
                "record_id": created.record_id,
                "previous_record_id": closed.record_id,
                "converted": closed.converted,
            },
        )
        return self._result(created.record_id, LeadAction.CREATED, started, created)

    def _write_without_refused(
        self, write: Callable[[dict[str, Any]], WriteOutcome], payload: dict[str, Any], details: Details
    ) -> tuple[WriteOutcome, list[tuple[str, object]]]:
        """``write(payload)``; when the CRM refuses it over one field's value, write again without
        that field and with ``Label: value`` in the free text instead, until the CRM takes it.

        A refusal stays a :class:`PermanentCrmError` (the operation is dead-lettered) when this CRM
        names no field, or names one the payload does not carry (one we cannot leave out: the free
        text itself, a required field we never write, or a field refused again after it was left
        out). Returns the outcome and the details that had no free text in ``payload`` to go into
        (an update that does not touch the description): the caller puts them on the timeline."""
        payload = dict(payload)
        dropped: list[str] = []
        unwritten: list[tuple[str, object]] = []
        while True:
            try:
                outcome = write(payload)
            except PermanentCrmError as error:
                attributes = self._refused_attributes(error, payload)
                if not attributes:
                    raise
                field_name = str(error.field)
                detail = details.get(field_name) or (field_name, payload[attributes[0]])
                for attribute in attributes:
                    del payload[attribute]
                dropped.extend(attributes)
                text = self.free_text_attribute
                if text is not None and isinstance(payload.get(text), str):
                    payload[text] = add_details(payload[text], [detail])
                else:
                    unwritten.append(detail)
                self._log.warning(
                    "CRM refused a field; writing the lead without it, its value in the lead's text",
                    extra={"provider": self.name, "field": field_name, "reason": error.reason},
                )
            else:
                return replace(outcome, dropped_fields=tuple(dropped)), unwritten

    def _refused_attributes(self, error: PermanentCrmError, payload: Mapping[str, Any]) -> tuple[str, ...]:
        """The attributes of ``payload`` to leave out after this refusal; () when there are none."""
        if self.free_text_attribute is None or error.status != 400 or not error.field:
            return ()
        if error.field == self.free_text_attribute:
            return ()
        return tuple(attribute for attribute in self._field_attributes(error.field) if attribute in payload)

    def _field_attributes(self, field_name: str) -> tuple[str, ...]:
        """The attributes a CRM field is written through (one, unless the CRM says otherwise)."""
        return (field_name,)

    def _details(self, values: Mapping[MappedField, str | bool], contacts: Mapping[str, str | None]) -> Details:
        """What a write carries, by CRM attribute, labelled as in the lead's description."""
        details: dict[str, tuple[str, object]] = {}
        for name, contact in contacts.items():
            attribute = self.contact_attributes.get(name)
            if attribute is not None:
                details[attribute] = (CONTACT_LABELS[name], contact)
        for mapped, value in values.items():
            attribute = self.mapping.attribute(mapped)
            if attribute is not None:
                details[attribute] = (FIELD_LABELS[mapped], value)
        return details

    def _mapped_attributes(self, values: dict[MappedField, str | bool]) -> dict[str, Any]:
        """Domain values under the CRM's attribute names; unmapped fields stay in the description."""
        attributes: dict[str, Any] = {}
        for field_name, value in values.items():
            attribute = self.mapping.attribute(field_name)
            if attribute is None:
                continue
            if isinstance(value, bool):
                attributes[attribute] = self._boolean(value)
            else:
                attributes[attribute] = self.mapping.crm_value(field_name, value)
        return attributes

    @staticmethod
    def _boolean(value: bool) -> Any:
        return value

    @staticmethod
    def _read_boolean(value: Any) -> bool:
        return bool(value)

    def _domain_values(self, record: Mapping[str, Any]) -> dict[MappedField, str | bool]:
        """The reverse of :meth:`_mapped_attributes`: a lead's mapped attributes in domain terms."""
        values: dict[MappedField, str | bool] = {}
        for mapped, attribute in self.mapping.lead_fields.items():
            value = record.get(attribute)
            if is_empty(value):
                continue
            if mapped is MappedField.CONSENT:
                values[mapped] = self._read_boolean(value)
            else:
                values[mapped] = self.mapping.domain_value(mapped, str(value))
        return values

    def _elapsed_ms(self, started: float) -> float:
        return round((self._clock() - started) * 1000, 1)

    def _result(
        self,
        record_id: str,
        action: LeadAction,
        started: float,
        outcome: WriteOutcome | None = None,
        *,
        activity_id: str | None = None,
    ) -> ProviderResult:
        ignored = outcome.ignored_fields if outcome else ()
        dropped = outcome.dropped_fields if outcome else ()
        if ignored:
            self._log.warning(
                "CRM ignored mapped attributes; check the field mapping and the CRM's fields",
                extra={"provider": self.name, "ignored_fields": list(ignored), "record_id": record_id},
            )
        if dropped:
            self._log.warning(
                "CRM refused attributes; the lead was written without them, their values in its text",
                extra={"provider": self.name, "dropped_fields": list(dropped), "record_id": record_id},
            )
        return ProviderResult(
            provider=self.name,
            record_id=record_id,
            action=action,
            elapsed_ms=self._elapsed_ms(started),
            activity_id=activity_id,
            ignored_fields=ignored,
            dropped_fields=dropped,
        )

    def _domain_fields_for(self, attributes: set[str]) -> list[str]:
        """Which mapped domain fields use any of these CRM attributes."""
        return sorted(str(f) for f, attribute in self.mapping.lead_fields.items() if attribute in attributes)
