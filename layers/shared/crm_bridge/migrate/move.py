"""The whole portal moved into EspoCRM (#23): every entity, linked as it was, with its notes and files.

Entity by entity in :class:`~crm_bridge.migrate.schema.SourceEntity`'s order (companies, contacts,
deals, leads, activities: a link always points to a record already moved), each record shaped by
its plan (:mod:`crm_bridge.migrate.transform`) and written by :class:`EspoCrmTarget`, which finds
the copy a previous run made by its key (``bitrix24:company:7``; a lead's ``bitrix24:101``, the
lead backfill's, so a lead it copied is brought up to the plan, not duplicated). Then the record's
timeline comments become notes (author and date in the text) and its files attachments.

As the lead backfill: idempotent (a rerun writes nothing), resumable (the checkpoint names the
entity and the last record done; a rerun of the same plan goes on from there), retried, paced by
the Bitrix24 provider and read ahead (the next chunk of records and their comments is read on a
thread of its own while a chunk is written), one CSV line per record and one progress bar per
entity. ``dry_run`` writes nothing and counts what the move would do.
"""

from __future__ import annotations

import mimetypes
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import batched
from pathlib import Path
from typing import Any

from crm_bridge.errors import CrmError
from crm_bridge.migrate.backfill import FAILED, Checkpoint, Report, read_ahead, with_retries
from crm_bridge.migrate.bitrix24_portal import PAGE, PortalReader
from crm_bridge.migrate.espocrm_target import Comment, EspoCrmTarget, FileContent, Written, source_key
from crm_bridge.migrate.schema import TARGET_ENTITY, SourceEntity, TargetUser
from crm_bridge.migrate.transform import (
    Link,
    MoveContext,
    attributes_for,
    file_name,
    owners_of,
    references,
    target_entity,
)
from crm_bridge.providers.records import RecordedNote

PROVIDER = "bitrix24"
REPORT_COLUMNS = ("source_record", "entity", "action", "target_record", "notes_copied", "files_copied", "reason")
COMMENTED = frozenset({SourceEntity.COMPANY, SourceEntity.CONTACT, SourceEntity.DEAL, SourceEntity.LEAD})
"""Kinds with a timeline of comments (an activity is itself on one): they move as notes."""


@dataclass
class MoveCheckpoint(Checkpoint):
    """The backfill's checkpoint, with the entity in progress and the entities done."""

    entity: str | None = None
    done: list[str] = field(default_factory=list)
    converted: dict[str, str] = field(default_factory=dict)
    """Lead id → the EspoCRM id of the deal it became (the deal names its lead, the lead is written later)."""
    plan: str | None = None
    """The digest of the plan the move follows (:meth:`MigrationPlan.digest`); None: written by a
    release that did not record it."""


class CannotResume(Exception):
    """The checkpoint is of another move than the one asked for: what to tell the operator."""


@dataclass(frozen=True)
class MovedRecord:
    """One source record's line in the report."""

    source_record: str
    entity: str
    action: str
    target_record: str = ""
    notes_copied: int = 0
    files_copied: int = 0
    reason: str = ""


@dataclass
class Move:
    reader: PortalReader
    target: EspoCrmTarget
    context: MoveContext
    checkpoint_path: Path
    report_path: Path
    dry_run: bool = False
    restart: bool = False
    progress: Callable[..., Any] | None = None
    """A tqdm-like factory (``total``, ``initial``, ``unit``, ``desc``); None: no bar."""
    sleep: Callable[[float], None] = time.sleep
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    """Entity → action → records (``created``, ``updated``, ``unchanged``, ``failed``)."""
    notes_copied: int = 0
    files_copied: int = 0
    _links: dict[tuple[SourceEntity, str], Link | None] = field(default_factory=dict)

    def run(self) -> MoveCheckpoint:
        """Move every entity; returns the final checkpoint."""
        checkpoint = self._start()
        for entity, counts in checkpoint.counts.items():
            kind, _, action = entity.partition(":")
            self.counts.setdefault(kind, Counter())[action] = counts
        resumed = checkpoint.cursor is not None or bool(checkpoint.done)
        report = Report(Path(checkpoint.report), REPORT_COLUMNS, append=resumed)
        owners = owners_of(self.context.plan, self.context.target)
        try:
            for kind in SourceEntity:
                if str(kind) in checkpoint.done:
                    continue
                after = int(checkpoint.cursor) if checkpoint.entity == kind and checkpoint.cursor else 0
                checkpoint.entity = str(kind)
                self._entity(kind, after, owners, checkpoint, report)
                checkpoint.done.append(str(kind))
                checkpoint.cursor = None
                self._save(checkpoint)
            checkpoint.finished = True
            self._save(checkpoint)
            return checkpoint
        finally:
            report.close()

    def _start(self) -> MoveCheckpoint:
        """Resume the interrupted move of this plan, or start a new one.

        A checkpoint without the plan's digest (written by the previous release) is resumed and
        given this plan's: refusing it would cost the operator a whole new pass over the portal for
        a plan that is almost surely the one it began with (the same command run again)."""
        plan = self.context.plan.digest()
        fresh = MoveCheckpoint(PROVIDER, "espocrm", None, str(self.report_path), plan=plan)
        if self.restart or self.dry_run:
            return fresh
        found = MoveCheckpoint.load(self.checkpoint_path)
        if found is None or found.finished:
            return fresh
        if not found.matches(PROVIDER, "espocrm", None):
            raise CannotResume(f"the checkpoint {self.checkpoint_path} is of another run; pass --restart")
        if found.plan not in (None, plan):
            raise CannotResume(
                f"the checkpoint {self.checkpoint_path} is of a move with another plan; pass --restart to move "
                "with this one from the start, or give the plan it began with"
            )
        found.plan = plan
        return found

    def _save(self, checkpoint: MoveCheckpoint) -> None:
        checkpoint.counts = {
            f"{kind}:{action}": n for kind, counts in self.counts.items() for action, n in counts.items()
        }
        if not self.dry_run:
            checkpoint.save(self.checkpoint_path)

    def _entity(
        self,
        kind: SourceEntity,
        after: int,
        owners: Mapping[str, TargetUser],
        checkpoint: MoveCheckpoint,
        report: Report,
    ) -> None:
        counts = self.counts.setdefault(str(kind), Counter())
        bar = None
        if self.progress is not None:
            done = sum(counts.values())
            bar = self.progress(total=None, initial=done, unit=str(kind), desc=f"{kind} -> EspoCRM")
        chunks = read_ahead(self._chunks(kind, after), name="crm-bridge-move-reader")
        try:
            for chunk, comments in chunks:
                for record in chunk:
                    line = self._move(kind, record, owners, comments.get(str(record["ID"]), []), checkpoint)
                    report.add(line)
                    counts[line.action] += 1
                    checkpoint.cursor = str(record["ID"])
                    self._save(checkpoint)
                    if bar is not None:
                        bar.update(1)
        finally:
            chunks.close()
            if bar is not None:
                bar.close()

    def _chunks(
        self, kind: SourceEntity, after: int
    ) -> Generator[tuple[Sequence[dict[str, Any]], dict[str, list[dict[str, Any]]]]]:
        """The entity's records after ``after``, a chunk at a time with the chunk's comments: all the
        (paced) reading of a chunk, which the read-ahead thread does while the previous chunk is written."""
        for chunk in batched(self.reader.records(kind, after=after), PAGE, strict=False):
            comments = self.reader.comments(kind, [str(record["ID"]) for record in chunk]) if kind in COMMENTED else {}
            yield chunk, comments

    def _move(
        self,
        kind: SourceEntity,
        record: Mapping[str, Any],
        owners: Mapping[str, TargetUser],
        comments: Sequence[Mapping[str, Any]],
        checkpoint: MoveCheckpoint,
    ) -> MovedRecord:
        record_id = str(record["ID"])
        key = source_key(PROVIDER, str(kind), record_id)
        entity = target_entity(kind, record)
        try:
            links = {reference: link for reference in references(kind, record) if (link := self._link(reference))}
            became = checkpoint.converted.get(record_id) if kind is SourceEntity.LEAD else None
            shaped = attributes_for(self.context, kind, record, links=links, owners=owners, became=became)
            files = {name: [self._file(item, name) for item in items] for name, items in shaped.files.items()}
            written: Written = with_retries(
                lambda: self.target.write(entity, key, shaped.attributes, files=files, dry_run=self.dry_run),
                sleep=self.sleep,
            )
            notes = [self._note(comment) for comment in comments]
            posted = with_retries(
                lambda: self.target.post_comments(entity, written.record_id, key, notes, dry_run=self.dry_run),
                sleep=self.sleep,
            )
        except CrmError as error:
            return MovedRecord(key, entity, FAILED, reason=f"{error.kind.value}: {error}")
        name = str(shaped.attributes.get("name") or " ".join(_names(shaped.attributes)))
        self._links[(kind, record_id)] = Link(written.record_id, name) if written.record_id else None
        if kind is SourceEntity.DEAL and record.get("LEAD_ID") and written.record_id:
            checkpoint.converted[str(record["LEAD_ID"])] = written.record_id
        self.notes_copied += posted
        self.files_copied += written.files_written
        reasons = [f"not linked (not in EspoCRM): {', '.join(shaped.unlinked)}"] if shaped.unlinked else []
        if written.ignored:
            reasons.append(f"EspoCRM has no field for: {', '.join(written.ignored)}")
        return MovedRecord(
            key, entity, written.action.value, written.record_id, posted, written.files_written, "; ".join(reasons)
        )

    def _link(self, reference: tuple[SourceEntity, str]) -> Link | None:
        """The moved record a link points to: this run's, else the copy an earlier run made."""
        if reference not in self._links:
            kind, record_id = reference
            found = with_retries(
                lambda: self.target.find(TARGET_ENTITY[kind], source_key(PROVIDER, str(kind), record_id)),
                sleep=self.sleep,
            )
            name = str(found.get("name") or "") if found else ""
            self._links[reference] = Link(str(found["id"]), name) if found else None
        return self._links[reference]

    def _file(self, item: Mapping[str, Any], field_name: str) -> FileContent:
        """A portal file as EspoCRM takes it; a dry run does not download it."""
        name = file_name(item, field_name)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return FileContent(name, mime, b"" if self.dry_run else self.reader.download(item))

    def _note(self, comment: Mapping[str, Any]) -> Comment:
        files = comment.get("FILES") or {}
        items = files.values() if isinstance(files, Mapping) else files
        created = comment.get("CREATED")
        note = RecordedNote(
            str(comment["ID"]), str(comment.get("COMMENT") or ""), datetime.fromisoformat(created) if created else None
        )
        author = next(
            (user.name for user in self.context.source.users if user.id == str(comment.get("AUTHOR_ID"))), None
        )
        return Comment(note, author, tuple(self._file(item, "note") for item in items if isinstance(item, Mapping)))

    def summary(self) -> Iterator[str]:
        """Per entity, what was (or would be) done."""
        for kind in SourceEntity:
            counts = self.counts.get(str(kind), Counter())
            yield f"  {kind}: " + (", ".join(f"{action} {n}" for action, n in sorted(counts.items())) or "none")


def _names(attributes: Mapping[str, Any]) -> list[str]:
    return [str(attributes[part]) for part in ("firstName", "lastName") if attributes.get(part)]
