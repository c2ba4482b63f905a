"""The provider interface every CRM implements, and the upsert logic they all share.

A provider supplies a handful of CRM-specific primitives (find, read, create, update, add a note,
list the attributes it has); :class:`CrmProvider` composes them into the five operations the rest
of crm-bridge uses, so "a repeat submission updates the empty fields and adds a note" is written
once for every CRM.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from crm_bridge.errors import CrmError, ErrorKind
from crm_bridge.field_mapping import MappedField, ProviderMapping
from crm_bridge.models import Application, MessengerActivity
from crm_bridge.observability import get_logger
from crm_bridge.providers.lead_draft import (
    LeadDraft,
    activity_note,
    draft_from_activity,
    draft_from_application,
    repeat_application_note,
)


class LeadAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


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
class WriteOutcome:
    record_id: str
    ignored_fields: tuple[str, ...] = ()


class DuplicateLeadFound(Exception):
    """Raised by ``_create`` when the CRM reveals that the lead exists already (a race or a retry)."""

    def __init__(self, existing: ExistingLead) -> None:
        super().__init__(existing.record_id)
        self.existing = existing


class CrmProvider(ABC):
    name: ClassVar[str]

    def __init__(self, mapping: ProviderMapping, clock: Callable[[], float] = time.perf_counter) -> None:
        self.mapping = mapping
        self._clock = clock
        self._log = get_logger()

    # --- the interface ---------------------------------------------------------------------------

    def upsert_lead(self, application: Application, operation_id: UUID) -> ProviderResult:
        """Create the lead, or, when one with the same phone or e-mail exists, fill its empty
        fields and record the repeat submission on its timeline. Safe to retry."""
        started = self._clock()
        draft = draft_from_application(application, operation_id)
        payload = self._lead_payload(draft, operation_id)
        existing = self._find_lead(phone=draft.phone, email=draft.email)
        if existing is None:
            try:
                created = self._create(payload)
            except DuplicateLeadFound as duplicate:
                existing = duplicate.existing
            else:
                return self._result(created.record_id, LeadAction.CREATED, started, created.ignored_fields)
        if self._recorded(existing, operation_id):  # an earlier attempt wrote it; its answer was lost
            return self._result(existing.record_id, LeadAction.UNCHANGED, started)
        patch = self._missing_values(existing, payload)
        action = LeadAction.UNCHANGED
        ignored: tuple[str, ...] = ()
        if patch:
            ignored = self._update(existing.record_id, patch).ignored_fields
            action = LeadAction.UPDATED
        note_id = self._add_note(existing.record_id, repeat_application_note(application, operation_id))
        return self._result(existing.record_id, action, started, ignored, activity_id=note_id)

    def log_activity(
        self, lead_id: str, activity: MessengerActivity, operation_id: UUID | None = None
    ) -> ProviderResult:
        """Record a messenger click on a known lead's timeline, once per ``operation_id``."""
        started = self._clock()
        if operation_id is not None and self._recorded(ExistingLead(lead_id), operation_id):
            return self._result(lead_id, LeadAction.UNCHANGED, started)
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
        created = self._create(self._lead_payload(draft, operation_id), check_duplicates=False)
        return self._result(created.record_id, LeadAction.CREATED, started, created.ignored_fields)

    def update_lead(self, lead_id: str, changes: LeadChanges) -> ProviderResult:
        """Set the given fields on a known lead (overwriting what it has)."""
        started = self._clock()
        patch = self._changes_payload(lead_id, changes)
        if not patch:
            return self._result(lead_id, LeadAction.UNCHANGED, started)
        outcome = self._update(lead_id, patch)
        return self._result(lead_id, LeadAction.UPDATED, started, outcome.ignored_fields)

    def test_connection(self) -> ConnectionReport:
        """Reachability, credentials and the mapped fields the CRM lacks. Never raises."""
        started = self._clock()
        try:
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
        """The oldest lead with this phone or e-mail, with the attributes ``_missing_values`` needs."""

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
    def _recorded(self, lead: ExistingLead, operation_id: UUID) -> bool:
        """Whether the lead's own text or its timeline carries ``operation_marker(operation_id)``:
        an earlier attempt of this operation reached the CRM and only its answer was lost (a timeout,
        a reset, a 5xx after the write, a worker that died before acknowledging). Raises
        :class:`LeadNotFound` for a lead that does not exist."""

    @abstractmethod
    def _missing_mapped_fields(self) -> list[str] | None:
        """Domain fields whose attribute the CRM lacks (None: cannot tell); raises CrmError."""

    # --- shared helpers ---------------------------------------------------------------------------

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

    def _elapsed_ms(self, started: float) -> float:
        return round((self._clock() - started) * 1000, 1)

    def _result(
        self,
        record_id: str,
        action: LeadAction,
        started: float,
        ignored_fields: tuple[str, ...] = (),
        *,
        activity_id: str | None = None,
    ) -> ProviderResult:
        if ignored_fields:
            self._log.warning(
                "CRM ignored mapped attributes; check the field mapping and the CRM's fields",
                extra={"provider": self.name, "ignored_fields": list(ignored_fields), "record_id": record_id},
            )
        return ProviderResult(
            provider=self.name,
            record_id=record_id,
            action=action,
            elapsed_ms=self._elapsed_ms(started),
            activity_id=activity_id,
            ignored_fields=ignored_fields,
        )

    def _domain_fields_for(self, attributes: set[str]) -> list[str]:
        """Which mapped domain fields use any of these CRM attributes."""
        return sorted(str(f) for f, attribute in self.mapping.lead_fields.items() if attribute in attributes)
