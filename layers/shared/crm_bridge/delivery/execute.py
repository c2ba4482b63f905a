"""The one delivery path: what executing an operation means, in the API call or on the fifth retry."""

from __future__ import annotations

from typing import Protocol, assert_never

from crm_bridge.errors import LeadNotFound
from crm_bridge.models import MessengerClickOperation, Operation, UpsertLeadOperation
from crm_bridge.providers import CrmProvider, ProviderResult


class VisitorSessions(Protocol):
    """Remembers which lead an anonymous visitor session became, per provider."""

    def lead_for(self, provider: str, session_id: str) -> str | None: ...

    def remember(self, provider: str, session_id: str, lead_id: str, *, replace: bool = False) -> None:
        """``replace``: the visitor applied, so their real lead supersedes an anonymous one."""
        ...


def deliver(operation: Operation, provider: CrmProvider, sessions: VisitorSessions | None = None) -> ProviderResult:
    """Execute an operation against the CRM. Raises :class:`crm_bridge.errors.CrmError`."""
    match operation:
        case UpsertLeadOperation(payload=application):
            result = provider.upsert_lead(application, operation.operation_id)
            if sessions is not None and application.session_id:
                sessions.remember(provider.name, application.session_id, result.record_id, replace=True)
            return result
        case MessengerClickOperation(payload=activity):
            known_leads = [
                activity.lead_id,
                sessions.lead_for(provider.name, activity.session_id) if sessions else None,
            ]
            for lead_id in dict.fromkeys(lead for lead in known_leads if lead):
                try:
                    return provider.log_activity(lead_id, activity, operation.operation_id)
                except LeadNotFound:
                    continue  # deleted in the CRM, or a stale id from the site: fall back to the session
            result = provider.create_minimal_lead_from_activity(activity, operation.operation_id)
            if sessions is not None:
                sessions.remember(provider.name, activity.session_id, result.record_id)
            return result
        case _:
            assert_never(operation)
