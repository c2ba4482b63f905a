"""In-memory AWS clients (and an EspoCRM transport) for benchmark processes that must not time the network.

They replace the network at its lowest level, the client objects, so everything above them runs as
deployed: Powertools' DynamoDB persistence layer, the visitor-session store, the operation queue.
:func:`install` makes ``boto3`` hand them out (``boto3.client("dynamodb")`` and Powertools' own
``Session().client("dynamodb")`` alike); it must run before the handler is imported, as handlers
make their clients at import. Each fake can wait a fixed latency per call (a model of DynamoDB's
in-region latency for the backlog drain) and adds the time spent inside it to a :class:`Meter`
(taken off the handler's time in the warm benchmark).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any


class Meter:
    """Nanoseconds spent inside the fakes, on ``clock`` (wall time by default), from any thread (the
    applications handler writes the visitor session on a background thread). With ``intervals``,
    each call's (start, end) on that clock is kept too, to tell overlapping calls apart."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns, *, intervals: bool = False) -> None:
        self.nanoseconds = 0
        self.clock = clock
        self.intervals: list[tuple[int, int]] = []
        self._keep_intervals = intervals
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            ended = self.clock()
            with self._lock:
                self.nanoseconds += ended - started
                if self._keep_intervals:
                    self.intervals.append((started, ended))


class _Fake:
    def __init__(self, meter: Meter | None = None, latency_seconds: float = 0.0) -> None:
        self.meter = meter or Meter()
        self.latency_seconds = latency_seconds
        self.calls = 0

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self.meter.measure():
            self.calls += 1
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            yield


class FakeSqs(_Fake):
    def send_message(self, **request: Any) -> dict[str, Any]:
        with self._call():
            return {"MessageId": str(uuid.uuid4())}

    def change_message_visibility(self, **request: Any) -> dict[str, Any]:
        with self._call():
            return {}


class FakeDynamoDb(_Fake):
    """Items by key. Benchmarks use a fresh key for each operation, so conditions never fail; a write
    that would have failed one is counted in ``conflicts`` (and should stay at zero)."""

    def __init__(self, meter: Meter | None = None, latency_seconds: float = 0.0) -> None:
        super().__init__(meter, latency_seconds)
        self.items: dict[str, dict[str, Any]] = {}
        self.conflicts = 0

    @staticmethod
    def _key(key: dict[str, Any]) -> str:
        return json.dumps(key, sort_keys=True)

    def get_item(self, **request: Any) -> dict[str, Any]:
        with self._call():
            item = self.items.get(self._key(request["Key"]))
            return {"Item": item} if item is not None else {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        with self._call():
            item = request["Item"]
            key = self._key({name: item[name] for name in ("id", "pk") if name in item})
            if key in self.items and "ConditionExpression" in request:
                self.conflicts += 1
            self.items[key] = item
            return {}

    def update_item(self, **request: Any) -> dict[str, Any]:
        """Writes the key; of the update expressions, only the visitor-session store's ``ADD`` of a
        string set (its hourly click count) is applied, which it reads back."""
        with self._call():
            item = self.items.setdefault(self._key(request["Key"]), dict(request["Key"]))
            added = (request.get("ExpressionAttributeValues") or {}).get(":click", {}).get("SS")
            if added is not None and request["UpdateExpression"].startswith("ADD clicks"):
                item["clicks"] = {"SS": sorted({*item.get("clicks", {}).get("SS", []), *added})}
            return {"Attributes": item} if request.get("ReturnValues") == "ALL_NEW" else {}

    def delete_item(self, **request: Any) -> dict[str, Any]:
        with self._call():
            self.items.pop(self._key(request["Key"]), None)
            return {}


def install(fakes: dict[str, Any]) -> None:
    """From now on, boto3 clients of these services (``{"dynamodb": FakeDynamoDb()}``) are the fakes."""
    import boto3.session

    real_client: Any = boto3.session.Session.client

    def client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        if service_name in fakes:
            return fakes[service_name]
        return real_client(session, service_name, *args, **kwargs)

    boto3.session.Session.client = client  # type: ignore[assignment]
    boto3.DEFAULT_SESSION = None


def espocrm_transport(meter: Meter) -> Any:
    """An httpx transport that answers as EspoCRM: searches find nothing, writes echo what was sent
    with a new id (so the provider sees every attribute stored)."""
    import httpx

    class FakeEspoCrm(httpx.BaseTransport):
        def __init__(self) -> None:
            self.requests = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            with meter.measure():
                self.requests += 1
                path = request.url.path.rsplit("/api/v1/", 1)[-1]
                if request.method == "GET" and path == "Lead":
                    return httpx.Response(200, json={"total": 0, "list": []})
                if request.method in ("POST", "PUT"):
                    sent = json.loads(request.content or b"{}")
                    return httpx.Response(200, json={**sent, "id": uuid.uuid4().hex[:17]})
                return httpx.Response(200, json={"id": path.rsplit("/", 1)[-1]})

    return FakeEspoCrm()
