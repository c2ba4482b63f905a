"""Backlog drain: queued operations through the worker, as Lambda's event source mapping feeds it.

The operations wait on the template's queue in moto (its redrive policy to the dead-letter queue
and all); pollers feed them to the worker in batches of the template's ``BatchSize``, with partial
batch failures, as many as the template's ``MaximumConcurrency``, each with a worker process of its
own (one Lambda container each). The worker is the built artifact's; it reaches moto for SQS and SSM,
DynamoDB in memory behind a fixed latency (``DYNAMODB_LATENCY_MS``), and the stub CRM, which answers
every request after a fixed latency.

The floor of a drain is the CRM's: ``requests x latency / concurrency``. Against a Bitrix24-like
portal the floor is its rate limit instead, as issue 13 defines it: the requests needed (what the
operations cost without limit errors, :func:`bench.requests.requests_per_operation` each) at
2 requests/s. The worker paces itself (``BITRIX24_REQUESTS_PER_SECOND`` from the template, per
container), and the point is that a limit error, if any, is retried later: none reaches the
dead-letter queue.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.artifact import Twin
from bench.cold import LAMBDA_PROC, click_operation
from bench.requests import FIRST_CLICK, requests_per_operation
from bench.stack import LoopbackStack, StubCrm
from crm_bridge.delivery.queue import operation_attributes
from crm_bridge.models import dump_operation
from infra.local.functions import Invocation
from infra.local.poller import BatchOutcome, sqs_record
from infra.local.template import QueueSource
from tests.simulators.bitrix24 import LeakyBucket

ROOT = Path(__file__).parents[1]
WORKER = "WorkerFunction"
BITRIX_RATE_PER_SECOND = 2.0
BITRIX_BURST = 50
DYNAMODB_LATENCY_MS = 5.0
"""DynamoDB ("single-digit millisecond" in-region) modelled in the worker: moto on this 2-core machine,
sharing its CPUs with the workers, takes several times longer and would measure itself, not us."""


class WorkerProcess:
    """One warm worker container: the handler imported once, then answering events over a pipe."""

    def __init__(self, twin: Twin, stack: LoopbackStack, dynamodb_latency_ms: float) -> None:
        spec = stack.functions[WORKER]
        self._spec = {
            "mode": "serve",
            "sys_path": twin.sys_path(WORKER),
            "extra_path": [str(ROOT)],
            "environ": stack.environment(WORKER, twin.task(WORKER)),
            "handler": spec.handler,
            "function_name": WORKER,
            "timeout_seconds": spec.timeout_seconds,
            "memory": spec.memory_mb,
            "fake_dynamodb_latency_ms": dynamodb_latency_ms,
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._to_worker: IO[str] | None = None
        self._from_worker: IO[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        child_in, to_worker = os.pipe()
        from_worker, child_out = os.pipe()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump(self._spec | {"in_fd": child_in, "out_fd": child_out}, file)
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, the bench's own script
            [sys.executable, "-I", "-S", "-B", str(LAMBDA_PROC), file.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(child_in, child_out),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        os.close(child_in)
        os.close(child_out)
        self._to_worker = os.fdopen(to_worker, "w")
        self._from_worker = os.fdopen(from_worker)
        if self._from_worker.readline().strip() != "ready":
            raise RuntimeError("the worker process did not start (its handler failed to import)")

    def invoke(self, event: dict[str, Any]) -> Invocation:
        if self._to_worker is None or self._from_worker is None:
            raise RuntimeError("the worker process is not started")
        started = time.perf_counter()
        with self._lock:
            self._to_worker.write(json.dumps(event) + "\n")
            self._to_worker.flush()
            answer = json.loads(self._from_worker.readline())
        return Invocation(answer["ok"], answer["payload"], (time.perf_counter() - started) * 1000)

    def stop(self) -> None:
        if self._to_worker is not None:
            self._to_worker.close()
        if self._process is not None:
            self._process.wait(10)
        if self._from_worker is not None:
            self._from_worker.close()


class PrefetchingPoller:
    """One concurrency slot of Lambda's SQS event source mapping, with AWS's overlap: the next batch is
    received while the function runs this one, and a batch is deleted after it, off the function's
    path (the local runner's poller does the three in turn, which is fine for a demo and would add the
    SQS round trips to every batch here). Same event, same partial-failure semantics."""

    def __init__(
        self,
        sqs: Any,
        queue: Any,
        source: QueueSource,
        invoke: Callable[[dict[str, Any]], Invocation],
        on_batch: Callable[[BatchOutcome], None],
    ) -> None:
        self._sqs = sqs
        self._url = queue.url
        self._arn = queue.arn
        self._source = source
        self._invoke = invoke
        self._on_batch = on_batch
        self._received: queue_module.Queue[list[dict[str, Any]]] = queue_module.Queue(maxsize=1)
        self._finished: queue_module.Queue[BatchOutcome | None] = queue_module.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=target, daemon=True) for target in (self._receive, self._run, self._delete)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._finished.put(None)
        for thread in self._threads:
            thread.join(5)

    def _receive(self) -> None:
        while not self._stop.is_set():
            messages = self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=self._source.batch_size,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            while messages and not self._stop.is_set():
                try:
                    self._received.put(messages, timeout=0.5)
                    break
                except queue_module.Full:
                    continue

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._received.get(timeout=0.5)
            except queue_module.Empty:
                continue
            records = [sqs_record(message, self._arn, "eu-central-1") for message in messages]
            invocation = self._invoke({"Records": records})
            ids = [record["messageId"] for record in records]
            failures = (invocation.payload or {}).get("batchItemFailures", []) if invocation.ok else None
            failed = set(ids) if failures is None else {failure["itemIdentifier"] for failure in failures}
            done = [record for record in records if record["messageId"] not in failed]
            self._finished.put(
                BatchOutcome(records, deleted=[record["messageId"] for record in done], kept=sorted(failed))
            )

    def _delete(self) -> None:
        while (outcome := self._finished.get()) is not None:
            done = [record for record in outcome.records if record["messageId"] in set(outcome.deleted)]
            if done:
                self._sqs.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": str(index), "ReceiptHandle": r["receiptHandle"]} for index, r in enumerate(done)],
                )
            self._on_batch(outcome)


@dataclass(frozen=True)
class DrainResult:
    provider: str
    operations: int
    concurrency: int
    batch_size: int
    latency_ms: float
    seconds: float
    crm_requests: int
    refused: int
    dead_lettered: int
    delivered: int
    floor_seconds: float
    needed_requests: int = 0
    """What the operations cost without limit errors (the floor's requests, Bitrix24)."""
    paced_per_second: float | None = None
    """``BITRIX24_REQUESTS_PER_SECOND`` in the workers' environment (per container); None: unpaced."""
    window_ratios: tuple[float, ...] = ()
    """Each tenth of the backlog: its time against its share of the floor (the spread within the run)."""

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds


def _enqueue(stack: LoopbackStack, count: int) -> None:
    sqs = stack.aws.client("sqs")
    queue_url = stack.queue("OperationsQueue").url
    for start in range(0, count, 10):
        entries = []
        for _ in range(min(10, count - start)):
            operation = click_operation()
            entries.append(
                {
                    "Id": uuid.uuid4().hex,
                    "MessageBody": dump_operation(operation),
                    "MessageAttributes": operation_attributes(operation),
                }
            )
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def _dead_lettered(stack: LoopbackStack) -> int:
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue("DeadLetterQueue").url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _window_ratios(
    started: float, progress: list[tuple[float, int]], operations: int, floor_per_operation: float
) -> tuple[float, ...]:
    """Split the drain into tenths by operations delivered; each tenth's time over its floor."""
    ratios = []
    window_start, done_before = started, 0
    for boundary in range(1, 11):
        target = operations * boundary // 10
        reached = next(((when, count) for when, count in progress if count >= target), None)
        if reached is None or reached[1] <= done_before:
            continue
        when, count = reached
        ratios.append((when - window_start) / ((count - done_before) * floor_per_operation))
        window_start, done_before = when, count
    return tuple(ratios)


def drain(
    twin: Twin,
    operations: int,
    *,
    provider: str = "espocrm",
    latency_ms: float = 50.0,
    dynamodb_latency_ms: float = DYNAMODB_LATENCY_MS,
    timeout_seconds: float | None = None,
) -> DrainResult:
    """Queue ``operations`` messenger clicks (each a new visitor: a minimal lead) and drain them."""
    limit = LeakyBucket(BITRIX_RATE_PER_SECOND, BITRIX_BURST) if provider == "bitrix24" else None
    needed = operations * requests_per_operation(provider, FIRST_CLICK)
    if timeout_seconds is None:  # at 2 requests/s a Bitrix24 backlog takes minutes
        timeout_seconds = 240 + (1.5 * needed / BITRIX_RATE_PER_SECOND if limit is not None else 0)
    crm = StubCrm(provider, latency_seconds=latency_ms / 1000, limit=limit)
    stack = LoopbackStack(crm).start()
    workers: list[WorkerProcess] = []
    pollers: list[PrefetchingPoller] = []
    delivered = 0
    done = threading.Event()
    lock = threading.Lock()

    progress: list[tuple[float, int]] = []

    def on_batch(outcome: BatchOutcome) -> None:
        nonlocal delivered
        with lock:
            delivered += len(outcome.deleted)
            progress.append((time.monotonic(), delivered))
            if delivered >= operations:
                done.set()

    try:
        (source,) = [source for source in stack.queue_sources() if source.function == WORKER]
        concurrency = source.maximum_concurrency or 1
        _enqueue(stack, operations)
        queue = stack.queue("OperationsQueue")
        pace = stack.environment(WORKER, twin.task(WORKER)).get("BITRIX24_REQUESTS_PER_SECOND")
        for _ in range(concurrency):
            worker = WorkerProcess(twin, stack, dynamodb_latency_ms)
            worker.start()
            workers.append(worker)
        if limit is not None:  # the portal's counter starts empty, whatever the workers' start-up did
            limit.reset()
        crm.requests = crm.refused = 0
        started = time.monotonic()
        for worker in workers:
            poller = PrefetchingPoller(stack.aws.client("sqs"), queue, source, worker.invoke, on_batch)
            poller.start()
            pollers.append(poller)
        finished = done.wait(timeout_seconds)
        seconds = time.monotonic() - started
        if not finished:
            raise RuntimeError(f"drain of {operations} operations ({provider}) not done after {timeout_seconds:.0f} s")
        latency = latency_ms / 1000
        floor = crm.requests * latency / concurrency
        if limit is not None:  # issue 13: the requests needed at the portal's 2 requests a second
            floor = needed / BITRIX_RATE_PER_SECOND
        per_operation = floor / operations
        return DrainResult(
            window_ratios=_window_ratios(started, progress, operations, per_operation) if limit is None else (),
            provider=provider,
            operations=operations,
            concurrency=concurrency,
            batch_size=source.batch_size,
            latency_ms=latency_ms,
            seconds=seconds,
            crm_requests=crm.requests,
            refused=crm.refused,
            dead_lettered=_dead_lettered(stack),
            delivered=delivered,
            floor_seconds=floor,
            needed_requests=needed,
            paced_per_second=float(pace) if pace else None,
        )
    finally:
        for poller in pollers:
            poller.stop()
        for worker in workers:
            worker.stop()
        stack.stop()
