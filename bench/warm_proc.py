"""Warm invocations of one handler from the twin, with in-memory AWS and CRM: only our code is timed.

Started as a script, like ``lambda_proc.py`` (``python -I -S -B warm_proc.py SPEC``), so the handler
and its libraries come from the built artifact. The network is replaced at its lowest level, the
clients: an SQS and a DynamoDB client that keep messages and items in dicts (Powertools' DynamoDB
persistence layer and the visitor-session store run unchanged on top of them), and an httpx
transport that answers as EspoCRM does. The time spent inside those fakes is measured and taken off
each invocation, so what is left is the handler's own time: event parsing and validation, the
models, the provider's request building and answer parsing, idempotency, logging and metrics. Time
is CPU time, which another process's preemption does not add to: the process's for the invocation
(``time.process_time_ns``: the applications handler does part of its work on a background thread,
the lead search and the visitor session, and that is its time too), each thread's own for the time
spent inside the fakes (``time.thread_time_ns``), so that one thread's fake call does not take
another thread's work off.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _install_fakes(function: str, module: Any, transport: Any) -> None:
    """Point the handler's CRM provider at the fake EspoCRM (AWS clients are fakes since install())."""
    from crm_bridge.field_mapping import load_field_mapping
    from crm_bridge.providers import build_provider
    from crm_bridge.settings import get_settings

    if function not in ("ApplicationsFunction", "CrmHealthFunction", "WorkerFunction"):
        return
    crm = build_provider(get_settings(), load_field_mapping(None), transport=transport)
    if function == "ApplicationsFunction":
        module.get_provider = lambda: crm
    elif function == "CrmHealthFunction":
        from crm_bridge.api import health

        health.get_provider = lambda: crm  # type: ignore[attr-defined,assignment]
    else:
        import crm_bridge.worker

        crm_bridge.worker.get_provider = lambda: crm  # type: ignore[attr-defined,assignment]


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    os.environ.clear()
    os.environ.update(spec["environ"])
    sys.path[:0] = spec["sys_path"]
    sys.path.extend(spec["extra_path"])
    import gc

    from bench.fake_aws import FakeDynamoDb, FakeSqs, Meter, espocrm_transport, install
    from infra.local.http_events import LambdaContext

    # CPU time, not wall time: on a shared machine another process may take the CPU in the middle of
    # an invocation, and that is not the handler's time (its garbage collections are). The process's
    # (every thread of the handler) for the invocation, each thread's own inside the fakes.
    clock = time.process_time_ns
    meter = Meter(time.thread_time_ns)
    install({"sqs": FakeSqs(meter), "dynamodb": FakeDynamoDb(meter)})
    transport = espocrm_transport(meter)
    module_name, _, handler_name = spec["handler"].rpartition(".")
    module = __import__(module_name)
    _install_fakes(spec["function"], module, transport)
    handler = getattr(module, handler_name)
    # Kept as JSON text until used: a str is not tracked by the garbage collector, so thousands of
    # prepared events do not lengthen the handler's collections as a heap of dicts would.
    events = [json.dumps(event) for event in spec.pop("events")]
    expected = spec["expected_status"]
    own: list[float] = []
    for index in range(spec["warmup"] + spec["invocations"]):
        event = json.loads(events[index % len(events)])
        context = LambdaContext(spec["function"], spec["timeout_seconds"])
        faked = meter.nanoseconds
        started = clock()
        result = handler(event, context)
        elapsed = clock() - started - (meter.nanoseconds - faked)
        status = result.get("statusCode") if expected is not None else None
        if expected is not None and status != expected:
            raise RuntimeError(f"{spec['handler']}: status {status}, expected {expected}: {result}")
        if expected is None and result.get("batchItemFailures"):
            raise RuntimeError(f"{spec['handler']}: batch item failures {result}")
        if index >= spec["warmup"]:
            own.append(elapsed / 1e6)
    gc.collect()
    with open(spec["result_path"], "w", encoding="utf-8") as file:
        json.dump({"own_ms": own, "crm_requests": transport.requests}, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
