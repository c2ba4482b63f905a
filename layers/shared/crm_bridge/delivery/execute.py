"""The one delivery path: what executing an operation means, in the API call or on the fifth retry.

Which clicks become leads (docs/traffic.md): a click writes to the CRM when its visitor session is
the site's (the snippet's cookie, an earlier /go) or already has a lead. A click whose session the
redirect started on that very request (no cookie: a link previewer that got past the User-Agent
check, a crawler, a script, or a person straight from a partner's link to the messenger) is *held*
beside the session: it is written onto the session's lead once the session returns (a second click,
an application), and expires otherwise. At most ``CLICKS_PER_SESSION_PER_HOUR`` clicks of one
session are written an hour, counted by the hour the API received them (a client's ``occurred_at``
can say anything); the rest are *folded*: counted, and nothing written.

A click the redirect saw with two sessions of one browser (the site's, from the link, and the API
host's own cookie, from an earlier ``/go`` tap) *links* them: both lead to the lead the click is
written onto, and the held clicks of both are written there, so a partner-link tap, a later click on
the site and the application are one lead, in whichever order they arrive.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from datetime import UTC
from typing import Protocol, assert_never

from crm_bridge.errors import CrmError, LeadNotFound, RefusedCrmError, RetryableCrmError, SessionLeadInProgress
from crm_bridge.models import MessengerActivity, MessengerClickOperation, Operation, UpsertLeadOperation
from crm_bridge.providers import CrmProvider, LeadAction, ProviderResult

CLICKS_PER_SESSION_PER_HOUR = int(os.environ.get("CLICKS_PER_SESSION_PER_HOUR") or 10)
"""A person clicks a few messenger buttons an hour; a script replaying one session is capped here."""


class VisitorSessions(Protocol):
    """Remembers which lead an anonymous visitor session became, per provider, and the clicks of a
    session that nothing vouches for yet."""

    def lead_for(self, provider: str, session_id: str, operation_id: str | None = None) -> str | None:
        """The session's lead; raises :class:`SessionLeadInProgress` while another operation than
        ``operation_id`` is creating it."""
        ...

    def claim(self, provider: str, session_id: str, operation_id: str, *, gone: str | None = None) -> bool:
        """The right to create the session's lead: False while another operation holds it, or the
        session has a lead (unless it is ``gone``, deleted in the CRM)."""
        ...

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        """Give the claim up after a create that surely wrote nothing."""
        ...

    def remember(
        self, provider: str, session_id: str, lead_id: str, *, replace: bool = False, earlier: str | None = None
    ) -> None:
        """``replace``: the visitor applied, so their real lead supersedes an anonymous one; ``earlier``,
        the lead it supersedes, is kept for :meth:`earlier_leads`."""
        ...

    def earlier_leads(self, provider: str, session_id: str, received_at: float) -> list[str]:
        """The leads the session pointed at before its current one, when it was re-pointed after
        ``received_at``: a click received before then may have been written onto one of them by an
        attempt whose answer was lost."""
        ...

    def count_click(self, provider: str, session_id: str, hour: str, operation_id: str) -> int:
        """The session's clicks in this hour, this one included (a retry counts once)."""
        ...

    def hold(self, provider: str, session_id: str, click: str) -> bool:
        """Keep a click operation (JSON) until the session returns; False when the session holds its most."""
        ...

    def held_clicks(self, provider: str, session_id: str) -> list[str]: ...

    def forget_held(self, provider: str, session_id: str, count: int) -> None: ...


def deliver(operation: Operation, provider: CrmProvider, sessions: VisitorSessions | None = None) -> ProviderResult:
    """Execute an operation against the CRM. Raises :class:`crm_bridge.errors.CrmError`."""
    match operation:
        case UpsertLeadOperation(payload=application):
            session_id = application.session_id
            if sessions is None or not session_id:
                return provider.upsert_lead(application, operation.operation_id)
            # Both session reads go out beside the CRM's search, not after it: an applicant waits for them
            # (in the API they started earlier still, beside the idempotency claim: delivery/overlap.py).
            session_lead = read_alongside(sessions.lead_for, provider.name, session_id)
            held = read_alongside(sessions.held_clicks, provider.name, session_id)

            def anonymous_lead() -> str | None:
                """The visitor's clicks may have made an anonymous lead, which the application then
                completes: while a click is still creating it, the application waits (is retried).
                Unknown when the store fails: the applicant's lead is made now, apart."""
                try:
                    return session_lead.result()
                except SessionLeadInProgress:
                    raise
                except RetryableCrmError:
                    return None

            result = provider.upsert_lead(application, operation.operation_id, session_lead=anonymous_lead)
            if isinstance(session_lead.exception(), SessionLeadInProgress):
                # A known applicant's lead was written without asking the session, while a click is still
                # creating the session's lead: taking the session now would have that click's retry write
                # itself onto this lead too. The application is retried (it finds what it wrote) once the
                # click's lead is there.
                raise SessionLeadInProgress(provider.name)
            held_clicks = held.result()
            previous = None if session_lead.exception() else session_lead.result()
            sessions.remember(provider.name, session_id, result.record_id, replace=True, earlier=previous)
            anonymous = [previous] if previous and previous != result.record_id else []
            _write_held_clicks(provider, sessions, session_id, result.record_id, held_clicks, anonymous)
            return result
        case MessengerClickOperation(payload=activity):
            if sessions is None:
                return _deliver_click(operation, activity, provider)
            hour = f"{operation.created_at.astimezone(UTC):%Y%m%d%H}"
            clicks = sessions.count_click(provider.name, activity.session_id, hour, str(operation.operation_id))
            if clicks > CLICKS_PER_SESSION_PER_HOUR:
                return _not_written(provider, LeadAction.FOLDED)
            received_at = operation.created_at.timestamp()
            earlier = [
                lead
                for session_id in activity.sessions()
                for lead in sessions.earlier_leads(provider.name, session_id, received_at)
            ]
            result = _deliver_click(operation, activity, provider, sessions, earlier)
            if result.record_id:  # written: the visitor's sessions have their lead now
                for session_id in activity.sessions():
                    waiting = sessions.held_clicks(provider.name, session_id)
                    _write_held_clicks(provider, sessions, session_id, result.record_id, waiting, earlier)
            return result
        case _:
            assert_never(operation)


def _deliver_click(
    operation: MessengerClickOperation,
    activity: MessengerActivity,
    provider: CrmProvider,
    sessions: VisitorSessions | None = None,
    earlier: list[str] | None = None,
) -> ProviderResult:
    """``earlier``: leads the visitor's sessions pointed at before, where an attempt of this click
    whose answer was lost may have written it."""
    if sessions is None:
        return provider.create_minimal_lead_from_activity(activity, operation.operation_id)
    # The sessions' lead: it follows the visitor (an application replaces an anonymous lead, a closed
    # lead's successor replaces it). The site's session first: it is the one an application carries.
    claimer = str(operation.operation_id)
    known = {session_id: sessions.lead_for(provider.name, session_id, claimer) for session_id in activity.sessions()}
    gone: set[str] = set()
    for lead_id in dict.fromkeys(lead for lead in known.values() if lead):
        try:
            result = provider.log_activity(lead_id, activity, operation.operation_id, earlier_leads=earlier or ())
        except LeadNotFound:
            gone.add(lead_id)  # deleted in the CRM: fall back to the next one, or a new lead
            continue
        _remember(sessions, provider, known, result.record_id)
        return result
    if activity.session_started:  # nothing shows a person yet: wait for the session to return
        held = sessions.hold(provider.name, activity.session_id, operation.model_dump_json())
        return _not_written(provider, LeadAction.HELD if held else LeadAction.FOLDED)
    previous = known[activity.session_id]
    if not sessions.claim(provider.name, activity.session_id, claimer, gone=previous if previous in gone else None):
        raise SessionLeadInProgress(provider.name)
    try:
        result = provider.create_minimal_lead_from_activity(activity, operation.operation_id)
    except CrmError as error:
        # A create that may have written (no answer, or a 5xx after the CRM ran it) keeps its claim for
        # its retry, which finds what it wrote; one that surely wrote nothing gives the session up.
        if isinstance(error, RefusedCrmError) or not isinstance(error, RetryableCrmError):
            sessions.release(provider.name, activity.session_id, claimer)
        raise
    _remember(sessions, provider, known, result.record_id)
    return result


def _remember(sessions: VisitorSessions, provider: CrmProvider, known: dict[str, str | None], lead_id: str) -> None:
    """Point each of the visitor's sessions at ``lead_id``: one that had no lead yet (unless a concurrent
    click recorded one meanwhile), and one whose lead was closed, deleted, or another of the same visitor."""
    for session_id, previous in known.items():
        if previous != lead_id:
            sessions.remember(provider.name, session_id, lead_id, replace=previous is not None, earlier=previous)


_session_reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="crm-bridge-session-reads")
"""The visitor-session store's reads, two at a time (a session's lead, its held clicks)."""


def read_alongside[T](read: Callable[[str, str], T], provider: str, session_id: str) -> Future[T]:
    """``read(provider, session_id)`` on a thread of its own, in the caller's context (logger keys)."""
    return _session_reads.submit(copy_context().run, read, provider, session_id)


def _write_held_clicks(
    provider: CrmProvider,
    sessions: VisitorSessions,
    session_id: str,
    lead_id: str,
    held: list[str],
    earlier: list[str] | None = None,
) -> None:
    """The session has returned: its held clicks become notes on its lead, each once (its own
    operation's marker, looked for on the session's ``earlier`` leads too), oldest first; then they
    are dropped."""
    for click in held:
        operation = MessengerClickOperation.model_validate_json(click)
        provider.log_activity(lead_id, operation.payload, operation.operation_id, earlier_leads=earlier or ())
    if held:
        sessions.forget_held(provider.name, session_id, len(held))


def _not_written(provider: CrmProvider, action: LeadAction) -> ProviderResult:
    return ProviderResult(provider=provider.name, record_id="", action=action, elapsed_ms=0.0)
