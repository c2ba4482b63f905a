"""The sandbox CRM's backdoor for the tests: its SQLite file, seen through :class:`SimulatedCrm`.

Unlike the EspoCRM and Bitrix24 simulators nothing is simulated here: the sandbox provider is the
CRM, and this class reads and configures the very file it writes (as ``make run``'s sandbox does).
Its respx router has no routes and is started while the backdoor is in use, so any HTTP request
the sandbox might make fails the test.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import respx

from infra.local.sandbox import SandboxFault, SandboxStore
from tests.simulators.base import Failure, SeededClosedLead


class SandboxCrm:
    provider_name = "sandbox"

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.store = SandboxStore(db_path)
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)

    def __enter__(self) -> SandboxCrm:
        self.router.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.router.stop(quiet=exc_type is not None)

    def seed_lead(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        values: dict[str, Any] = {
            "first_name": first_name,
            "last_name": last_name,
            "phones": [phone] if phone else None,
            "emails": [email] if email else None,
            **(attributes or {}),
        }
        return self.store.seed_lead({key: value for key, value in values.items() if value is not None})

    def seed_closed_lead(self, *, phone: str, email: str | None = None, converted: bool = True) -> SeededClosedLead:
        if not converted:
            return SeededClosedLead(self.seed_lead(phone=phone, email=email, attributes={"status": "Dead"}))
        attributes = {"status": "Converted", "contact_id": "contact-1", "account_id": "account-1"}
        return SeededClosedLead(
            self.seed_lead(phone=phone, email=email, attributes=attributes), "contact-1", "account-1"
        )

    def leads(self) -> list[dict[str, Any]]:
        return self.store.leads()

    def delete_lead(self, lead_id: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM leads WHERE id = ?", (int(lead_id),))

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self.store.lead(lead_id)

    def lead_phones(self, lead_id: str) -> list[str]:
        return list(self.store.lead(lead_id).get("phones", []))

    def lead_emails(self, lead_id: str) -> list[str]:
        return list(self.store.lead(lead_id).get("emails", []))

    def timeline(self, lead_id: str) -> list[str]:
        self.store.lead(lead_id)  # KeyError for an unknown lead, as the other simulators
        return self.store.notes(lead_id)

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        self.store.fail_next(SandboxFault(failure.value), times)

    def reject_attribute(self, attribute: str) -> None:
        self.store.reject_attribute(attribute)

    def drop_attribute(self, attribute: str) -> None:
        self.store.drop_attribute(attribute)
