"""CRM requests per operation, by kind and provider (issue 13): what each operation costs the CRM.

In process, against the EspoCRM and Bitrix24 simulators (no latency, Bitrix24's rate limit off: the
counts are deterministic), each operation kind goes through the real delivery path,
:func:`crm_bridge.delivery.deliver` with the provider :func:`crm_bridge.providers.build_provider`
makes and an in-memory visitor-session store, and the HTTP requests it sent are counted (a Bitrix24
``batch`` is one request, as the portal's limit counts it). Each kind is then delivered again,
identically (same operation id), as the queue does after a lost acknowledgement.

Bitrix24's budget is 2 requests/s per portal, so its targets are the point: a click on a known lead
at most 2 requests, a new application at most 2, a repeat application at most 3.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from crm_bridge.delivery import deliver
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.models import (
    Application,
    Channel,
    MessengerActivity,
    MessengerClickOperation,
    Operation,
    Origin,
    UpsertLeadOperation,
)
from crm_bridge.providers import CrmProvider, build_provider
from crm_bridge.settings import load_settings
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.simulators.sessions import MemorySessions

PROVIDERS = ("espocrm", "bitrix24")
NEW_APPLICATION = "new application"
REPEAT_APPLICATION = "repeat application (same phone)"
FIRST_CLICK = "first click of a session (minimal lead)"
KNOWN_LEAD_CLICK = "click on a known lead"
RETRY = " - identical retry"
KINDS = (NEW_APPLICATION, REPEAT_APPLICATION, FIRST_CLICK, KNOWN_LEAD_CLICK)
TARGETS: dict[tuple[str, str], int] = {
    ("bitrix24", KNOWN_LEAD_CLICK): 2,
    ("bitrix24", NEW_APPLICATION): 2,
    ("bitrix24", REPEAT_APPLICATION): 3,
}
"""Most requests an operation may cost (issue 13); kinds without one are reported, not judged."""
ESPOCRM_API_KEY = "bench-requests-espo-key-0001"
BITRIX24_TOKEN = "benchrequests0token0x1"  # noqa: S105 - the simulator's, nothing real


@dataclass(frozen=True)
class RequestCount:
    provider: str
    kind: str
    requests: int
    target: int | None

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.requests <= self.target


@contextmanager
def _simulated(provider: str) -> Iterator[tuple[CrmProvider, Callable[[], int]]]:
    """A provider against its simulator, and the simulator's count of HTTP requests so far."""
    mapping = load_field_mapping()
    if provider == "espocrm":
        with SimulatedEspoCrm(api_key=ESPOCRM_API_KEY) as espocrm:
            settings = load_settings(
                {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": espocrm.base_url, "ESPOCRM_API_KEY": ESPOCRM_API_KEY}
            )
            crm = build_provider(settings, mapping)
            try:
                yield crm, lambda: len(espocrm.router.calls)
            finally:
                crm.close()
    else:
        with SimulatedBitrix24(token=BITRIX24_TOKEN, rate_per_second=None) as bitrix24:
            settings = load_settings({"CRM_PROVIDER": "bitrix24", "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url})
            crm = build_provider(settings, mapping)
            try:
                yield crm, lambda: bitrix24.requests
            finally:
                crm.close()


def _session() -> str:
    return f"bench-{uuid.uuid4().hex[:16]}"


def _application(phone: str, email: str, session_id: str) -> UpsertLeadOperation:
    application = Application(
        name="Ayşe Yılmaz",
        phone=phone,
        email=email,
        user_type="student",
        program="Medicine",
        consent=True,
        session_id=session_id,
        attribution={"referral_code": "PARTNER-42", "utm_source": "instagram", "utm_campaign": "spring"},
    )
    return UpsertLeadOperation(origin=Origin.APPLICATIONS_API, correlation_id="bench", payload=application)


def _click(session_id: str) -> MessengerClickOperation:
    activity = MessengerActivity(channel=Channel.WHATSAPP, session_id=session_id, page="/programs/medicine")
    return MessengerClickOperation(origin=Origin.REDIRECT, correlation_id="bench", payload=activity)


def count_provider(provider: str) -> list[RequestCount]:
    """Each kind, then its identical retry, in one CRM: the requests each delivery sent."""
    counts: list[RequestCount] = []
    sessions = MemorySessions()
    applicant = _session()
    operations: dict[str, Operation] = {
        NEW_APPLICATION: _application("+90 532 111 22 33", "ayse@example.com", applicant),
        REPEAT_APPLICATION: _application("+90 532 111 22 33", "ayse.yilmaz@example.org", _session()),
        FIRST_CLICK: _click(_session()),
        KNOWN_LEAD_CLICK: _click(applicant),  # the applicant's session: its lead is known
    }
    with _simulated(provider) as (crm, requests):
        for kind, operation in operations.items():
            for label in (kind, kind + RETRY):
                before = requests()
                deliver(operation, crm, sessions)
                counts.append(RequestCount(provider, label, requests() - before, TARGETS.get((provider, label))))
    return counts


def measure_requests(providers: tuple[str, ...] = PROVIDERS) -> list[RequestCount]:
    return [count for provider in providers for count in count_provider(provider)]


def requests_per_operation(provider: str, kind: str) -> int:
    """What one operation of ``kind`` costs ``provider`` without limit errors (e.g. a drain's floor)."""
    return next(count.requests for count in count_provider(provider) if count.kind == kind)
