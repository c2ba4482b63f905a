"""The real EspoCRM, seen by the tests the way they see its simulator.

* :class:`RealEspoCrmProxy` stands between the provider and the server on a loopback port: it
  forwards every request, and injects what the tests ask for with the fault plan of
  tests/faults/crm.py (5xx, hangs, resets, writes run after the client gave up). Rejected
  credentials are real ones: the proxy swaps in a wrong key (the server answers 401) or the key of
  an API user without a role (403). A refused connection is a reset here: once a server listens,
  a connection to it cannot be refused; the provider treats both as the same transport failure.
* :class:`RealEspoCrmState` offers :class:`tests.simulators.base.SimulatedCrm`'s reading
  interface through the REST API as admin, so every contract behaviour asserts the same way
  against a simulator and against the server. :meth:`RealEspoCrmState.clean` puts the server back
  as the test found it: its leads deleted, fields it changed restored (a dropped field is made
  again by the project's provisioning command).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

from infra.espocrm.local import EspoCrmSite, provision
from tests.e2e.stub_crm import LoopbackCrm
from tests.faults.crm import Fault, FaultInjection, LeadRecord, Phase
from tests.simulators.base import Failure, SeededClosedLead

_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding"})
_FAULTS: dict[Failure, Fault] = {
    Failure.SERVER_ERROR: Fault.ERROR_500,
    Failure.MAINTENANCE: Fault.MAINTENANCE_503,
    Failure.TIMEOUT: Fault.HANG,
    Failure.CONNECTION_REFUSED: Fault.RESET,
    # EspoCRM has no rate limit of its own: what a limiting proxy in front of it answers is a 5xx.
    Failure.RATE_LIMITED: Fault.ERROR_500,
    Failure.TIME_LIMITED: Fault.ERROR_500,
}
PAGE = 200  # EspoCRM's largest maxSize


class EspoCrmForwarder(LoopbackCrm):
    """Forwards each request to the real server; :meth:`substitute_key` changes the next ones' key."""

    def __init__(self, port: int, *, upstream: str, **_: Any) -> None:
        super().__init__(port)
        self.upstream = upstream.rstrip("/")
        self._client = httpx.Client(timeout=120)
        self._keys: deque[str] = deque()

    def close(self) -> None:
        """Stop for good (``stop`` alone is an outage: the proxy starts again on the same port)."""
        self.stop()
        self._client.close()

    def substitute_key(self, api_key: str, times: int = 1) -> None:
        self._keys.extend([api_key] * times)

    def answer(self, request: httpx.Request) -> httpx.Response:
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        if self._keys and "x-api-key" in {name.lower() for name in headers}:
            headers = {name: value for name, value in headers.items() if name.lower() != "x-api-key"}
            headers["X-Api-Key"] = self._keys.popleft()
        upstream = self._client.request(
            request.method, self.upstream + request.url.raw_path.decode(), headers=headers, content=request.content
        )
        return httpx.Response(upstream.status_code, headers=upstream.headers.multi_items(), content=upstream.content)


class RealEspoCrmProxy(FaultInjection, EspoCrmForwarder):
    """The fault plan in front of the real server."""

    def __init__(
        self,
        port: int,
        upstream: str,
        *,
        seed: int = 0,
        client_timeout_seconds: float = 0.5,
        weights: dict[Fault, float] | None = None,
        late_write_seconds: float | None = None,
    ) -> None:
        super().__init__(
            port,
            seed=seed,
            client_timeout_seconds=client_timeout_seconds,
            weights=weights,
            late_write_seconds=late_write_seconds,
            upstream=upstream,
        )


class EspoCrmAdminClient:
    """Reads (and, for seeding and cleaning, writes) the server as its administrator."""

    def __init__(self, site: EspoCrmSite) -> None:
        self.site = site
        self._http = httpx.Client(
            base_url=f"{site.url}/api/v1/", auth=(site.admin_user, site.admin_password), timeout=120
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            reason = response.headers.get("X-Status-Reason", "")
            raise AssertionError(f"EspoCRM answered {method} {path} with {response.status_code} {reason}")
        return response.json() if response.content else None

    def lead_ids(self, *, since: str) -> list[str]:
        """Every lead created at or after ``since`` (EspoCRM's UTC ``YYYY-MM-DD HH:MM:SS``), oldest first."""
        ids: list[str] = []
        while True:
            page = self.request(
                "GET",
                "Lead",
                params={
                    "select": "id",
                    "orderBy": "createdAt",
                    "order": "asc",
                    "maxSize": str(PAGE),
                    "offset": str(len(ids)),
                    "where[0][type]": "after",
                    "where[0][attribute]": "createdAt",
                    "where[0][value]": since,
                    "where[0][dateTime]": "true",
                },
            )
            ids += [str(item["id"]) for item in page["list"]]
            if len(page["list"]) < PAGE:
                return ids

    def lead(self, lead_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"Lead/{lead_id}"))

    def posts(self, lead_id: str) -> list[str]:
        """Texts of the lead's stream posts (notes), oldest first."""
        notes: list[dict[str, Any]] = []
        while True:
            page = self.request(
                "GET", f"Lead/{lead_id}/stream", params={"maxSize": str(PAGE), "offset": str(len(notes))}
            )
            notes += page["list"]
            if len(page["list"]) < PAGE:
                break
        return [str(note.get("post") or "") for note in reversed(notes) if note.get("type") == "Post"]

    def field(self, attribute: str) -> dict[str, Any]:
        return dict(self.request("GET", f"Admin/fieldManager/Lead/{attribute}"))

    def close(self) -> None:
        self._http.close()


def espocrm_now() -> str:
    """The server's clock format, a second early (createdAt has second precision)."""
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() - 1, UTC).strftime("%Y-%m-%d %H:%M:%S")


class RealEspoCrmState:
    """:class:`tests.simulators.base.SimulatedCrm` for the real server: reads as admin, faults by the proxy."""

    provider_name = "espocrm"

    def __init__(self, site: EspoCrmSite, proxy: RealEspoCrmProxy, *, wrong_key: str, roleless_key: str) -> None:
        self.admin = EspoCrmAdminClient(site)
        self.proxy = proxy
        self._wrong_key = wrong_key
        self._roleless_key = roleless_key
        self._since = espocrm_now()
        self._changed_fields: dict[str, dict[str, Any]] = {}
        self._dropped = False
        self._converted_into: list[tuple[str, str]] = []

    def seed_lead(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        body = {"firstName": first_name, "lastName": last_name, "phoneNumber": phone, "emailAddress": email}
        body = {key: value for key, value in body.items() if value is not None} | (attributes or {})
        created = self.admin.request("POST", "Lead", json=body, headers={"X-Skip-Duplicate-Check": "true"})
        return str(created["id"])

    def seed_closed_lead(self, *, phone: str, email: str | None = None, converted: bool = True) -> SeededClosedLead:
        """As a salesperson closes it: ``Lead/action/convert`` (the Contact and Account it creates
        are recorded on the lead as createdContactId/createdAccountId), or the status set to Dead."""
        lead_id = self.seed_lead(last_name="Converted", phone=phone, email=email)
        if not converted:
            self.admin.request("PUT", f"Lead/{lead_id}", json={"status": "Dead"})
            return SeededClosedLead(lead_id)
        records = {"Contact": {"lastName": "Converted"}, "Account": {"name": "Converted lead's account"}}
        self.admin.request("POST", "Lead/action/convert", json={"id": lead_id, "records": records})
        lead = self.admin.lead(lead_id)
        contact_id, account_id = str(lead["createdContactId"]), str(lead["createdAccountId"])
        self._converted_into += [("Contact", contact_id), ("Account", account_id)]
        return SeededClosedLead(lead_id, contact_id, account_id)

    def leads(self) -> list[dict[str, Any]]:
        return [self.admin.lead(lead_id) for lead_id in self.admin.lead_ids(since=self._since)]

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self.admin.lead(lead_id)

    def lead_phones(self, lead_id: str) -> list[str]:
        return [item["phoneNumber"] for item in self.lead(lead_id).get("phoneNumberData") or []]

    def lead_emails(self, lead_id: str) -> list[str]:
        return [item["emailAddress"] for item in self.lead(lead_id).get("emailAddressData") or []]

    def timeline(self, lead_id: str) -> list[str]:
        return self.admin.posts(lead_id)

    def fail_next(self, failure: Failure, times: int = 1) -> None:
        if failure is Failure.UNAUTHORIZED:
            self.proxy.substitute_key(self._wrong_key, times)
        elif failure is Failure.FORBIDDEN:
            self.proxy.substitute_key(self._roleless_key, times)
        else:
            self.proxy.force(_FAULTS[failure], times)

    def reject_attribute(self, attribute: str) -> None:
        """A real refusal: the field's maximum length shrinks to 1, so any longer value is a 400."""
        definition = self.admin.field(attribute)
        assert definition.get("type") == "varchar", f"{attribute} is not a text field: cannot make it refuse values"
        self._changed_fields.setdefault(attribute, definition)
        # The field manager needs the type with every change (without it: a 500).
        self.admin.request("PUT", f"Admin/fieldManager/Lead/{attribute}", json={"type": "varchar", "maxLength": 1})

    def drop_attribute(self, attribute: str) -> None:
        self.admin.request("DELETE", f"Admin/fieldManager/Lead/{attribute}")
        self._dropped = True

    def view(self) -> list[LeadRecord]:
        """Every lead since this state began, as the fault run counts them."""
        return [
            LeadRecord(
                phones=[item["phoneNumber"] for item in lead.get("phoneNumberData") or []],
                session_id=lead.get("cVisitorSessionId"),
                description=str(lead.get("description") or ""),
                notes=self.admin.posts(str(lead["id"])),
            )
            for lead in self.leads()
        ]

    def delete_lead(self, lead_id: str) -> None:
        self.admin.request("DELETE", f"Lead/{lead_id}")

    def clean(self) -> None:
        """Leave the server as the test found it."""
        for attribute, definition in self._changed_fields.items():
            self.admin.request("PUT", f"Admin/fieldManager/Lead/{attribute}", json=definition)
        if self._dropped:
            provision(self.admin.site)
        for lead_id in self.admin.lead_ids(since=self._since):
            self.admin.request("DELETE", f"Lead/{lead_id}")
        for entity, record_id in self._converted_into:
            self.admin.request("DELETE", f"{entity}/{record_id}")
        self.admin.close()


class RealFaultyEspoCrm:
    """What the fault scenario needs of a CRM (tests.faults.scenario.FaultyCrm), for the real server."""

    def __init__(self, proxy: RealEspoCrmProxy, state: RealEspoCrmState) -> None:
        self.proxy = proxy
        self.state = state

    @property
    def faults(self) -> dict[str, int]:
        return self.proxy.faults

    def set_phase(self, phase: Phase) -> None:
        self.proxy.set_phase(phase)

    def settle(self) -> None:
        self.proxy.settle()

    def view(self) -> list[LeadRecord]:
        self.proxy.settle()
        return self.state.view()
