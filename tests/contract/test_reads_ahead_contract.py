"""The lead search sent ahead of the idempotency claim (crm_bridge/delivery/overlap.py), over every
provider: the delivery sends the CRM the same requests, in the same order, as without it, and
nothing sent ahead can write."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from crm_bridge.delivery import deliver
from crm_bridge.delivery.overlap import SEARCHES_AHEAD, application_ahead
from crm_bridge.models import Application, Origin, UpsertLeadOperation
from crm_bridge.providers import LeadAction, ProviderResult
from crm_bridge.providers import http as crm_http
from crm_bridge.providers.http import ReadsAhead, WriteAhead
from tests.contract.conftest import Crm


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each request that leaves for the CRM (an answer read ahead and handed over does not)."""
    requests: list[str] = []
    original = crm_http._send

    def recording(client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool) -> httpx.Response:
        requests.append(request.method)
        return original(client, provider, request, writes=writes)

    monkeypatch.setattr(crm_http, "_send", recording)
    return requests


def applicant(number: int) -> Application:
    return Application.model_validate(
        {
            "name": f"Ali Veli{'k' * number}",
            "phone": f"+90 532 765 43 {number:02d}",
            "email": f"ali{number}@example.com",
        }
    )


def delivered(crm: Crm, application: Application, *, ahead: bool) -> ProviderResult:
    operation = UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=application)
    if not ahead:
        return deliver(operation, crm.provider)
    with (
        application_ahead(
            lambda: crm.provider, application, operation.operation_id, budget_seconds=10.0, sessions=None
        ) as overlap,
        overlap.claimed(10.0),
    ):
        return deliver(operation, crm.provider)


def test_with_the_search_ahead_the_crm_sees_the_same_requests(crm: Crm, sent: list[str]) -> None:
    without = delivered(crm, applicant(1), ahead=False)
    requests_without = list(sent)
    sent.clear()
    with_ahead = delivered(crm, applicant(2), ahead=True)

    assert without.action is with_ahead.action is LeadAction.CREATED
    assert sent == requests_without

    sent.clear()
    again_without = delivered(crm, applicant(1), ahead=False)
    requests_without = list(sent)
    sent.clear()
    again_with_ahead = delivered(crm, applicant(2), ahead=True)

    assert (again_without.record_id, again_with_ahead.record_id) == (without.record_id, with_ahead.record_id)
    assert again_without.action is again_with_ahead.action
    assert sent == requests_without
    assert len(crm.sim.leads()) == 2


def test_nothing_sent_ahead_can_write(crm: Crm, sent: list[str]) -> None:
    if crm.provider.name not in SEARCHES_AHEAD:
        pytest.skip(f"{crm.provider.name} is not searched ahead: its requests do not go through the HTTP edge")

    with ReadsAhead().sending(), pytest.raises(WriteAhead):
        crm.provider.upsert_lead(applicant(3), uuid4())  # the whole upsert, not just its search

    assert crm.sim.leads() == [], "the create was refused before it left"
    assert sent, "the search before it did go out"
