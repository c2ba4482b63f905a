"""An application's DynamoDB round trips overlapped with its CRM requests, nothing reordered that matters.

A new applicant's synchronous path is: the idempotency record "in progress" (DynamoDB), the lead
search and the create (the CRM), the visitor session (DynamoDB), the idempotency record's answer
(DynamoDB). Run one after the other, the three DynamoDB round trips were most of what the path
spent above its CRM floor (docs/performance.md). Two of them now run beside something else:

* **The lead search is sent while the idempotency record is written** (:class:`ApplicationAhead`).
  Only the search, which is read-only, and only under :meth:`ReadsAhead.sending
  <crm_bridge.providers.http.ReadsAhead.sending>`, which refuses any write before it leaves: the
  CRM cannot be changed before the record says "in progress". The delivery itself is unchanged
  (:func:`crm_bridge.delivery.deliver`, the worker's too) and starts, as before, only once the
  record is claimed: it first waits for the search, then its identical first request(s) get the
  answers read ahead instead of going out again (the CRM sees the same requests in the same order).
  If the claim fails (a concurrent duplicate: 409; a finished one: its stored answer; the key
  reused: 422), the delivery never runs, so nothing is written, and the answer read ahead is dropped:
  such a request now costs the CRM one read-only search, which it did not before.
* **The visitor session's lead and held clicks are read while the idempotency record is written**
  (:meth:`SessionsAlongside.read_ahead`): reads, asked for by the delivery next.
* **The visitor session is written while the idempotency record's answer is** (:class:`SessionsAlongside`).
  Both come after the create and neither needs the other. ``remember`` runs on the background
  thread, exactly as it ran inline (it never raises: a store failure is logged, without personal
  data, and the lead stands), and the invocation waits for it before it returns, whatever happened.

Why the search may be read before the claim: its answer is used only by the delivery that then
holds the claim, and only for that delivery's reads before its first write. What it could miss
is a lead written in between, a few milliseconds. Other submissions' writes race with the search
as they always did (search and create were never atomic: EspoCRM's duplicate check and the
operation marker the upsert looks for cover them). Writes of this very operation come only from an
attempt holding the claim, and this claim succeeds only once that attempt let go of it: it finished
(then this claim fails and its answer is replayed), or it failed with neither the CRM nor the queue
taking the operation (the record is deleted after a failed queue send and the sealing of the
operation into the log, several round trips after its last CRM request), or its Lambda timed out
(the in-progress record expires with the invocation, long after the CRM budget ended its requests).
A write that lands at the CRM after its sender gave up is the case
``crm_bridge.providers.http.AMBIGUOUS_WRITE_SETTLE_SECONDS`` is for; searching after the claim never
excluded it either. So the window is at most one DynamoDB round trip wider than before, and only for
an attempt of the same key that ended inside it.

If the session store fails, nothing changes: ``remember`` logs it and the lead stands, as inline.
A defect in ``remember`` (an exception it does not expect) surfaces when the invocation waits for
it, as a 500 like before; the idempotency record then already holds the answer, so a retry gets
the stored 201 instead of running again (the lead exists either way).

No work outlives the invocation (a Lambda is frozen after it answers): whatever was started on the
background thread is waited for before the handler returns, on every path. One thread per
container, made on first use; ``concurrent.futures`` is loaded with httpx anyway. What it costs:
~0.2 ms of CPU per hand-over to and from the thread, and the search's request built twice (ahead,
and by the delivery, to be matched), ~0.5 ms of CPU an application in all, against ~10 ms of
waiting saved (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from contextvars import copy_context
from functools import cache, partial
from typing import TYPE_CHECKING
from uuid import UUID

from crm_bridge.delivery.execute import VisitorSessions, read_alongside
from crm_bridge.observability import get_logger
from crm_bridge.providers.budget import time_budget
from crm_bridge.providers.http import ReadsAhead, WriteAhead

if TYPE_CHECKING:
    from crm_bridge.models import Application
    from crm_bridge.providers import CrmProvider

SEARCHES_AHEAD = frozenset({"espocrm", "bitrix24"})
"""Providers whose every CRM request goes through :func:`crm_bridge.providers.http.send`, so that a
search sent ahead is answered to the delivery's own request instead of being sent twice. Any other
(the local sandbox, which talks to SQLite and consumes injected faults per request) is not searched
ahead: its delivery runs exactly as before, its search after the claim."""


@cache
def background() -> ThreadPoolExecutor:
    """The container's one background thread: at most one task runs beside the handler at a time."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-bridge-overlap")


class SessionsAlongside:
    """:class:`VisitorSessions` whose ``remember`` runs on the background thread; :meth:`settle`
    waits for it. Everything else runs inline and settles first, so it always sees what was
    remembered before it, as it would have inline."""

    def __init__(self, sessions: VisitorSessions) -> None:
        self._sessions = sessions
        self._pending: list[Future[None]] = []
        self._leads_ahead: dict[tuple[str, str], Future[str | None]] = {}
        self._held_ahead: dict[tuple[str, str], Future[list[str]]] = {}

    def read_ahead(self, provider: str, session_id: str) -> None:
        """Start reading the session's lead and held clicks now, beside the idempotency claim and the
        search: the delivery asks for them next, before it writes anything."""
        key = (provider, session_id)
        self._leads_ahead[key] = read_alongside(self._sessions.lead_for, provider, session_id)
        self._held_ahead[key] = read_alongside(self._sessions.held_clicks, provider, session_id)

    def lead_for(self, provider: str, session_id: str, operation_id: str | None = None) -> str | None:
        read = self._leads_ahead.pop((provider, session_id), None)
        if read is not None:
            return read.result()
        self.settle()
        return self._sessions.lead_for(provider, session_id, operation_id)

    def claim(self, provider: str, session_id: str, operation_id: str, *, gone: str | None = None) -> bool:
        self.settle()
        return self._sessions.claim(provider, session_id, operation_id, gone=gone)

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        self.settle()
        self._sessions.release(provider, session_id, operation_id)

    def count_click(self, provider: str, session_id: str, hour: str, operation_id: str) -> int:
        self.settle()
        return self._sessions.count_click(provider, session_id, hour, operation_id)

    def hold(self, provider: str, session_id: str, click: str) -> bool:
        self.settle()
        return self._sessions.hold(provider, session_id, click)

    def held_clicks(self, provider: str, session_id: str) -> list[str]:
        read = self._held_ahead.pop((provider, session_id), None)
        if read is not None:
            return read.result()
        self.settle()
        return self._sessions.held_clicks(provider, session_id)

    def forget_held(self, provider: str, session_id: str, count: int) -> None:
        self.settle()
        self._sessions.forget_held(provider, session_id, count)

    def remember(
        self, provider: str, session_id: str, lead_id: str, *, replace: bool = False, earlier: str | None = None
    ) -> None:
        context = copy_context()  # the caller's context (logger keys, budget), as if run inline
        remember = partial(self._sessions.remember, replace=replace, earlier=earlier)
        self._pending.append(background().submit(context.run, remember, provider, session_id, lead_id))

    def earlier_leads(self, provider: str, session_id: str, received_at: float) -> list[str]:
        self.settle()
        return self._sessions.earlier_leads(provider, session_id, received_at)

    def drop_reads(self) -> None:
        """Wait for the reads started ahead that no delivery asked for (the claim failed): no work
        outlives the invocation."""
        reads: list[Future[str | None]] | list[Future[list[str]]]
        for reads in (list(self._leads_ahead.values()), list(self._held_ahead.values())):
            for read in reads:
                read.exception()
        self._leads_ahead, self._held_ahead = {}, {}

    def settle(self) -> None:
        """Wait for every ``remember`` started; raise what one raised (``remember`` itself never
        raises for a store failure, so that would be a defect, reported as it was inline)."""
        pending, self._pending = self._pending, []
        errors = [error for future in pending if (error := future.exception()) is not None]
        if errors:
            raise errors[0]


class ApplicationAhead:
    """One application's search sent ahead of its idempotency claim, and its session written
    alongside the answer. Use :func:`application_ahead`; deliver inside :meth:`claimed`."""

    def __init__(self, sessions: VisitorSessions | None) -> None:
        self.reads = ReadsAhead()
        self.sessions: VisitorSessions | None = SessionsAlongside(sessions) if sessions is not None else None
        self._search: Future[None] | None = None

    def start_search(self, provider: CrmProvider, application: Application, operation_id: UUID, budget: float) -> None:
        if provider.name in SEARCHES_AHEAD:
            context = copy_context()
            self._search = background().submit(
                context.run, self._search_ahead, provider, application, operation_id, budget
            )

    def _search_ahead(self, provider: CrmProvider, application: Application, operation_id: UUID, budget: float) -> None:
        from crm_bridge.providers.lead_draft import draft_from_application

        try:
            draft = draft_from_application(application, operation_id)  # what upsert_lead searches with
            # A provider whose search reads what this operation's upsert needs too (Bitrix24 reads the
            # lead's marked comments in the same batch) searches as the upsert will: same requests.
            searching = getattr(provider, "operation", None)
            with self.reads.sending(), time_budget(budget), searching(operation_id) if searching else nullcontext():
                provider._find_lead(phone=draft.phone, email=draft.email)
        except WriteAhead:  # a provider's search that writes: refused, and worth knowing about
            get_logger().error("the lead search tried to write; refused", extra={"provider": provider.name})
        except Exception:  # noqa: S110  # nosec B110  # the delivery sends what failed again (or gets its error) and decides
            pass

    def wait_for_search(self) -> None:
        if self._search is not None:
            self._search.result()  # _search_ahead never raises
            self._search = None

    @contextmanager
    def claimed(self, budget_seconds: float) -> Iterator[float]:
        """The delivery, once the idempotency record is claimed: waits for the search, answers the
        delivery's identical requests from it, and yields the time budget left after the wait
        (the applicant waits no longer than the budget from the claim, as before)."""
        started = time.monotonic()
        self.wait_for_search()
        with self.reads.answering():
            yield budget_seconds - (time.monotonic() - started)

    def finish(self) -> None:
        """Wait for everything started on the background thread (the search, if no delivery ran;
        the session write)."""
        try:
            self.wait_for_search()
        finally:
            if isinstance(self.sessions, SessionsAlongside):
                self.sessions.drop_reads()
                self.sessions.settle()


@contextmanager
def application_ahead(
    provider: Callable[[], CrmProvider],
    application: Application,
    operation_id: UUID,
    *,
    budget_seconds: float,
    sessions: VisitorSessions | None,
) -> Iterator[ApplicationAhead]:
    """Start the lead search ahead (when the provider can be built: if not, the delivery finds out
    as before) and, on the way out, wait for all background work, whatever happened in between."""
    ahead = ApplicationAhead(sessions)
    try:
        crm = provider()
    except Exception:  # noqa: S110  # nosec B110  # the delivery builds it again and handles the error as it always has
        pass
    else:
        ahead.start_search(crm, application, operation_id, budget_seconds)
        if isinstance(ahead.sessions, SessionsAlongside) and application.session_id:
            ahead.sessions.read_ahead(crm.name, application.session_id)
    try:
        yield ahead
    finally:
        ahead.finish()
