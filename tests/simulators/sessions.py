"""The visitor-session store (crm_bridge.delivery.VisitorSessions) in memory, with the DynamoDB
store's rules: the first lead remembered wins unless replaced, a claim holds until its lead is
remembered or it is released, a session with a lead cannot be claimed; held clicks and hourly counts
beside them."""

from __future__ import annotations

import time

from crm_bridge.delivery.sessions import CLOCK_SKEW_SECONDS, HELD_CLICKS_MAX
from crm_bridge.errors import SessionLeadInProgress


class MemorySessions:
    """The visitor-session store's contract, in memory."""

    def __init__(self) -> None:
        self.leads: dict[tuple[str, str], str] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.held: dict[tuple[str, str], list[str]] = {}
        self.clicks: dict[tuple[str, str, str], set[str]] = {}
        self.earlier: dict[tuple[str, str], tuple[set[str], float]] = {}
        """The leads a session pointed at before, and when it last moved."""

    def lead_for(self, provider: str, session_id: str, operation_id: str | None = None) -> str | None:
        key = (provider, session_id)
        if key not in self.leads and self.claims.get(key, operation_id) != operation_id:
            raise SessionLeadInProgress(provider)
        return self.leads.get(key)

    def claim(self, provider: str, session_id: str, operation_id: str, *, gone: str | None = None) -> bool:
        key = (provider, session_id)
        if gone is not None and self.leads.get(key) == gone:
            del self.leads[key]
            self.claims[key] = operation_id
        return key not in self.leads and self.claims.setdefault(key, operation_id) == operation_id

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        if self.claims.get((provider, session_id)) == operation_id:
            del self.claims[(provider, session_id)]

    def remember(
        self, provider: str, session_id: str, lead_id: str, *, replace: bool = False, earlier: str | None = None
    ) -> None:
        key = (provider, session_id)
        if replace or key not in self.leads:
            self.leads[key] = lead_id
            self.claims.pop(key, None)
        if replace and earlier is not None and earlier != lead_id:
            self.earlier[key] = (self.earlier.get(key, (set(), 0.0))[0] | {earlier}, time.time())

    def earlier_leads(self, provider: str, session_id: str, received_at: float) -> list[str]:
        leads, moved_at = self.earlier.get((provider, session_id), (set(), 0.0))
        return sorted(leads) if moved_at >= received_at - CLOCK_SKEW_SECONDS else []

    def count_click(self, provider: str, session_id: str, hour: str, operation_id: str) -> int:
        counted = self.clicks.setdefault((provider, session_id, hour), set())
        counted.add(operation_id)
        return len(counted)

    def hold(self, provider: str, session_id: str, click: str) -> bool:
        held = self.held.setdefault((provider, session_id), [])
        if len(held) >= HELD_CLICKS_MAX:
            return False
        held.append(click)
        return True

    def held_clicks(self, provider: str, session_id: str) -> list[str]:
        return list(self.held.get((provider, session_id), []))

    def forget_held(self, provider: str, session_id: str, count: int) -> None:
        if len(self.held.get((provider, session_id), [])) == count:
            self.held.pop((provider, session_id), None)
