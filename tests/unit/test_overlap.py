"""Reads sent ahead (``providers.http.ReadsAhead``) and the application's overlapped work
(``delivery.overlap``): no write can leave ahead of the claim, an answer read ahead goes only to the
very same request, once, in order, before the delivery's first write, and nothing started in the
background outlives the invocation."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

import httpx
import pytest

from crm_bridge.delivery.overlap import SEARCHES_AHEAD, SessionsAlongside, application_ahead
from crm_bridge.errors import RetryableCrmError
from crm_bridge.models import Application
from crm_bridge.providers.budget import time_budget
from crm_bridge.providers.http import BudgetExhausted, ReadsAhead, WriteAhead, make_client, send
from tests.simulators.sessions import MemorySessions

if TYPE_CHECKING:
    from crm_bridge.providers import CrmProvider

BASE = "https://crm.example.test/api/v1"


class Crm:
    """An httpx transport that counts what reaches it and answers each request with its number."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        what = f"{request.method} {request.url.path.rsplit('/', 1)[-1]}"
        self.seen.append(what)
        if what in self.fail:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"n": len(self.seen)})


@pytest.fixture
def crm() -> Crm:
    return Crm()


@pytest.fixture
def client(crm: Crm) -> httpx.Client:
    return make_client(5.0, httpx.MockTransport(crm))


def get(client: httpx.Client, path: str = "Lead", **params: str) -> httpx.Response:
    return send(client, "espocrm", client.build_request("GET", f"{BASE}/{path}", params=params), writes=False)


def post(client: httpx.Client, path: str = "Lead") -> httpx.Response:
    return send(client, "espocrm", client.build_request("POST", f"{BASE}/{path}", json={"a": 1}), writes=True)


def test_no_write_leaves_while_reading_ahead(client: httpx.Client, crm: Crm) -> None:
    reads = ReadsAhead()
    with reads.sending(), pytest.raises(WriteAhead):
        post(client)
    assert crm.seen == []


def test_an_answer_read_ahead_goes_once_to_the_same_request(client: httpx.Client, crm: Crm) -> None:
    reads = ReadsAhead()
    with reads.sending():
        ahead = get(client, q="ayse")
    with reads.answering():
        assert get(client, q="ayse") is ahead
        again = get(client, q="ayse")
    assert again is not ahead
    assert crm.seen == ["GET Lead", "GET Lead"], "the second identical read went out: an answer is used once"


def test_a_different_request_or_a_write_drops_what_was_read_ahead(client: httpx.Client, crm: Crm) -> None:
    reads = ReadsAhead()
    with reads.sending():
        get(client, q="ayse")
        get(client, "Lead/1")
    with reads.answering():
        get(client, q="someone else")  # not the next one kept: nothing read ahead is used any more
        get(client, q="ayse")
    assert crm.seen == ["GET Lead", "GET 1", "GET Lead", "GET Lead"]

    crm.seen.clear()
    with reads.sending():
        get(client, q="ayse")
        get(client, "Lead/1")
    with reads.answering():
        get(client, q="ayse")
        post(client)
        get(client, "Lead/1")  # after the delivery's own write: sent again, never the answer from before it
    assert crm.seen == ["GET Lead", "GET 1", "POST Lead", "GET 1"]


def test_a_read_that_failed_ahead_fails_the_same_way_without_going_out_again(client: httpx.Client, crm: Crm) -> None:
    crm.fail.add("GET Lead")
    reads = ReadsAhead()
    with reads.sending(), pytest.raises(RetryableCrmError):
        get(client, q="ayse")
    with reads.answering(), pytest.raises(RetryableCrmError, match="connection failed"):
        get(client, q="ayse")
    assert crm.seen == ["GET Lead"]


def test_an_answer_read_ahead_is_handed_over_only_within_the_time_budget(client: httpx.Client) -> None:
    reads = ReadsAhead()
    with reads.sending():
        get(client, q="ayse")
    with reads.answering(), time_budget(0), pytest.raises(BudgetExhausted):
        get(client, q="ayse")


def test_outside_the_blocks_nothing_is_kept(client: httpx.Client, crm: Crm) -> None:
    get(client, q="ayse")
    reads = ReadsAhead()
    with reads.answering():
        get(client, q="ayse")
    assert crm.seen == ["GET Lead", "GET Lead"]


# --- the application's overlap -----------------------------------------------------------------------------


def application() -> Application:
    return Application.model_validate(
        {"name": "Ayşe Yılmaz", "phone": "+905321234567", "email": "ayse@example.com", "consent": True}
    )


class SearchingProvider:
    """Just what the overlap uses of a provider: its name and its lead search (slow, or writing)."""

    def __init__(self, name: str, *, seconds: float = 0.0, client: httpx.Client | None = None) -> None:
        self.name = name
        self.seconds = seconds
        self.client = client
        self.searches: list[tuple[str | None, str | None, str]] = []
        self.finished = threading.Event()

    def _find_lead(self, *, phone: str | None, email: str | None) -> None:
        self.searches.append((phone, email, threading.current_thread().name))
        time.sleep(self.seconds)
        if self.client is not None:
            post(self.client)  # a search that writes: a defect the read-ahead must stop
        self.finished.set()


def built(provider: SearchingProvider) -> Callable[[], CrmProvider]:
    """The container's provider, as ``get_provider`` returns it."""
    return lambda: cast("CrmProvider", provider)


def test_the_search_runs_on_the_background_thread_and_is_waited_for_even_without_a_claim() -> None:
    provider = SearchingProvider("espocrm", seconds=0.2)

    with application_ahead(built(provider), application(), uuid4(), budget_seconds=3.0, sessions=None):
        pass  # the claim failed (a 409, a replay): no delivery ran

    assert provider.finished.is_set(), "nothing is left running when the invocation answers"
    ((phone, email, thread),) = provider.searches
    assert (phone, email) == ("+905321234567", "ayse@example.com")
    assert thread.startswith("crm-bridge-overlap")


def test_a_provider_outside_the_http_edge_is_not_searched_ahead() -> None:
    assert {"espocrm", "bitrix24"} == SEARCHES_AHEAD
    provider = SearchingProvider("sandbox")

    with (
        application_ahead(built(provider), application(), uuid4(), budget_seconds=3.0, sessions=None) as ahead,
        ahead.claimed(3.0) as budget_left,
    ):
        assert 2.9 < budget_left <= 3.0

    assert provider.searches == []


def test_a_search_that_tries_to_write_is_stopped_before_anything_leaves(
    client: httpx.Client, crm: Crm, log_output: io.StringIO
) -> None:
    provider = SearchingProvider("espocrm", client=client)

    with application_ahead(built(provider), application(), uuid4(), budget_seconds=3.0, sessions=None):
        pass

    assert provider.searches
    assert not provider.finished.is_set()
    assert crm.seen == []
    assert "the lead search tried to write; refused" in log_output.getvalue()


def test_a_provider_that_cannot_be_built_is_left_to_the_delivery() -> None:
    def broken() -> Any:
        raise RuntimeError("settings")

    with (
        application_ahead(broken, application(), uuid4(), budget_seconds=3.0, sessions=None) as ahead,
        ahead.claimed(3.0),
    ):
        pass


def test_the_waiting_for_the_search_counts_against_the_delivery_budget() -> None:
    provider = SearchingProvider("espocrm", seconds=0.3)

    with (
        application_ahead(built(provider), application(), uuid4(), budget_seconds=3.0, sessions=None) as ahead,
        ahead.claimed(3.0) as budget_left,
    ):
        assert budget_left < 2.8


class Sessions(MemorySessions):
    """A store whose ``remember`` takes ``seconds`` (or fails with ``error``)."""

    def __init__(self, seconds: float = 0.0, error: Exception | None = None) -> None:
        super().__init__()
        self.seconds = seconds
        self.error = error

    def remember(
        self, provider: str, session_id: str, lead_id: str, *, replace: bool = False, earlier: str | None = None
    ) -> None:
        time.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        super().remember(provider, session_id, lead_id, replace=True)


def test_a_session_remembered_alongside_is_there_once_settled_and_for_a_later_read() -> None:
    store = Sessions(seconds=0.2)
    sessions = SessionsAlongside(store)

    sessions.remember("espocrm", "s-1", "lead-1", replace=True)
    assert sessions.lead_for("espocrm", "s-1") == "lead-1", "a read waits for the writes before it"

    sessions.remember("espocrm", "s-2", "lead-2")
    sessions.settle()
    assert store.leads[("espocrm", "s-2")] == "lead-2"

    sessions.remember("espocrm", "s-3", "lead-3")
    assert not sessions.claim("espocrm", "s-3", "operation-1"), "a claim waits for the writes before it too"


def test_what_a_session_write_raised_is_raised_when_it_is_waited_for() -> None:
    sessions = SessionsAlongside(Sessions(error=KeyError("defect")))
    sessions.remember("espocrm", "s-1", "lead-1")
    with pytest.raises(KeyError, match="defect"):
        sessions.settle()
    sessions.settle()  # reported once


def test_leaving_the_application_waits_for_the_session_write() -> None:
    store = Sessions(seconds=0.2)
    with application_ahead(
        built(SearchingProvider("sandbox")), application(), uuid4(), budget_seconds=3.0, sessions=store
    ) as ahead:
        assert ahead.sessions is not None
        ahead.sessions.remember("espocrm", "s-1", "lead-1")
    assert store.leads == {("espocrm", "s-1"): "lead-1"}


class SlowReads(MemorySessions):
    """A store whose reads take ``seconds`` each, and which records each, by thread, once it is done."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.reads: list[str] = []

    def lead_for(self, provider: str, session_id: str, operation_id: str | None = None) -> str | None:
        time.sleep(self.seconds)
        self.reads.append(threading.current_thread().name)
        return super().lead_for(provider, session_id, operation_id)

    def held_clicks(self, provider: str, session_id: str) -> list[str]:
        time.sleep(self.seconds)
        self.reads.append(threading.current_thread().name)
        return super().held_clicks(provider, session_id)


def test_the_sessions_lead_and_held_clicks_are_read_beside_the_claim_once_each() -> None:
    store = SlowReads(seconds=0.2)
    store.leads[("sandbox", "visitor-session-0001")] = "lead-7"
    store.held[("sandbox", "visitor-session-0001")] = ['{"click": 1}']
    with_session = application().model_copy(update={"session_id": "visitor-session-0001"})

    with application_ahead(
        built(SearchingProvider("sandbox")), with_session, uuid4(), budget_seconds=3.0, sessions=store
    ) as ahead:
        time.sleep(0.25)  # the idempotency claim's round trip: both reads run meanwhile, side by side
        assert ahead.sessions is not None
        started = time.monotonic()
        assert ahead.sessions.lead_for("sandbox", "visitor-session-0001") == "lead-7"
        assert ahead.sessions.held_clicks("sandbox", "visitor-session-0001") == ['{"click": 1}']
        assert time.monotonic() - started < 0.1, "answered from the reads made ahead"
        assert ahead.sessions.lead_for("sandbox", "visitor-session-0001") == "lead-7"  # a later read asks again

    assert len(store.reads) == 3
    assert all(thread.startswith("crm-bridge-session-reads") for thread in store.reads[:2])


def test_reads_made_ahead_that_no_delivery_used_are_waited_for() -> None:
    store = SlowReads(seconds=0.2)
    with_session = application().model_copy(update={"session_id": "visitor-session-0001"})

    with application_ahead(
        built(SearchingProvider("sandbox")), with_session, uuid4(), budget_seconds=3.0, sessions=store
    ):
        pass  # the claim failed: no delivery

    assert len(store.reads) == 2, "both reads were done before the invocation answered"
