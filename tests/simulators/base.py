"""The interface every simulated CRM offers the tests, beyond the HTTP API it simulates."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Failure(StrEnum):
    """Faults a simulator can inject into its next answers."""

    SERVER_ERROR = "server_error"  # 500 (EspoCRM: empty body; Bitrix24: INTERNAL_SERVER_ERROR envelope)
    MAINTENANCE = "maintenance"  # 503 (EspoCRM maintenance mode; Bitrix24: same as SERVER_ERROR but 503)
    TIMEOUT = "timeout"  # httpx.ReadTimeout raised instead of an answer
    CONNECTION_REFUSED = "connection_refused"  # httpx.ConnectError raised
    UNAUTHORIZED = "unauthorized"  # 401 as the CRM sends it for a bad key / webhook token
    FORBIDDEN = "forbidden"  # 403 as the CRM sends it for a missing role / scope
    RATE_LIMITED = "rate_limited"  # Bitrix24: 503 QUERY_LIMIT_EXCEEDED (EspoCRM has no rate limit: 500)
    TIME_LIMITED = "time_limited"  # Bitrix24: 429 OPERATION_TIME_LIMIT (EspoCRM: 500)


@dataclass(frozen=True)
class SeededClosedLead:
    """A closed lead a test seeded, and the CRM ids of what it became when it was converted."""

    lead_id: str
    contact_id: str | None = None
    account_id: str | None = None


class SimulatedCrm(Protocol):
    provider_name: str

    def seed_lead(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        """Store a lead directly (phone already E.164); return its CRM id as a string."""
        ...

    def seed_closed_lead(self, *, phone: str, email: str | None = None, converted: bool = True) -> SeededClosedLead:
        """Store a lead its salespeople closed as the CRM's users do: converted into a contact and
        an account (EspoCRM: status Converted; Bitrix24: STATUS_ID CONVERTED, semantic S), or lost
        (EspoCRM: Dead; Bitrix24: JUNK, semantic F)."""
        ...

    def leads(self) -> list[dict[str, Any]]:
        """Every stored lead, in the CRM's own attribute names, oldest first."""
        ...

    def lead(self, lead_id: str) -> dict[str, Any]: ...

    def lead_phones(self, lead_id: str) -> list[str]:
        """Every phone number of the lead, as stored."""
        ...

    def lead_emails(self, lead_id: str) -> list[str]: ...

    def timeline(self, lead_id: str) -> list[str]:
        """Texts of the notes / timeline comments on the lead, oldest first."""
        ...

    def delete_lead(self, lead_id: str) -> None:
        """What a salesperson's delete does: the lead is gone from every read and search."""
        ...

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        """Answer the next ``times`` requests (any endpoint) with this failure."""
        ...

    def reject_attribute(self, attribute: str) -> None:
        """Make the CRM refuse any write carrying this attribute with its validation error."""
        ...

    def drop_attribute(self, attribute: str) -> None:
        """Make the CRM lack this (custom) attribute: writes silently ignore it, reads omit it."""
        ...
