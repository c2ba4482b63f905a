"""Copy every lead of one CRM into the other: the agency's history follows it to the new CRM.

Idempotent: each copy carries its original's id (the source field, markers in its text and notes), so
a second run finds everything and writes nothing. Resumable: after each lead the checkpoint file
records how far the run got; an interrupted run (Ctrl-C, a crash, a lost connection) continues
from there when started again with the same arguments. The source is read a page ahead of the
writes, on a thread of its own, so that a paced source (Bitrix24's request budget) and the target's
writes overlap.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, Self

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.errors import CrmError, ErrorKind
from crm_bridge.providers import CrmProvider
from crm_bridge.providers.base import ImportAction, ImportResult
from crm_bridge.providers.records import CrmLead, LeadPage, LeadReader

CHECKPOINT_VERSION = 1
RETRIES = RetrySchedule(first_delay_seconds=1, max_delay_seconds=30, max_receives=6)
"""Tries of one read or one lead's writes through a CRM that is down or rate-limiting: 1, 2, 4... s."""
REPORT_COLUMNS = ("source_record", "action", "target_record", "notes_copied", "reason")
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class Checkpoint:
    """How far a run got, in a small JSON file written after every lead (atomically)."""

    source: str
    target: str
    since: str | None
    report: str
    cursor: str | None = None
    """Every lead up to this record id (in the source's order) is done."""
    counts: dict[str, int] = field(default_factory=dict)
    finished: bool = False

    def matches(self, source: str, target: str, since: datetime | None) -> bool:
        return (self.source, self.target, self.since) == (source, target, since.isoformat() if since else None)

    @classmethod
    def load(cls, path: Path) -> Self | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise SystemExit(f"error: the checkpoint {path} is not JSON ({exc}); remove it to start over") from None
        if data.pop("version", None) != CHECKPOINT_VERSION:
            raise SystemExit(f"error: the checkpoint {path} is of another version; remove it to start over")
        return cls(**data)

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps({"version": CHECKPOINT_VERSION, **asdict(self)}, indent=1), encoding="utf-8")
        os.replace(temporary, path)


@dataclass(frozen=True)
class Outcome:
    """One source lead's line in the report."""

    source_record: str
    action: str
    target_record: str = ""
    notes_copied: int = 0
    reason: str = ""


class Report:
    """An operator's CSV, one line per record written as the run goes (a resumed backfill appends).

    It holds what leads hold, so it is its owner's alone (0600) from the moment it exists, whatever
    the umask, and is made so again when a resumed run finds it otherwise. It is opened in a
    spreadsheet, which runs a cell written like a formula (a name typed as ``=HYPERLINK(...)``): every
    cell is quoted and one that starts like a formula gets a leading ``'``, as OWASP's "CSV Injection"
    says (https://owasp.org/www-community/attacks/CSV_Injection)."""

    def __init__(self, path: Path, columns: tuple[str, ...], *, append: bool = False) -> None:
        new = not (append and path.exists())
        self._columns = columns
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if new else os.O_APPEND), 0o600)
        os.fchmod(descriptor, 0o600)
        self._file: IO[str] = os.fdopen(descriptor, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, quoting=csv.QUOTE_ALL)
        if new:
            self._writer.writerow(columns)

    def add(self, record: object) -> None:
        self._writer.writerow([_inert(getattr(record, column)) for column in self._columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""What makes a spreadsheet read a cell as a formula (OWASP: ``= + - @``, tab, carriage return and
line feed, and their full-width forms ``＝ ＋ － ＠``, formulas in some locales)."""


def _inert(value: object) -> str:
    """A cell a spreadsheet shows as text: with a leading ``'`` when it starts like a formula."""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def with_retries[T](call: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, again after the worker's kind of backoff (the CRM's retry-after a floor) while it
    fails retryably, :data:`RETRIES` tries in all."""
    attempt = 1
    while True:
        try:
            return call()
        except CrmError as error:
            if error.kind is not ErrorKind.RETRYABLE or RETRIES.is_last_attempt(attempt):
                raise
            sleep(RETRIES.delay(attempt, retry_after_seconds=error.retry_after_seconds, random=random.random))
            attempt += 1


class _End:
    """What the read-ahead thread hands over after the last item."""


_END = _End()


@dataclass(frozen=True)
class _Failed:
    """What the read-ahead thread hands over when reading failed: the consumer raises it."""

    error: BaseException


def read_ahead[T](produce: Generator[T], *, name: str) -> Generator[T]:
    """``produce``'s items in order, each made on a daemon thread (``name``) while the consumer works on
    the previous one, so that a paced source (Bitrix24's request budget) and the target's writes overlap.

    Bounded: one item waits for the consumer at most, besides the one being made. Whatever ``produce``
    raises is raised to the consumer where the item would have come. Closing this generator (the
    consumer is done, or failed) stops the thread after the item it is making, and closes ``produce``."""
    ahead: queue.Queue[T | _Failed | _End] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: T | _Failed | _End) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def make() -> None:
        try:
            while not stop.is_set():
                item: T | _End = next(produce, _END)
                hand_over(item)
                if isinstance(item, _End):
                    return
        except BaseException as exc:  # handed over to the consumer, which raises it
            hand_over(_Failed(exc))
        finally:
            produce.close()

    threading.Thread(target=make, name=name, daemon=True).start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _End):
                return
            yield item
    finally:
        stop.set()


def _pages(
    source: LeadReader, *, after: str | None, since: datetime | None, sleep: Callable[[float], None]
) -> Generator[LeadPage]:
    """The source's pages, from the one after ``after`` to the last."""
    cursor = after
    while True:
        page = with_retries(partial(source.read_leads, after=cursor, since=since), sleep=sleep)
        yield page
        if page.cursor is None:
            return
        cursor = page.cursor


@dataclass
class Backfill:
    source: CrmProvider
    target: CrmProvider
    checkpoint_path: Path
    report_path: Path
    since: datetime | None = None
    dry_run: bool = False
    restart: bool = False
    progress: Callable[..., Any] | None = None
    """A tqdm-like factory (``total``, ``initial``, ``unit``, ``desc``) for the progress bar; None: none."""
    sleep: Callable[[float], None] = time.sleep
    counts: Counter[str] = field(default_factory=Counter)
    notes_copied: int = 0
    _planned: set[str] = field(default_factory=set)
    """A dry run's phones and e-mails of the leads it would have created: a later lead of the same
    person would be merged into one of them, not created."""

    def run(self) -> Checkpoint:
        """Copy the leads; returns the final checkpoint (its counts say what happened)."""
        if not isinstance(self.source, LeadReader):
            raise SystemExit(f"error: leads cannot be read from {self.source.name}")
        checkpoint = self._start()
        self.counts.update(checkpoint.counts)
        report = Report(Path(checkpoint.report), REPORT_COLUMNS, append=checkpoint.cursor is not None)
        bar = None
        pages: Generator[LeadPage] | None = None
        try:
            pages = read_ahead(
                _pages(self.source, after=checkpoint.cursor, since=self.since, sleep=self.sleep),
                name="crm-bridge-backfill-reader",
            )
            for page in pages:
                if bar is None and self.progress is not None:
                    done = sum(self.counts.values())
                    remaining = page.remaining
                    bar = self.progress(
                        total=done + remaining if remaining is not None else None,
                        initial=done,
                        unit="lead",
                        desc=f"{self.source.name} -> {self.target.name}",
                    )
                for lead in page.leads:
                    outcome = self._copy(lead)
                    report.add(outcome)
                    self.counts[outcome.action] += 1
                    self.notes_copied += outcome.notes_copied
                    checkpoint.cursor = lead.record_id
                    checkpoint.counts = dict(self.counts)
                    if not self.dry_run:
                        checkpoint.save(self.checkpoint_path)
                    if bar is not None:
                        bar.update(1)
            checkpoint.finished = True
            if not self.dry_run:
                checkpoint.save(self.checkpoint_path)
            return checkpoint
        finally:
            if pages is not None:
                pages.close()
            report.close()
            if bar is not None:
                bar.close()

    def _start(self) -> Checkpoint:
        """Resume the interrupted run these arguments describe, or start a new one."""
        since = self.since.isoformat() if self.since else None
        fresh = Checkpoint(self.source.name, self.target.name, since, str(self.report_path))
        if self.restart or self.dry_run:
            return fresh
        found = Checkpoint.load(self.checkpoint_path)
        if found is None or found.finished:
            return fresh
        if not found.matches(self.source.name, self.target.name, self.since):
            raise SystemExit(
                f"error: the checkpoint {self.checkpoint_path} is of another run ({found.source} -> {found.target}, "
                f"since {found.since}); finish that one, pass --restart, or use another --checkpoint"
            )
        return found

    def _copy(self, lead: CrmLead) -> Outcome:
        if not (lead.first_name or lead.last_name or lead.phones or lead.emails or lead.description or lead.notes):
            return Outcome(lead.key, SKIPPED, reason="empty: no name, contact, text or notes")
        try:
            result: ImportResult = with_retries(
                lambda: self.target.import_lead(lead, dry_run=self.dry_run), sleep=self.sleep
            )
        except CrmError as error:
            return Outcome(lead.key, FAILED, reason=f"{error.kind.value}: {error}")
        reason = f"refused fields kept in the text: {', '.join(result.dropped_fields)}" if result.dropped_fields else ""
        action = result.action
        if self.dry_run and action is ImportAction.CREATED:
            contacts = lead.contacts.matchable()
            if contacts & self._planned:
                action = ImportAction.MERGED
            self._planned |= contacts
        return Outcome(lead.key, action.value, result.record_id, result.notes_written, reason)


ACTIONS = (*(action.value for action in ImportAction), SKIPPED, FAILED)
"""Every action a report line may name, in the order the summary lists them."""
