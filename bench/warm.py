"""Warm overhead: p50/p99 of each handler's own time over many invocations (``warm_proc.py``)."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.artifact import Twin
from bench.cold import CASES, ColdCase, click_operation, sqs_event
from bench.script import run_script
from bench.stack import LoopbackStack
from bench.stats import Spread, percentile

ROOT = Path(__file__).parents[1]
WARM_PROC = Path(__file__).with_name("warm_proc.py")
WORKER_BATCH = 5
"""The template's BatchSize: a worker invocation is a batch of this many operations."""
TARGETS_MS = {"RedirectFunction": 2.0, "ApplicationsFunction": 5.0}
"""Issue 7: warm p99 under 2 ms for the redirect and under 5 ms for applications."""


@dataclass
class WarmResult:
    case: ColdCase
    invocations: int
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    @property
    def target_ms(self) -> float | None:
        return TARGETS_MS.get(self.case.function)


def _events(case: ColdCase, stack: LoopbackStack, count: int) -> list[dict[str, Any]]:
    if case.function == "WorkerFunction":
        return [sqs_event(stack, [click_operation() for _ in range(WORKER_BATCH)]) for _ in range(count)]
    return [case.event(stack) for _ in range(count)]


def _environment(stack: LoopbackStack, case: ColdCase, twin: Twin) -> dict[str, str]:
    """The function's Lambda environment, with the CRM key given directly (no SSM read) and every AWS
    endpoint pointed at a closed port: a call that escaped the fakes would fail, not be timed."""
    environment = stack.environment(case.function, twin.task(case.function))
    if "CRM_PROVIDER" in environment:
        environment.pop("ESPOCRM_API_KEY_PARAM", None)
        environment |= {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": "https://crm.bench.invalid"}
        environment["ESPOCRM_API_KEY"] = "bench-warm-key-0001"
    return environment | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}


def measure_warm(
    twin: Twin,
    stack: LoopbackStack,
    invocations: dict[str, int],
    runs: int,
    progress: Callable[[str], None],
    cases: tuple[ColdCase, ...] = CASES,
) -> list[WarmResult]:
    scratch = Path(tempfile.mkdtemp(prefix="crm-bridge-warm-"))
    results = []
    for case in cases:
        count = invocations[case.function]
        warmup = max(5, count // 20)
        result = WarmResult(case, count)
        for run in range(runs):
            progress(f"warm: {case.label} run {run + 1}/{runs} ({count} invocations)")
            spec_path = scratch / f"{uuid.uuid4().hex}.json"
            result_path = spec_path.with_suffix(".out")
            spec = {
                "function": case.function,
                "handler": stack.functions[case.function].handler,
                "timeout_seconds": stack.functions[case.function].timeout_seconds,
                "environ": _environment(stack, case, twin),
                "sys_path": twin.sys_path(case.function),
                "extra_path": [str(ROOT)],
                "events": _events(case, stack, count + warmup),
                "expected_status": case.expected_status,
                "warmup": warmup,
                "invocations": count,
                "result_path": str(result_path),
            }
            run_script(WARM_PROC, spec, spec_path, what=f"warm {case.label}")
            own = sorted(json.loads(result_path.read_text())["own_ms"])
            result.p50.append(percentile(own, 0.50))
            result.p99.append(percentile(own, 0.99))
            spec_path.unlink()
        results.append(result)
    return results


def spread(values: list[float]) -> Spread:
    return Spread.of(values)
