"""Compare two CRMs' leads: what one has that the other lacks, and mapped fields that disagree.

Leads are paired the way crm-bridge ties them: a copy to its original (the marker in its text, or
the source field), two leads made by the same operation (dual-write), else the same phone or e-mail.
A pair of a copy and its original (or one operation's two leads) must agree on every value the first
CRM has; a pair found by phone or e-mail is two records of one person (a migration merged the history
into a lead the live flow made), so only its contacts are compared. Values only the second CRM has
are no difference: it may know more (a later application).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from crm_bridge.field_mapping import MappedField
from crm_bridge.migrate.backfill import Report, with_retries
from crm_bridge.providers.records import CrmLead, LeadReader

REPORT_COLUMNS = ("kind", "from_record", "to_record", "field", "from_value", "to_value")
ONLY_IN_FROM = "only_in_from"
ONLY_IN_TO = "only_in_to"
DIFFERS = "differs"
_NEVER_COMPARED = frozenset({MappedField.SOURCE_RECORD, MappedField.SOURCE_CREATED_AT})
"""Where a copy differs from its original by design: it names the original and its date."""


@dataclass(frozen=True)
class Difference:
    kind: str
    from_record: str
    to_record: str = ""
    field: str = ""
    from_value: str = ""
    to_value: str = ""


@dataclass(frozen=True)
class Summary:
    leads_from: int
    leads_to: int
    paired: int
    counts: Counter[str]
    """Differences by kind (:data:`ONLY_IN_FROM`, :data:`ONLY_IN_TO`, :data:`DIFFERS`)."""


def read_all(reader: LeadReader, *, sleep: Callable[[float], None] = time.sleep) -> list[CrmLead]:
    """Every lead of a CRM, without notes."""
    leads: list[CrmLead] = []
    cursor: str | None = None
    while True:
        page = with_retries(partial(reader.read_leads, after=cursor, since=None, with_notes=False), sleep=sleep)
        leads += page.leads
        if page.cursor is None:
            return leads
        cursor = page.cursor


class _Index:
    """The second CRM's leads by every key a lead of the first may be paired on."""

    def __init__(self, leads: list[CrmLead]) -> None:
        self.by_key: dict[str, CrmLead] = {}
        self.copies: dict[str, CrmLead] = {}
        self.by_source: dict[str, CrmLead] = {}
        self.by_operation: dict[str, CrmLead] = {}
        self.by_contact: dict[str, CrmLead] = {}
        for lead in leads:
            self.by_key[lead.key] = lead
            for index, key in (
                (self.copies, lead.imported_as_copy_of()),
                (self.by_source, lead.copied_from),
                (self.by_operation, lead.created_by_operation()),
            ):
                if key is not None:
                    index.setdefault(key, lead)
            for contact in sorted(lead.contacts.matchable()):
                self.by_contact.setdefault(contact, lead)

    def exact(self, lead: CrmLead) -> CrmLead | None:
        """The lead that is ``lead``'s copy or original, or one operation's other lead."""
        operation = lead.created_by_operation()
        for found in (
            self.copies.get(lead.key),
            self.by_key.get(lead.imported_as_copy_of() or ""),
            self.by_operation.get(operation) if operation else None,
        ):
            if found is not None:
                return found
        return None

    def same_person(self, lead: CrmLead) -> CrmLead | None:
        """The lead the source field names, else the first one sharing a phone or an e-mail."""
        found = self.by_source.get(lead.key) or self.by_key.get(lead.copied_from or "")
        if found is not None:
            return found
        return next((self.by_contact[c] for c in sorted(lead.contacts.matchable()) if c in self.by_contact), None)


def compare(first: list[CrmLead], second: list[CrmLead]) -> tuple[Summary, list[Difference]]:
    """Every lead of ``first`` looked for in ``second`` and compared; then what ``second`` has alone."""
    index = _Index(second)
    back = _Index(first)
    partners_back = {lead.key: back.exact(lead) or back.same_person(lead) for lead in second}
    # A lead of the first CRM that several of the second's became (one person entered twice there,
    # merged into it here) holds their values together: it is compared like a merge, by contacts.
    merged = Counter(partner.key for partner in partners_back.values() if partner is not None)
    differences: list[Difference] = []
    seen: set[str] = set()
    paired = 0
    for lead in first:
        exact = index.exact(lead)
        other = exact or index.same_person(lead)
        if other is None:
            differences.append(Difference(ONLY_IN_FROM, lead.key))
            continue
        paired += 1
        seen.add(other.key)
        differences += _field_differences(lead, other, values=exact is not None and merged[lead.key] <= 1)
    for lead in second:
        if lead.key not in seen and partners_back[lead.key] is None:
            differences.append(Difference(ONLY_IN_TO, "", lead.key))
    counts = Counter(difference.kind for difference in differences)
    return Summary(len(first), len(second), paired, counts), differences


def _field_differences(lead: CrmLead, other: CrmLead, *, values: bool) -> list[Difference]:
    found: list[Difference] = []

    def differs(name: str, mine: object, theirs: object) -> None:
        found.append(Difference(DIFFERS, lead.key, other.key, name, _text(mine), _text(theirs)))

    mine, theirs = lead.contacts, other.contacts
    for name, held, others in (("phones", mine.phones, theirs.phones), ("emails", mine.emails, theirs.emails)):
        lacking = set(held) - set(others)  # what a CRM cannot match on (``ext. 12``) is in a copy's text
        if lacking:
            differs(name, sorted(lacking), sorted(others))
    if not values:
        return found
    for name, own, others_own in (
        ("first_name", lead.first_name, other.first_name),
        ("last_name", lead.last_name, other.last_name),
        ("status", lead.status, other.status),
    ):
        if own and own != others_own:
            differs(name, own, others_own)
    for mapped, value in lead.values.items():
        # A CRM that does not map the field cannot hold the value: that is no difference.
        if mapped not in _NEVER_COMPARED and mapped in other.mapped_fields and other.values.get(mapped) != value:
            differs(mapped.value, value, other.values.get(mapped))
    return found


def _text(value: object) -> str:
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return "" if value is None else str(value)


def write_report(path: Path, differences: list[Difference]) -> None:
    report = Report(path, REPORT_COLUMNS)
    try:
        for difference in differences:
            report.add(difference)
    finally:
        report.close()


def reconcile(first: LeadReader, second: LeadReader) -> tuple[Summary, list[Difference]]:
    """Read both CRMs and compare them. Raises :class:`CrmError` when a CRM cannot be read."""
    return compare(read_all(first), read_all(second))
