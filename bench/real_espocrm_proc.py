"""The applications handler against a real EspoCRM, interleaved with its floor, in one warm process.

Started as a script, like ``warm_proc.py`` (``python -I -S -B real_espocrm_proc.py SPEC``), so the
handler and its libraries come from the built artifact. The handler runs as deployed, its CRM
provider built from its environment (``ESPOCRM_URL`` is the local EspoCRM, the API key given
directly as a cached SSM read would give it); boto3's DynamoDB and SQS clients are the in-memory
fakes of ``bench.fake_aws``, each call waiting DynamoDB's in-region latency as in the backlog drain.

Each iteration is one new applicant for the handler and another for the floor: the floor is the two
requests the provider sends for a new applicant (the search by phone or e-mail, the create), written
out by ``bench/real_espocrm.py`` and sent back to back by a bare ``httpx.Client``. The two alternate,
their order flipping every iteration, so that drift on the machine or in the CRM affects both.

Times are wall time (``time.perf_counter_ns``): the CRM's answer is most of both. What the handler
spends where is measured alongside, as intervals: inside the AWS fakes, in ``httpx.Client.send`` (the
CRM requests as the client sees them, body read included), in the provider's ``upsert_lead`` and in
body validation. The handler overlaps some of them (the lead search with the idempotency claim, the
visitor session with the idempotency answer: ``crm_bridge/delivery/overlap.py``), so the invocation's
wall time is split along its critical path (:func:`critical_path`): each instant goes to the first of
CRM request, DynamoDB call, provider, validation that is under way then, and to the handler if none
is. The parts add up to the path; DynamoDB's is the time it was *waited for*, and the calls' own total
is reported beside it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

NS_PER_MS = 1e6


class Sends:
    """Every ``httpx.Client.send`` of the process: its wall time and what it sent."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def install(self) -> None:
        import httpx

        send = httpx.Client.send
        records = self.records

        def timed_send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            started = time.perf_counter_ns()
            response = send(client, request, **kwargs)
            ended = time.perf_counter_ns()
            records.append(
                {
                    "ns": ended - started,
                    "interval": (started, ended),
                    "method": request.method,
                    "path": request.url.path,
                    "query": dict(request.url.params),
                    "headers": sorted(name.lower() for name in request.headers if name.lower().startswith("x-")),
                    "body": request.content.decode(),
                    "status": response.status_code,
                }
            )
            return response

        httpx.Client.send = timed_send  # type: ignore[assignment]

    def take(self) -> list[dict[str, Any]]:
        taken = list(self.records)
        self.records.clear()
        return taken


Interval = tuple[int, int]


def _timed(function: Callable[..., Any], spent: list[Interval]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append((started, time.perf_counter_ns()))

    return wrapper


def critical_path(start: int, end: int, layers: list[tuple[str, list[Interval]]], rest: str) -> dict[str, int]:
    """Split ``[start, end]`` among ``layers`` in their order of precedence: each instant goes to the
    first layer with an interval covering it, or to ``rest``. The shares add up to ``end - start``."""
    clipped = [
        (name, [(max(a, start), min(b, end)) for a, b in spans if a < end and b > start]) for name, spans in layers
    ]
    points = sorted({start, end, *(t for _, spans in clipped for span in spans for t in span)})
    shares = dict.fromkeys([*(name for name, _ in layers), rest], 0)
    for left, right in itertools.pairwise(points):
        owner = next((name for name, spans in clipped if any(a <= left and right <= b for a, b in spans)), rest)
        shares[owner] += right - left
    return shares


def _counted(fake: Any, operations: Counter[str]) -> None:
    """Count each DynamoDB/SQS call of a fake by its API operation name (``dynamodb PutItem``)."""
    service = "dynamodb" if hasattr(fake, "put_item") else "sqs"
    for name in ("get_item", "put_item", "update_item", "delete_item", "send_message", "change_message_visibility"):
        method = getattr(fake, name, None)
        if method is None:
            continue
        operation = f"{service} {''.join(part.title() for part in name.split('_'))}"

        def counted(*args: Any, _method: Any = method, _operation: str = operation, **kwargs: Any) -> Any:
            operations[_operation] += 1
            return _method(*args, **kwargs)

        setattr(fake, name, counted)


class Floor:
    """The two requests of a new applicant, back to back, from a bare client."""

    def __init__(self, base: str, api_key: str, sends: Sends) -> None:
        import httpx

        self.base = base
        self.client = httpx.Client(timeout=10.0)
        self.headers = {"X-Api-Key": api_key}
        self.sends = sends

    def __call__(self, floor: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter_ns()
        found = self.client.get(f"{self.base}/Lead", params=floor["params"], headers=self.headers)
        searched = time.perf_counter_ns()
        created = self.client.post(f"{self.base}/Lead", json=floor["body"], headers=self.headers)
        finished = time.perf_counter_ns()
        if found.status_code != 200 or found.json().get("list"):
            raise RuntimeError(f"floor search: {found.status_code} {found.text[:300]}")
        if created.status_code != 200 or "id" not in created.json():
            raise RuntimeError(f"floor create: {created.status_code} {created.text[:300]}")
        return {
            "ms": (finished - started) / NS_PER_MS,
            "search_ms": (searched - started) / NS_PER_MS,
            "create_ms": (finished - searched) / NS_PER_MS,
            "requests": self.sends.take(),
        }


class Handler:
    """The warm handler: one invocation per new applicant, timed, and split into its parts."""

    def __init__(self, spec: dict[str, Any], sends: Sends) -> None:
        from bench.fake_aws import FakeDynamoDb, FakeSqs, Meter, install

        self.spec = spec
        self.sends = sends
        latency = spec["aws_latency_ms"] / 1000
        self.meter = Meter(intervals=True)  # wall time: the modelled latency is what the applicant waits for
        dynamodb, sqs = FakeDynamoDb(self.meter, latency), FakeSqs(self.meter, latency)
        self.aws_operations: Counter[str] = Counter()
        _counted(dynamodb, self.aws_operations)
        _counted(sqs, self.aws_operations)
        install({"dynamodb": dynamodb, "sqs": sqs})  # before the handler's import: it makes its clients then

        module_name, _, handler_name = spec["handler"].rpartition(".")
        module: Any = __import__(module_name)
        self.handler = getattr(module, handler_name)
        self.validation_ns: list[Interval] = []
        module.validated_body = _timed(module.validated_body, self.validation_ns)
        provider = module.get_provider()  # the container's provider, from the environment, as deployed
        self.provider_ns: list[Interval] = []
        provider.upsert_lead = _timed(provider.upsert_lead, self.provider_ns)

    def __call__(self, event_text: str) -> dict[str, Any]:
        from infra.local.http_events import LambdaContext

        event = json.loads(event_text)
        spec = self.spec
        context = LambdaContext(spec["function"], spec["timeout_seconds"], memory_limit_in_mb=spec["memory"])
        self.validation_ns.clear()
        self.provider_ns.clear()
        self.aws_operations.clear()
        self.meter.intervals.clear()
        aws_before = self.meter.nanoseconds
        started = time.perf_counter_ns()
        result = self.handler(event, context)
        finished = time.perf_counter_ns()
        aws_calls = self.meter.nanoseconds - aws_before
        requests = self.sends.take()
        body = json.loads(result.get("body") or "{}")
        if result.get("statusCode") != 201 or body.get("status") != "received":
            raise RuntimeError(f"the handler did not deliver the application: {result}")
        layers = [
            ("crm", [(request["interval"][0], request.pop("interval")[1]) for request in requests]),
            ("aws", list(self.meter.intervals)),
            ("provider", list(self.provider_ns)),
            ("validation", list(self.validation_ns)),
        ]
        shares = critical_path(started, finished, layers, "handler")
        return {
            "ms": (finished - started) / NS_PER_MS,
            "parts": {name: ns / NS_PER_MS for name, ns in shares.items()} | {"aws_calls": aws_calls / NS_PER_MS},
            "aws_operations": dict(self.aws_operations),
            "requests": requests,
        }


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    os.environ.clear()
    os.environ.update(spec["environ"])
    sys.path[:0] = spec["sys_path"]
    sys.path.extend(spec["extra_path"])
    sends = Sends()
    sends.install()
    path = Handler(spec, sends)
    floor = Floor(spec["crm_base"], spec["crm_api_key"], sends)
    measured: dict[str, list[dict[str, Any]]] = {"path": [], "floor": []}
    for index, item in enumerate(spec["iterations"]):
        for side in ("path", "floor") if index % 2 == 0 else ("floor", "path"):
            one = path(item["event"]) if side == "path" else floor(item["floor"])
            if index < spec["warmup"]:
                continue
            if measured[side]:  # each request's details once: the parent compares the floor's with the path's
                one["requests"] = [{key: r[key] for key in ("ns", "method", "status")} for r in one["requests"]]
            measured[side].append(one)
    floor.client.close()
    with open(spec["result_path"], "w", encoding="utf-8") as file:
        json.dump(measured, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
