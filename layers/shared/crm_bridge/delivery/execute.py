"""The one delivery path: what executing an operation means, in the API call or on the fifth retry."""

from __future__ import annotations

from typing import Protocol, assert_never

from crm_bridge.errors import AmbiguousWriteError, CrmError, LeadNotFound, RetryableCrmError
from crm_bridge.models import MessengerClickOperation, Operation, UpsertLeadOperation
from crm_bridge.providers import CrmProvider, ProviderResult


class VisitorSessions(Protocol):
    """Remembers which lead an anonymous visitor session became, per provider."""

    def lead_for(self, provider: str, session_id: str) -> str | None: ...

    def claim(self, provider: str, session_id: str, operation_id: str) -> bool:
        """The right to create the session's lead: False while another operation holds it."""
        ...

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        """Give the claim up after a create that wrote nothing."""
        ...

    def remember(self, provider: str, session_id: str, lead_id: str, *, replace: bool = False) -> None:
        """``replace``: the visitor applied, so their real lead supersedes an anonymous one."""
        ...


def deliver(operation: Operation, provider: CrmProvider, sessions: VisitorSessions | None = None) -> ProviderResult:
    """Execute an operation against the CRM. Raises :class:`crm_bridge.errors.CrmError`."""
    match operation:
        case UpsertLeadOperation(payload=application):
            session_id = application.session_id
            if sessions is None or not session_id:
                return provider.upsert_lead(application, operation.operation_id)
            known = sessions

            def session_lead() -> str | None:
                """The visitor's clicks may have made an anonymous lead, which the application then
                completes. Unknown when the store fails: the applicant's lead is made now, apart."""
                try:
                    return known.lead_for(provider.name, session_id)
                except RetryableCrmError:
                    return None

            result = provider.upsert_lead(application, operation.operation_id, session_lead=session_lead)
            sessions.remember(provider.name, session_id, result.record_id, replace=True)
            return result
        case MessengerClickOperation(payload=activity):
            # The session's lead first: it follows the visitor (an application replaces an anonymous
            # lead, a closed lead's successor replaces it) where the site may still send an old id.
            known_leads = [
                sessions.lead_for(provider.name, activity.session_id) if sessions else None,
                activity.lead_id,
            ]
            for lead_id in dict.fromkeys(lead for lead in known_leads if lead):
                try:
                    result = provider.log_activity(lead_id, activity, operation.operation_id)
                except LeadNotFound:
                    continue  # deleted in the CRM, or a stale id: fall back to the next one
                if sessions is not None and result.record_id != lead_id:
                    # The lead was closed and the click made a new one: the session is that lead now.
                    sessions.remember(provider.name, activity.session_id, result.record_id, replace=True)
                return result
            if sessions is None:
                return provider.create_minimal_lead_from_activity(activity, operation.operation_id)
            claimer = str(operation.operation_id)
            if not sessions.claim(provider.name, activity.session_id, claimer):
                raise RetryableCrmError(
                    "another click of this visitor session is creating its lead",
                    provider=provider.name,
                    code="session_claimed",
                )
            try:
                result = provider.create_minimal_lead_from_activity(activity, operation.operation_id)
            except CrmError as error:
                if not isinstance(error, AmbiguousWriteError):  # an unanswered create keeps its claim
                    sessions.release(provider.name, activity.session_id, claimer)
                raise
            sessions.remember(provider.name, activity.session_id, result.record_id)
            return result
        case _:
            assert_never(operation)
