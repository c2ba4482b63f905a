"""Cold starts: a fresh Python process per measurement, against moto and the stub CRM on loopback.

Each function's process imports its handler from the twin of the built artifact and serves one
genuine event (API Gateway HTTP API v2, or an SQS batch of one); its floor is a process that does
only what that function irreducibly does, with the same libraries: the same AWS and CRM calls,
replayed from a traced run of the function (for the redirect: import boto3, make the SQS client,
send one message). Function and floor alternate within each round, so the ratio of a round compares
two processes that ran seconds apart on the same machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.artifact import Twin, bytecode_files
from bench.stack import LoopbackStack
from bench.stats import Spread
from crm_bridge.delivery.queue import operation_attributes
from crm_bridge.models import Channel, MessengerActivity, MessengerClickOperation, Origin, dump_operation
from infra.local.http_events import http_api_event
from infra.local.poller import sqs_record

ROOT = Path(__file__).parents[1]
LAMBDA_PROC = Path(__file__).with_name("lambda_proc.py")
PROCESS_TIMEOUT_SECONDS = 60.0
SITE = "https://www.agency.example"
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
"""A person's click: the redirect's crawler check ends at its cheap browser test (crm_bridge.api.crawlers)."""


def _json_request(path: str, route_key: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return http_api_event(
        "POST",
        path,
        route_key=route_key,
        headers={"content-type": "application/json", "origin": SITE, **headers},
        body=json.dumps(body),
    )


def _session() -> str:
    return f"bench-{uuid.uuid4().hex[:16]}"


def _phone() -> str:
    return f"+90 532 {random.randint(100, 999)} {random.randint(10, 99)} {random.randint(10, 99)}"  # noqa: S311


def redirect_event(stack: LoopbackStack) -> dict[str, Any]:
    return http_api_event(
        "GET",
        "/go/telegram",
        route_key="GET /go/{channel}",
        path_parameters={"channel": "telegram"},
        query="ref=PARTNER-42&utm_source=instagram&utm_medium=bio",
        headers={"referer": f"{SITE}/programs?from=menu", "user-agent": BROWSER_USER_AGENT},
    )


def messenger_event(stack: LoopbackStack) -> dict[str, Any]:
    body = {
        "channel": "whatsapp",
        "session_id": _session(),
        "page": "/programs/medicine",
        "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram"},
    }
    return _json_request("/api/v1/messenger-events", "POST /api/v1/messenger-events", body)


def application_event(stack: LoopbackStack) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    body = {
        # A name of its own: one EspoCRM already has adds its duplicate check's 409 and a second create.
        "name": f"Ayşe {tag.translate(str.maketrans('0123456789', 'ghijklmnop')).capitalize()}",
        "phone": _phone(),
        "email": f"ayse.{tag}@example.com",
        "user_type": "student",
        "program": "Medicine",
        "consent": True,
        "session_id": _session(),
        "attribution": {"referral_code": "PARTNER-42", "utm_source": "instagram", "utm_campaign": "spring"},
    }
    headers = {"idempotency-key": f"bench-{tag}"}
    return _json_request("/api/v1/applications", "POST /api/v1/applications", body, **headers)


def health_event(stack: LoopbackStack) -> dict[str, Any]:
    return http_api_event("GET", "/api/v1/crm/test", route_key="GET /api/v1/crm/test")


def click_operation() -> MessengerClickOperation:
    activity = MessengerActivity(channel=Channel.INSTAGRAM, session_id=_session(), page="/go/instagram")
    return MessengerClickOperation(origin=Origin.REDIRECT, correlation_id="bench", payload=activity)


def sqs_event(stack: LoopbackStack, operations: list[MessengerClickOperation] | None = None) -> dict[str, Any]:
    """An SQS batch as Lambda's event source mapping delivers it (first receive of each message)."""
    queue = stack.queue("OperationsQueue")
    records = []
    for operation in operations or [click_operation()]:
        message = {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": f"bench-{uuid.uuid4().hex}",
            "Body": dump_operation(operation),
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
            "MessageAttributes": operation_attributes(operation),
        }
        records.append(sqs_record(message, queue.arn, "eu-central-1"))
    return {"Records": records}


@dataclass(frozen=True)
class ColdCase:
    function: str
    label: str
    event: Callable[[LoopbackStack], dict[str, Any]]
    expected_status: int | None


CASES = (
    ColdCase("RedirectFunction", "redirect", redirect_event, 302),
    ColdCase("MessengerEventsFunction", "messenger", messenger_event, 202),
    ColdCase("ApplicationsFunction", "applications", application_event, 201),
    ColdCase("CrmHealthFunction", "health", health_event, 200),
    ColdCase("WorkerFunction", "worker", sqs_event, None),
)


@dataclass(frozen=True)
class ProcessTimes:
    """One process, on the monotonic clock, in milliseconds from just before it was spawned."""

    startup: float
    init: float
    invoke: float
    cpu: float
    """CPU time of the whole process (user + system): how much of the cold start is computing."""
    modules: int

    @property
    def total(self) -> float:
        return self.startup + self.init + self.invoke


@dataclass
class ColdResult:
    case: ColdCase
    calls: list[dict[str, Any]]
    function: list[ProcessTimes] = field(default_factory=list)
    floor: list[ProcessTimes] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [f.total / b.total for f, b in zip(self.function, self.floor, strict=True)]

    def spread(self, which: str, part: str = "total") -> Spread:
        runs = self.function if which == "function" else self.floor
        return Spread.of([getattr(run, part) for run in runs])


class ColdStarts:
    """Spawns the processes; one instance per benchmark run (shares the stack and a scratch dir)."""

    def __init__(self, twin: Twin, stack: LoopbackStack) -> None:
        self.twin = twin
        self.stack = stack
        self._scratch = Path(tempfile.mkdtemp(prefix="crm-bridge-bench-"))

    def spec(self, case: ColdCase, mode: str) -> dict[str, Any]:
        spec = self.stack.functions[case.function]
        task = self.twin.task(case.function)
        return {
            "mode": mode,
            "sys_path": self.twin.sys_path(case.function),
            "extra_path": [str(ROOT)],  # infra.local.http_events, for the Lambda context object
            "environ": self.stack.environment(case.function, task),
            "handler": spec.handler,
            "function_name": case.function,
            "timeout_seconds": spec.timeout_seconds,
            "memory": spec.memory_mb,
            "expected_status": case.expected_status,
        }

    def run(self, spec: dict[str, Any], cgroup: Path | None = None) -> tuple[ProcessTimes, dict[str, Any]]:
        """One process from spawn to served, in ``cgroup`` if given (its ``tasks`` file: the CPU
        share of ``bench.cpu_quota``); raises naming what went wrong in it."""
        spec_path = self._scratch / f"{uuid.uuid4().hex}.json"
        result_path = spec_path.with_suffix(".out")
        errors_path = spec_path.with_suffix(".err")
        read_end, write_end = os.pipe()
        spec_path.write_text(json.dumps(spec | {"signal_fd": write_end, "result_path": str(result_path)}))
        with errors_path.open("wb") as errors:
            spawned = time.monotonic_ns()
            process = subprocess.Popen(  # noqa: S603 - this interpreter, the bench's own script
                [sys.executable, "-I", "-S", "-B", str(LAMBDA_PROC), str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                pass_fds=(write_end,),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
                preexec_fn=None if cgroup is None else lambda: (cgroup / "tasks").write_text(str(os.getpid())),  # noqa: PLW1509 - no threads spawn processes here
            )
            os.close(write_end)
            try:
                os.read(read_end, 1)
            finally:
                os.close(read_end)
            _, status, usage = os.wait4(process.pid, 0)  # the process's own CPU time, beside the wall time
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0 or not result_path.is_file():
            tail = errors_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{spec['mode']} of {spec['handler']} failed (exit {process.returncode}):\n{tail}")
        report: dict[str, Any] = json.loads(result_path.read_text())
        if report["problem"]:
            raise RuntimeError(f"{spec['handler']}: {report['problem']}")

        def ms(start: int, end: int) -> float:
            return (end - start) / 1e6

        times = ProcessTimes(
            startup=ms(spawned, report["booted"]),
            init=ms(report["booted"], report["initialized"]),
            invoke=ms(report["initialized"], report["served"]),
            cpu=(usage.ru_utime + usage.ru_stime) * 1000,
            modules=report["modules"],
        )
        return times, report

    def trace(self, case: ColdCase) -> list[dict[str, Any]]:
        """The AWS and CRM calls one cold invocation makes (what the floor replays)."""
        _, report = self.run(self.spec(case, "trace") | {"event": case.event(self.stack)})
        calls: list[dict[str, Any]] = report["calls"]
        for call in calls:
            if call["kind"] == "http" and call["method"] == "POST":
                # Replayed bodies repeat a name and phone: EspoCRM would answer 409 (duplicate) instead.
                call["headers"] = call["headers"] | {"x-skip-duplicate-check": "true"}
        return calls

    def measure(self, cases: tuple[ColdCase, ...], rounds: int, progress: Callable[[str], None]) -> list[ColdResult]:
        before = bytecode_files(self.twin.root)
        results = [ColdResult(case, self.trace(case)) for case in cases]
        for round_number in range(rounds):
            progress(f"cold starts: round {round_number + 1}/{rounds}")
            ordered = results if round_number % 2 == 0 else list(reversed(results))
            for result in ordered:
                function_spec = self.spec(result.case, "function")
                floor_spec = self.spec(result.case, "floor") | {
                    "ops": result.calls,
                    "table_keys": self.stack.table_keys,
                }
                pair = [("function", function_spec), ("floor", floor_spec)]
                for which, spec in pair if round_number % 2 == 0 else reversed(pair):
                    if which == "function":
                        times, _ = self.run(spec | {"event": result.case.event(self.stack)})
                        result.function.append(times)
                    else:
                        times, _ = self.run(spec)
                        result.floor.append(times)
        if bytecode_files(self.twin.root) != before:
            raise RuntimeError("a cold-start process wrote bytecode into the artifact: not what Lambda allows")
        return results
