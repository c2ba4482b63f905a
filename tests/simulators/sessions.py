"""The visitor-session store (crm_bridge.delivery.VisitorSessions) in memory, with the DynamoDB
store's rules: the first lead remembered wins unless replaced, a claim holds until its lead is
remembered or it is released, a session with a lead cannot be claimed."""

from __future__ import annotations


class MemorySessions:
    """The visitor-session store's contract, in memory."""

    def __init__(self) -> None:
        self.leads: dict[tuple[str, str], str] = {}
        self.claims: dict[tuple[str, str], str] = {}

    def lead_for(self, provider: str, session_id: str) -> str | None:
        return self.leads.get((provider, session_id))

    def claim(self, provider: str, session_id: str, operation_id: str) -> bool:
        key = (provider, session_id)
        return key not in self.leads and self.claims.setdefault(key, operation_id) == operation_id

    def release(self, provider: str, session_id: str, operation_id: str) -> None:
        if self.claims.get((provider, session_id)) == operation_id:
            del self.claims[(provider, session_id)]

    def remember(self, provider: str, session_id: str, lead_id: str, *, replace: bool = False) -> None:
        if replace or (provider, session_id) not in self.leads:
            self.leads[(provider, session_id)] = lead_id
