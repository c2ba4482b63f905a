"""Simulated CRMs that fail the way real ones fail, in phases: down, flapping, healthy.

:class:`FaultyEspoCrm` extends :class:`tests.e2e.stub_crm.StubEspoCrm` (the recorded-fixture
simulator behind ``http.server``) with a seeded fault plan applied per request, at the socket:

* before the CRM runs the request: a 500 or a 503, an answer slower than the client's timeout
  (then the connection is dropped), a connection reset;
* after it ran the request (the write is done, the client never hears of it): a 500, a slow answer
  past the timeout, a reset. These are the ambiguous failures that retries must not duplicate;
* a slow answer that still arrives in time.

A request the CRM runs late (``late_write``: the client gives up, then the request is executed)
is in the plan only against the real EspoCRM (tests/real_crm), where the race it starts with the
retry is the real one.

Its simulator is :class:`IndexedEspoCrm`: the same answers as :class:`SimulatedEspoCrm`, but
lookups by phone, e-mail, visitor session and name go through an index instead of a scan of every
lead, so two thousand leads cost milliseconds, not minutes. Its HTTP handler sets TCP_NODELAY: the
plain stub writes headers and body apart, and delayed ACKs then cost 40 ms a request.

:class:`FlakyBitrix24` does the same for the Bitrix24 simulator, in process (respx).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from tests.e2e.stub_crm import LoopbackCrm, StubEspoCrm
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm, _fold, _Lead

_INDEXED_ATTRIBUTES = ("phoneNumber", "emailAddress", "cVisitorSessionId")
_NAME = "name"


class Phase(StrEnum):
    DOWN = "down"
    FLAPPING = "flapping"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class LeadRecord:
    """One lead as the count at the end needs it, whatever the CRM."""

    phones: list[str]
    session_id: str | None
    description: str
    notes: list[str]

    @property
    def texts(self) -> list[str]:
        return [self.description, *self.notes]


class IndexedEspoCrm(SimulatedEspoCrm):
    """:class:`SimulatedEspoCrm` whose searches and duplicate checks only look at the leads an index
    says could match; the simulator's own matching still decides, so the answers are unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._index: defaultdict[tuple[str, Any], set[str]] = defaultdict(set)
        self._keys: dict[str, set[tuple[str, Any]]] = {}
        super().__init__(*args, **kwargs)

    def _store(self, values: dict[str, Any]) -> _Lead:
        lead = super()._store(values)
        self._reindex(lead)
        return lead

    def _update_lead(self, request: httpx.Request, lead_id: str) -> httpx.Response:
        response = super()._update_lead(request, lead_id)
        if lead_id in self._state.leads:
            self._reindex(self._state.leads[lead_id])
        return response

    def _search_leads(self, request: httpx.Request) -> httpx.Response:
        candidates = self._candidates(self._search_params(request).where)
        if candidates is None:
            return super()._search_leads(request)
        with self._only(candidates):
            return super()._search_leads(request)

    def _duplicates(self, values: dict[str, Any]) -> list[_Lead]:
        candidates = set(self._index[(_NAME, _name_key(values))])
        for item in values["emailAddressData"]:
            candidates |= self._index[("emailAddress", _fold(item["emailAddress"]))]
        with self._only(candidates):
            return super()._duplicates(values)

    def _reindex(self, lead: _Lead) -> None:
        lead_id = lead.values["id"]
        for key in self._keys.pop(lead_id, set()):
            self._index[key].discard(lead_id)
        keys = {(_NAME, _name_key(lead.values))}
        for attribute in _INDEXED_ATTRIBUTES:
            keys |= {(attribute, _fold(value)) for value in self._where_values(lead, attribute) if value is not None}
        for key in keys:
            self._index[key].add(lead_id)
        self._keys[lead_id] = keys

    def _candidates(self, where: list[Any]) -> set[str] | None:
        """Leads the first indexable where item allows (a superset of the matches), or None: scan."""
        for item in where:
            found = self._indexed(item)
            if found is not None:
                return found
        return None

    def _indexed(self, item: Any) -> set[str] | None:
        if not isinstance(item, dict):
            return None
        if item.get("type") == "or" and isinstance(item.get("value"), list) and item["value"]:
            found: set[str] = set()
            for sub in item["value"]:
                part = self._indexed(sub)
                if part is None:
                    return None
                found |= part
            return found
        if item.get("type") == "equals" and item.get("attribute") in _INDEXED_ATTRIBUTES:
            return set(self._index[(item["attribute"], _fold(str(item.get("value"))))])
        return None

    @contextmanager
    def _only(self, lead_ids: set[str]) -> Iterator[None]:
        everything = self._state.leads
        self._state.leads = {lead_id: everything[lead_id] for lead_id in lead_ids if lead_id in everything}
        try:
            yield
        finally:
            self._state.leads = everything

    def records(self) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """Every lead by id, with the texts of its stream posts: one pass, for counting at the end."""
        posts: defaultdict[str, list[str]] = defaultdict(list)
        for note in self._state.notes:
            if note["type"] == "Post" and note["post"] is not None and note["parentId"]:
                posts[note["parentId"]].append(str(note["post"]))
        return {lead["id"]: (lead, posts[lead["id"]]) for lead in self.leads()}

    def view(self) -> list[LeadRecord]:
        return [
            LeadRecord(
                phones=[item["phoneNumber"] for item in lead["phoneNumberData"]],
                session_id=lead.get("cVisitorSessionId"),
                description=str(lead.get("description") or ""),
                notes=notes,
            )
            for lead, notes in self.records().values()
        ]


def _name_key(values: dict[str, Any]) -> tuple[Any, Any]:
    return (_fold(values.get("firstName") or None), _fold(values.get("lastName") or None))


class Fault(StrEnum):
    """What the CRM does to one request."""

    NONE = "none"
    SLOW = "slow"  # answers, slowly, within the client's timeout
    ERROR_500 = "error_500"  # refuses before running the request
    MAINTENANCE_503 = "maintenance_503"
    HANG = "hang"  # never answers in time, never runs the request
    RESET = "reset"  # resets the connection without running the request
    ERROR_500_AFTER_WRITE = "error_500_after_write"  # ran it, then failed
    HANG_AFTER_WRITE = "hang_after_write"  # ran it; the answer comes too late
    RESET_AFTER_WRITE = "reset_after_write"  # ran it, then reset the connection
    LATE_WRITE = "late_write"  # never answers in time; runs the request after the client gave up


FLAPPING: dict[Fault, float] = {
    Fault.NONE: 0.80,
    Fault.SLOW: 0.04,
    Fault.ERROR_500: 0.03,
    Fault.MAINTENANCE_503: 0.02,
    Fault.HANG: 0.01,
    Fault.RESET: 0.02,
    Fault.ERROR_500_AFTER_WRITE: 0.03,
    Fault.HANG_AFTER_WRITE: 0.01,
    Fault.RESET_AFTER_WRITE: 0.04,
}
"""How often each fault strikes while the CRM flaps."""


class _Drop(Exception):
    """Close the connection without an answer (``reset``: with a TCP RST)."""

    def __init__(self, *, reset: bool) -> None:
        super().__init__("dropped")
        self.reset = reset


class FaultInjection(LoopbackCrm):
    """A fault plan in front of whatever answers next in the MRO (the simulator, or a real EspoCRM).

    ``flapping`` draws a fault per request from a seeded generator (``weights``); :meth:`force`
    queues faults for the next requests whatever the phase; otherwise requests pass. Down is
    :meth:`stop`: nothing listens on the port."""

    def __init__(
        self,
        port: int,
        *,
        seed: int = 0,
        client_timeout_seconds: float = 0.1,
        weights: dict[Fault, float] | None = None,
        late_write_seconds: float | None = None,
        **upstream: Any,
    ) -> None:
        super().__init__(port, **upstream)
        self.flapping = False
        self.faults: dict[str, int] = dict.fromkeys(Fault, 0)
        self.weights = weights or FLAPPING
        self._forced: deque[Fault] = deque()
        self._random = random.Random(seed)  # noqa: S311 - a reproducible fault plan, not a secret
        self._plan_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._late = client_timeout_seconds * 1.5
        self._slow = client_timeout_seconds * 0.3
        self._late_write = late_write_seconds or self._late * 1.5
        self._late_writes: list[threading.Thread] = []
        self._answering = 0
        self._answered = threading.Condition()

    def start(self) -> None:
        super().start()
        assert self._server is not None
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def stop(self) -> None:
        """Down as a crashed server is down: the listener and every open connection are gone."""
        super().stop()
        with self._plan_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def running(self) -> bool:
        return self._server is not None

    def set_phase(self, phase: Phase) -> None:
        """Down: nothing listens; flapping: the fault plan; recovered: healthy."""
        if phase is Phase.DOWN:
            self.stop()
        elif not self.running:
            self.start()
        self.flapping = phase is Phase.FLAPPING

    def force(self, fault: Fault, times: int = 1) -> None:
        with self._plan_lock:
            self._forced.extend([fault] * times)

    def settle(self, timeout: float = 150.0) -> None:
        """Wait for every request still running (before the clock jumps, and before counting what
        the CRM holds): the writes planned to run late, and any request whose client gave up because
        the machine was busy, each until it has run. Between two ticks of the clock lie seconds that
        the test skips; in them such a write would have landed, so a retry after the jump must find it
        (AWS waits those seconds: ``AMBIGUOUS_WRITE_SETTLE_SECONDS``). The upstream request has a
        timeout of its own (the forwarder's); ``timeout`` is for a request that hangs for good, and
        fails loudly."""
        for thread in list(self._late_writes):
            thread.join(timeout)
            if thread.is_alive():
                raise AssertionError(f"a write meant to run late is still running after {timeout:.0f} s")
            self._late_writes.remove(thread)
        with self._answered:
            if not self._answered.wait_for(lambda: self._answering == 0, timeout):
                raise AssertionError(f"a request is still being answered after {timeout:.0f} s")

    def answer(self, request: httpx.Request) -> httpx.Response:
        with self._answered:
            self._answering += 1
        try:
            return self._answer_with_fault(request)
        finally:
            with self._answered:
                self._answering -= 1
                self._answered.notify_all()

    def next_fault(self) -> Fault:
        with self._plan_lock:
            if self._forced:
                fault = self._forced.popleft()
            elif self.flapping:
                fault = self._random.choices(list(self.weights), weights=list(self.weights.values()))[0]
            else:
                fault = Fault.NONE
            self.faults[fault] += 1
        return fault

    def _answer_with_fault(self, request: httpx.Request) -> httpx.Response:
        fault = self.next_fault()
        match fault:
            case Fault.SLOW:
                time.sleep(self._slow)
            case Fault.ERROR_500:
                return httpx.Response(500, headers={"Content-Type": "application/json"}, content=b"")
            case Fault.MAINTENANCE_503:
                return httpx.Response(503, headers={"X-Status-Reason": "maintenance mode"}, content=b"")
            case Fault.HANG:
                time.sleep(self._late)
                raise _Drop(reset=False)
            case Fault.RESET:
                raise _Drop(reset=True)
            case Fault.LATE_WRITE:
                self._run_late(request)
                time.sleep(self._late)
                raise _Drop(reset=False)
        response = super().answer(request)
        match fault:
            case Fault.ERROR_500_AFTER_WRITE:
                return httpx.Response(500, headers={"Content-Type": "application/json"}, content=b"")
            case Fault.HANG_AFTER_WRITE:
                time.sleep(self._late)
                raise _Drop(reset=False)
            case Fault.RESET_AFTER_WRITE:
                raise _Drop(reset=True)
        return response

    def _run_late(self, request: httpx.Request) -> None:
        """The request reaches the CRM only after the client stopped waiting (a queue in front of PHP)."""
        run = super().answer

        def late() -> None:
            time.sleep(self._late_write)
            with contextlib.suppress(Exception):
                run(request)

        thread = threading.Thread(target=late, daemon=True)
        self._late_writes.append(thread)
        thread.start()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler_class()
        stub = self

        class FaultyHandler(base):  # type: ignore[misc]
            # One segment per answer: without TCP_NODELAY, delayed ACKs cost 40 ms a request.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with stub._plan_lock:
                    stub._connections.add(self.connection)

            def finish(self) -> None:
                with stub._plan_lock:
                    stub._connections.discard(self.connection)
                super().finish()

            def _serve(self) -> None:
                try:
                    base._serve(self)
                except _Drop as drop:
                    self.close_connection = True
                    if drop.reset:
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return FaultyHandler


class FaultyEspoCrm(FaultInjection, StubEspoCrm):
    """The loopback stub with a fault plan; its simulator indexes leads (thousands cost milliseconds)."""

    sim: IndexedEspoCrm

    def __init__(
        self,
        port: int,
        api_key: str,
        *,
        hmac_secret: str | None = None,
        seed: int = 0,
        client_timeout_seconds: float = 0.1,
    ) -> None:
        super().__init__(port, seed=seed, client_timeout_seconds=client_timeout_seconds, api_key=api_key)
        self.sim = IndexedEspoCrm(base_url=self.base_url, api_key=api_key, hmac_secret=hmac_secret)

    def view(self) -> list[LeadRecord]:
        return self.sim.view()


BITRIX24_FLAPPING: dict[tuple[Failure | None, bool], float] = {
    (None, False): 0.80,
    (Failure.SERVER_ERROR, False): 0.03,
    (Failure.SERVER_ERROR, True): 0.03,
    (Failure.MAINTENANCE, False): 0.02,
    (Failure.TIMEOUT, False): 0.02,
    (Failure.TIMEOUT, True): 0.04,
    (Failure.RATE_LIMITED, False): 0.03,
    (Failure.TIME_LIMITED, False): 0.01,
    (Failure.UNAUTHORIZED, False): 0.02,
}
"""(failure, after the request ran) -> how often, while Bitrix24 flaps; its simulator raises the
transport errors itself, so there is no loopback server here."""


class FlakyBitrix24(SimulatedBitrix24):
    """The Bitrix24 simulator with the same phases as :class:`FaultyEspoCrm`, its faults drawn per
    request from a seeded generator: rate and time limits, 401s, 5xx and timeouts, before and after
    the call ran."""

    def __init__(self, *, token: str, seed: int = 0) -> None:
        # Its rate limits are drawn with the other faults; the leaky bucket would count the run's real
        # seconds, not its simulated ones.
        super().__init__(token=token, rate_per_second=None)
        self.phase = Phase.RECOVERED
        self.faults: dict[str, int] = {}
        self._random = random.Random(seed)  # noqa: S311 - a reproducible fault plan, not a secret

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase

    def settle(self) -> None:
        """Its requests run in process, each before its answer: none is ever late."""

    def _handle(self, request: httpx.Request) -> httpx.Response:
        failure, after = (
            (Failure.CONNECTION_REFUSED, False)
            if self.phase is Phase.DOWN
            else self._random.choices(list(BITRIX24_FLAPPING), weights=list(BITRIX24_FLAPPING.values()))[0]
            if self.phase is Phase.FLAPPING
            else (None, False)
        )
        name = f"{failure}{'_after_write' if after else ''}" if failure else "none"
        self.faults[name] = self.faults.get(name, 0) + 1
        if failure is not None:
            self.fail_next(failure, after_processing=after)
        return super()._handle(request)

    def view(self) -> list[LeadRecord]:
        return [
            LeadRecord(
                phones=[item["VALUE"] for item in lead.get("PHONE") or []],
                session_id=lead.get("UF_CRM_VISITOR_SESSION_ID"),
                description=str(lead.get("COMMENTS") or ""),
                notes=self.timeline(str(lead["ID"])),
            )
            for lead in self.leads()
        ]
