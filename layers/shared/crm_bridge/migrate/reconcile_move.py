"""Reconcile the whole move (#23): every portal record against its EspoCRM copy, as the plan says it must be.

A record's copy is found by its key (``cSourceRecord``, :func:`source_key`) and must hold what the
move writes for it: :func:`attributes_for` with the links resolved to the copies of the linked
records, compared with the move's own equality (:func:`same_value`), so reconcile finds nothing
exactly when a rerun of the move would write nothing. That covers the planned fields in their
field, the labelled lines of the description (what only the text holds), links (account, contacts,
a converted lead's created records, an activity's parent), owner and stage or status by name.
Beyond the attributes: a list value must still be an option of its field (an option renamed loses
the name people see), every timeline comment's import marker must be a line of the copy's stream
(a deleted note), and file fields hold their files, by count and name.

Read only on both sides; paced by the Bitrix24 provider and retried as the move is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import batched
from typing import Any

from crm_bridge.migrate.backfill import Report, with_retries
from crm_bridge.migrate.bitrix24_portal import PAGE, PortalReader
from crm_bridge.migrate.espocrm_target import EspoCrmTarget, same_value, source_key
from crm_bridge.migrate.move import COMMENTED, PROVIDER
from crm_bridge.migrate.schema import ACTIVITY_TARGETS, TARGET_ENTITY, SourceEntity, TargetUser
from crm_bridge.migrate.transform import Link, MoveContext, attributes_for, file_name, owners_of, references
from crm_bridge.migrate.transform import target_entity as entity_of
from crm_bridge.providers.records import import_marker

REPORT_COLUMNS = ("entity", "source_record", "target_record", "field", "expected", "found")
MISSING = "(missing)"
_TEXT_ATTRIBUTES = frozenset({"description", "body"})
"""Where the labelled lines of what no field holds go; compared line by line (one may be added to)."""
_LISTS = frozenset({"enum", "multiEnum"})


@dataclass(frozen=True)
class Mismatch:
    """One difference: a record missing, or a field of a copy not what the plan says."""

    entity: str
    source_record: str
    target_record: str
    field: str
    expected: str
    found: str


@dataclass
class Tally:
    """Records of one portal entity: in the portal, copies in EspoCRM (by key), and paired."""

    portal: int = 0
    espocrm: int = 0
    paired: int = 0


@dataclass
class MoveReconcile:
    """Reads the portal as the move does and checks each record's copy; every difference is a line of
    ``report`` (the backfill's writer: 0600, formula-safe, since it holds values)."""

    reader: PortalReader
    target: EspoCrmTarget
    context: MoveContext
    report: Report
    sleep: Callable[[float], None] = time.sleep
    tallies: dict[str, Tally] = field(default_factory=dict)
    differences: int = 0
    _links: dict[tuple[SourceEntity, str], Link | None] = field(default_factory=dict)
    _converted: dict[str, str] = field(default_factory=dict)
    """Lead id → the EspoCRM id of the deal it became (deals are read before leads)."""

    def run(self) -> int:
        """Compare every entity; returns how many differences the report holds."""
        owners = owners_of(self.context.plan, self.context.target)
        for kind in SourceEntity:
            tally = self.tallies.setdefault(str(kind), Tally())
            for chunk in batched(self.reader.records(kind), PAGE, strict=False):
                ids = [str(record["ID"]) for record in chunk]
                comments = self.reader.comments(kind, ids) if kind in COMMENTED else {}
                for record in chunk:
                    tally.portal += 1
                    found = self._record(kind, record, owners, comments.get(str(record["ID"]), []))
                    tally.paired += 0 if found is None else 1
            prefix = source_key(PROVIDER, str(kind), "")
            counts = (partial(self.target.count, entity, prefix) for entity in _entities(kind))
            tally.espocrm = sum(with_retries(count, sleep=self.sleep) for count in counts)
            if tally.espocrm != tally.paired:  # copies whose original the portal no longer has
                self._add(Mismatch(str(kind), "", "", "copies in EspoCRM", str(tally.paired), str(tally.espocrm)))
        return self.differences

    def _record(
        self,
        kind: SourceEntity,
        record: Mapping[str, Any],
        owners: Mapping[str, TargetUser],
        comments: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        record_id = str(record["ID"])
        key = source_key(PROVIDER, str(kind), record_id)
        entity = entity_of(kind, record)
        copy = self._find(kind, record_id, entity)
        if copy is None:
            self._add(Mismatch(entity, key, "", "record", key, MISSING))
            return None
        if kind is SourceEntity.DEAL and record.get("LEAD_ID"):
            self._converted[str(record["LEAD_ID"])] = str(copy["id"])
        links = {reference: link for reference in references(kind, record) if (link := self._link(reference))}
        became = self._converted.get(record_id) if kind is SourceEntity.LEAD else None
        shaped = attributes_for(self.context, kind, record, links=links, owners=owners, became=became)
        for differs in (
            self._attributes(entity, shaped.attributes, copy),
            self._files(entity, shaped.files, copy),
            self._notes(entity, key, comments, copy) if comments else iter(()),
        ):
            for name, expected, found in differs:
                self._add(Mismatch(entity, key, str(copy["id"]), name, expected, found))
        return copy

    def _find(self, kind: SourceEntity, record_id: str, entity: str) -> dict[str, Any] | None:
        """The copy of a record, read in full; remembered as what others link to."""
        key = source_key(PROVIDER, str(kind), record_id)
        copy = with_retries(lambda: self.target.find(entity, key), sleep=self.sleep)
        self._links[(kind, record_id)] = Link(str(copy["id"]), str(copy.get("name") or "")) if copy else None
        return copy

    def _link(self, reference: tuple[SourceEntity, str]) -> Link | None:
        if reference not in self._links:
            kind, record_id = reference
            self._find(kind, record_id, TARGET_ENTITY[kind])
        return self._links[reference]

    def _attributes(
        self, entity: str, expected: Mapping[str, Any], copy: Mapping[str, Any]
    ) -> Iterator[tuple[str, str, str]]:
        fields = self.context.target.fields.get(entity, {})
        users = {user.id: user.user_name for user in self.context.target.users}
        for name, wanted in expected.items():
            if name not in copy:
                yield name, _text(wanted), "(no such field)"
                continue
            held = copy[name]
            if name in _TEXT_ATTRIBUTES:
                lines = set(str(held or "").splitlines())
                yield from ((name, line, MISSING) for line in str(wanted).splitlines() if line and line not in lines)
            elif name == "assignedUserId":
                if held != wanted:
                    yield name, users.get(str(wanted), str(wanted)), users.get(str(held), _text(held))
            elif not same_value(held, wanted):
                yield name, _text(wanted), _text(held)
            elif (target := fields.get(name)) is not None and target.type in _LISTS and target.options:
                lost = [value for value in _values(held) if value not in target.options]
                if lost:  # the record holds it, the field no longer offers it: the name people see is gone
                    yield name, _text(lost), f"not an option of {entity}.{name}"

    def _files(
        self, entity: str, files: Mapping[str, Sequence[Mapping[str, Any]]], copy: Mapping[str, Any]
    ) -> Iterator[tuple[str, str, str]]:
        fields = self.context.target.fields.get(entity, {})
        for name, items in files.items():
            target = fields.get(name)
            single = target is not None and target.type == "file"  # the move keeps a file field's first
            expected = sorted(file_name(item, name) for item in (items[:1] if single else items))
            if single:
                found = [str(copy[f"{name}Name"])] if copy.get(f"{name}Id") else []
            else:
                names = copy.get(f"{name}Names") or {}
                found = [str(names.get(file_id) or file_id) for file_id in copy.get(f"{name}Ids") or ()]
            if sorted(found) != expected:
                yield f"{name} (files)", _text(expected), _text(sorted(found))

    def _notes(
        self, entity: str, key: str, comments: Sequence[Mapping[str, Any]], copy: Mapping[str, Any]
    ) -> Iterator[tuple[str, str, str]]:
        """Each comment's marker, a whole line of a post (:meth:`EspoCrmTarget.stream_lines`)."""
        lines = with_retries(lambda: self.target.stream_lines(entity, str(copy["id"])), sleep=self.sleep)
        for comment in comments:
            marker = import_marker(key, str(comment["ID"]))
            if marker not in lines:
                yield "note", f"comment {comment['ID']} ({marker})", MISSING

    def _add(self, mismatch: Mismatch) -> None:
        self.report.add(mismatch)
        self.differences += 1

    def summary(self) -> Iterator[str]:
        """Counts per entity, no values."""
        for kind, tally in self.tallies.items():
            yield f"  {kind}: {tally.portal} in the portal, {tally.espocrm} in EspoCRM, {tally.paired} paired"


def _entities(kind: SourceEntity) -> list[str]:
    """The EspoCRM entities a portal entity's records go to (an activity's by its type; Task the rest)."""
    if kind is SourceEntity.ACTIVITY:
        return sorted({*ACTIVITY_TARGETS.values(), "Task"})
    return [TARGET_ENTITY[kind]]


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "; ".join(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
