"""What it costs as deployed (issue 22): each function's usage, measured, at AWS list prices.

Each function's process (``lambda_proc.py`` in ``meter`` mode, from the twin of the build, against
moto and the stub CRM on loopback) serves a cold event and then warm ones, and reports for each its
CPU time, its AWS calls (DynamoDB's with their capacity units, from the item's size before and
after), its CRM requests and the bytes it wrote to stdout and stderr (CloudWatch Logs' ingestion).

Billed duration is a model, since this machine is not Lambda: the measured CPU time, stretched by
``1769 / MemorySize`` below 1,769 MB (Lambda gives CPU in proportion to memory, one vCPU at 1,769
MB; this machine's core stands for that vCPU), plus the round trips the calls wait for, at the
in-region latencies of ``LATENCY_MS`` (moto on loopback would measure itself). Overlapping round
trips (applications sends its CRM search beside its idempotency claim) are counted one after the
other: an upper bound. The same model picks each function's ``MemorySize`` (``memory_choice``).

Only this module's measuring part (``measure_usage``) needs the stack; the arithmetic is plain
functions of the usage, tested with known inputs (tests/bench/test_cost.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.prices import EU_CENTRAL_1, Prices
from bench.script import run_script

if TYPE_CHECKING:
    from bench.artifact import Twin
    from bench.cold import ColdCase
    from bench.stack import LoopbackStack

FULL_VCPU_MB = 1769
"""Lambda's memory size with one full vCPU ("Configure Lambda function memory", Lambda developer guide)."""
MEMORY_SIZES = (128, 256, 512, 1024, 1769)
"""The sizes ``memory_choice`` weighs: AWS Lambda Power Tuning's usual ones, and one full vCPU."""
WITHIN_FASTEST = 1.10
"""``memory_choice``: the cheapest size within this multiple of the fastest."""
LATENCY_MS = {"sqs": 10.0, "dynamodb": 5.0, "ssm": 10.0, "secretsmanager": 10.0, "kms": 10.0, "crm": 100.0}
"""Round trips from Lambda, modelled: DynamoDB's single-digit milliseconds and the CRM's 100 ms are
the backlog drain's (docs/performance.md); SQS, SSM and KMS calls a little slower than DynamoDB's."""
PLATFORM_LOG_BYTES = 330
"""Lambda's own lines per invocation in the text log format: START (~60 bytes), END (~50) and
REPORT (~220 with Init Duration), written to the function's log group beside what it prints."""
PLATFORM_LOG_LINES = 3
LOG_EVENT_OVERHEAD_BYTES = 26
"""CloudWatch Logs bills each event's message plus 26 bytes (its pricing page's ingestion example)."""
ESM_CALLS_PER_BATCH = Counter({"sqs ReceiveMessage": 1, "sqs DeleteMessageBatch": 1})
"""The event source mapping's own calls for a batch, as bench/drain.py's pollers make them: the
receive that returned it and the delete of what succeeded. At a few leads a day a batch is one message."""
MIX = {"click": 200, "application": 25}
"""The leads of docs/traffic.md's people: 200 people who clicked through the site (each a lead made
by the worker from the redirect's click) and 25 applicants (an application, written synchronously).
Its floods and probes make no lead and are left out: each request's cost is in the per-operation rows."""
OPERATIONS = {
    "click": ("RedirectFunction", "WorkerFunction"),
    "application": ("ApplicationsFunction",),
}
"""The functions one lead of each kind invokes, in order; each API function is one HTTP API request."""
API_FUNCTIONS = {"RedirectFunction", "MessengerEventsFunction", "ApplicationsFunction", "CrmHealthFunction"}
KEEP_WARM_MINUTES = 5.0
"""Assumption (not documented by AWS; 5-15 minutes are commonly observed): an idle execution
environment is kept this long, so an invocation is cold when the previous one is older."""
ACTIVE_HOURS = 12.0
"""Assumption: leads arrive over the agency's twelve waking hours."""
DAYS_PER_MONTH = 365 / 12


def item_size(item: dict[str, Any]) -> int:
    """A DynamoDB item's size in bytes, by the rules of "Item sizes and formats" (DynamoDB developer
    guide): each attribute's name in UTF-8 plus its value's size."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    match kind:
        case "S":
            size = len(inner.encode())
        case "B":
            size = len(inner)
        case "N":
            size = math.ceil(len(inner.lstrip("-").replace(".", "").strip("0") or "0") / 2) + 1
        case "BOOL" | "NULL":
            size = 1
        case "SS" | "NS" | "BS":
            size = sum(_value_size({kind[0]: element}) for element in inner)
        case "L":
            size = 3 + sum(1 + _value_size(element) for element in inner)
        case "M":
            size = 3 + sum(1 + len(name.encode()) + _value_size(element) for name, element in inner.items())
        case _:
            raise ValueError(f"no size for a DynamoDB {kind}")
    return size


def dynamodb_units(operation: str, size: int, *, consistent: bool) -> dict[str, float]:
    """On-demand request units of one call on an item of ``size`` bytes (the larger of before and
    after, for a write): a read unit per 4 KB read strongly, half of it eventually; a write unit per KB."""
    if operation in ("GetItem",):
        return {"read": max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)}
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return {"write": float(max(1, math.ceil(size / 1024)))}
    raise ValueError(f"no request units for DynamoDB {operation}")


def cpu_scale(memory_mb: int) -> float:
    """How much longer CPU work takes at ``memory_mb`` than with a full vCPU (1 from 1,769 MB up)."""
    return max(1.0, FULL_VCPU_MB / memory_mb)


@dataclass(frozen=True)
class Usage:
    """What one invocation (or, for a cold one, its init and invocation) is billed by."""

    cpu_ms: float
    requests: Mapping[str, float] = field(default_factory=dict)
    """AWS calls as "service Operation", and CRM requests as "crm"."""
    read_units: float = 0.0
    write_units: float = 0.0
    log_bytes: float = 0.0
    log_lines: float = 0.0

    @property
    def wait_ms(self) -> float:
        return sum(LATENCY_MS[key.split()[0]] * count for key, count in self.requests.items())

    def duration_ms(self, memory_mb: int) -> float:
        """Billed duration at ``memory_mb``: CPU stretched below a full vCPU, plus the round trips,
        rounded up to Lambda's millisecond."""
        return math.ceil(self.cpu_ms * cpu_scale(memory_mb) + self.wait_ms)


@dataclass
class FunctionUsage:
    function: str
    memory_mb: int
    cold: Usage
    """Init (Python's start and the handler's import) and the first invocation."""
    warm: Usage
    peak_rss_mb: float


Costs = dict[str, float]
"""US dollars by line: the keys of ``LINES``."""
LINES = {
    "lambda_requests": "Lambda requests",
    "lambda_duration": "Lambda duration (arm64 GB-s)",
    "http_api": "API Gateway HTTP API requests",
    "sqs": "SQS requests",
    "dynamodb_write": "DynamoDB write request units",
    "dynamodb_read": "DynamoDB read request units",
    "kms": "KMS requests + the key's fee",
    "logs": "CloudWatch Logs ingestion",
}


def invocation_cost(usage: Usage, function: str, memory_mb: int, prices: Prices = EU_CENTRAL_1) -> Costs:
    """One invocation of ``function`` at ``memory_mb``: its request, duration and what it calls."""
    sqs = sum(count for key, count in usage.requests.items() if key.startswith("sqs "))
    kms = sum(count for key, count in usage.requests.items() if key.startswith("kms "))
    log_bytes = usage.log_bytes + PLATFORM_LOG_BYTES
    log_events = usage.log_lines + PLATFORM_LOG_LINES
    return {
        "lambda_requests": prices.lambda_request,
        "lambda_duration": memory_mb / 1024 * usage.duration_ms(memory_mb) / 1000 * prices.lambda_gb_second_arm64,
        "http_api": prices.http_api_request if function in API_FUNCTIONS else 0.0,
        "sqs": sqs * prices.sqs_request,
        "dynamodb_write": usage.write_units * prices.dynamodb_write_unit,
        "dynamodb_read": usage.read_units * prices.dynamodb_read_unit,
        "kms": kms * prices.kms_request,
        "logs": (log_bytes + LOG_EVENT_OVERHEAD_BYTES * log_events) / 1e9 * prices.logs_ingested_gb,
    }


def _add(*costs: Costs, times: float = 1.0) -> Costs:
    return {line: times * sum(cost.get(line, 0.0) for cost in costs) for line in LINES}


def cold_fraction(invocations_per_day: float) -> float:
    """The share of invocations that find no warm environment, for arrivals at random (Poisson) over
    ``ACTIVE_HOURS``: the chance that the previous one is older than ``KEEP_WARM_MINUTES``."""
    if invocations_per_day <= 0:
        return 1.0
    return math.exp(-invocations_per_day / (ACTIVE_HOURS * 60) * KEEP_WARM_MINUTES)


def _invocations_per_lead() -> dict[str, float]:
    total = sum(MIX.values())
    counted: dict[str, float] = {}
    for kind, leads in MIX.items():
        for function in OPERATIONS[kind]:
            counted[function] = counted.get(function, 0.0) + leads / total
    return counted


def leads_cost(
    usages: dict[str, FunctionUsage], leads: float, cold: Callable[[float], float], prices: Prices = EU_CENTRAL_1
) -> Costs:
    """``leads`` leads in ``MIX``'s proportions; ``cold`` gives the share of cold invocations from a
    function's invocations in that period. The worker's batches are of one message (an upper bound
    on its requests and the event source mapping's)."""
    total: list[Costs] = []
    for function, per_lead in _invocations_per_lead().items():
        usage = usages[function]
        count = per_lead * leads
        share = cold(count)
        cold_cost = invocation_cost(usage.cold, function, usage.memory_mb, prices)
        warm_cost = invocation_cost(usage.warm, function, usage.memory_mb, prices)
        total.append({line: count * (share * cold_cost[line] + (1 - share) * warm_cost[line]) for line in LINES})
        if function == "WorkerFunction":
            total.append({"sqs": count * ESM_CALLS_PER_BATCH.total() * prices.sqs_request})
    return _add(*total)


def monthly_cost(usages: dict[str, FunctionUsage], leads_per_day: float, prices: Prices = EU_CENTRAL_1) -> Costs:
    """A month at ``leads_per_day``, each function's cold share from its own daily invocations,
    with the recovery key's monthly fee under KMS."""
    costs = leads_cost(usages, leads_per_day * DAYS_PER_MONTH, lambda count: cold_fraction(count / DAYS_PER_MONTH))
    costs["kms"] += prices.kms_key_month
    return costs


@dataclass(frozen=True)
class MemoryOption:
    memory_mb: int
    duration_ms: float
    cost: float
    """Duration and request of one invocation of the judged kind, in US dollars."""
    fits: bool
    """Peak memory below the size."""


def memory_options(usage: FunctionUsage, judged: Usage, prices: Prices = EU_CENTRAL_1) -> list[MemoryOption]:
    options = []
    for memory in MEMORY_SIZES:
        cost = invocation_cost(judged, usage.function, memory, prices)
        options.append(
            MemoryOption(
                memory,
                judged.duration_ms(memory),
                cost["lambda_requests"] + cost["lambda_duration"],
                usage.peak_rss_mb < memory,
            )
        )
    return options


def memory_choice(options: Iterable[MemoryOption]) -> MemoryOption:
    """AWS Lambda Power Tuning's question: the cheapest size within ``WITHIN_FASTEST`` of the fastest
    (of the sizes the function fits in); the faster of two as cheap."""
    fitting = [option for option in options if option.fits]
    fastest = min(option.duration_ms for option in fitting)
    near = [option for option in fitting if option.duration_ms <= WITHIN_FASTEST * fastest]
    return min(near, key=lambda option: (option.cost, option.duration_ms))


def judged_usage(usage: FunctionUsage) -> Usage:
    """What a size is judged by: for a function behind the API, its cold start (init and first
    invocation), which someone waits for and which at a few leads a day nearly every request is; for
    the worker, a warm invocation (nobody waits for it; a backlog, when its speed matters, drains warm)."""
    return usage.cold if usage.function in API_FUNCTIONS else usage.warm


# --- Measuring ---------------------------------------------------------------------------------------


def mean_usage(invocations: list[dict[str, Any]]) -> Usage:
    """The mean usage of these invocations (a cost is a sum), CPU time their median (a collection in
    one of few runs would skew a mean)."""
    requests: Counter[str] = Counter()
    read = write = log_bytes = log_lines = 0.0
    for invocation in invocations:
        for call in invocation["calls"]:
            requests["crm" if call["kind"] == "http" else f"{call['service']} {call['operation']}"] += 1
            read += call.get("units", {}).get("read", 0.0)
            write += call.get("units", {}).get("write", 0.0)
        log_bytes += invocation["log_bytes"]
        log_lines += invocation["log_lines"]
    count = len(invocations)
    return Usage(
        cpu_ms=statistics.median(invocation["cpu_ms"] for invocation in invocations),
        requests={key: value / count for key, value in requests.items()},
        read_units=read / count,
        write_units=write / count,
        log_bytes=log_bytes / count,
        log_lines=log_lines / count,
    )


def measure_usage(
    twin: Twin,
    stack: LoopbackStack,
    cases: tuple[ColdCase, ...],
    processes: int,
    warm_invocations: int,
    progress: Callable[[str], None],
) -> list[FunctionUsage]:
    """Each function in ``processes`` fresh processes, each serving a cold event and then
    ``warm_invocations`` warm ones, and as many untraced cold starts (``ColdStarts.run``) for the
    CPU time of a cold one."""
    from bench.cold import LAMBDA_PROC, ColdStarts

    cold_starts = ColdStarts(twin, stack)
    scratch = Path(tempfile.mkdtemp(prefix="crm-bridge-cost-"))
    usages = []
    for case in cases:
        progress(f"cost: {case.label}, {processes} processes of 1 cold + {warm_invocations} warm invocations")
        reports, cold_cpu = [], []
        for _ in range(processes):
            times, _ = cold_starts.run(cold_starts.spec(case, "function") | {"event": case.event(stack)})
            cold_cpu.append(times.cpu)
            spec_path = scratch / f"{uuid.uuid4().hex}.json"
            spec = cold_starts.spec(case, "meter") | {
                "events": [case.event(stack) for _ in range(1 + warm_invocations)],
                "table_keys": stack.table_keys,
                "result_path": str(spec_path.with_suffix(".out")),
            }
            run_script(LAMBDA_PROC, spec, spec_path, what=f"cost {case.label}")
            reports.append(json.loads(spec_path.with_suffix(".out").read_text()))
        # A cold invocation is billed for its init too (since August 2025, for every on-demand
        # function): its CPU time is the untraced process's, from its start to its answer.
        cold = dataclasses.replace(
            mean_usage(
                [
                    first | {"log_bytes": report["init_log_bytes"] + first["log_bytes"]}
                    for report in reports
                    for first in report["invocations"][:1]
                ]
            ),
            cpu_ms=statistics.median(cold_cpu),
        )
        warm = mean_usage([invocation for report in reports for invocation in report["invocations"][1:]])
        usages.append(
            FunctionUsage(
                case.function,
                stack.functions[case.function].memory_mb,
                cold,
                warm,
                max(report["peak_rss_kb"] for report in reports) / 1024,
            )
        )
    return usages
