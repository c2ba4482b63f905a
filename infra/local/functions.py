"""Each template function in a process of its own, as Lambda gives each function its own containers.

A function process gets exactly the environment its template function declares (resolved
locally), imports its handler module once (the cold start, where a misconfigured function refuses
to start), and then serves one invocation at a time. Its stdout and stderr (Powertools' JSON log
lines, EMF metrics, tracebacks) come back to the runner line by line. An invocation that outlives
the function's Timeout is ended as Lambda ends it: the process is killed and the next invocation
starts a fresh one.

What the runner adds to the layer reaches a process the same way: the modules in ``preload`` are
imported in it before its handler (the sandbox provider, :mod:`infra.local.sandbox`, registers itself
with the layer's factory so), and nothing of the runner is imported otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from infra.local.http_events import LambdaContext
from infra.local.template import FunctionSpec

OutputSink = Callable[[str, str, str], None]
"""``(function logical id, "stdout" | "stderr", line)``"""

_INIT_TIMEOUT_SECONDS = 60.0
# Variables a process needs to work at all; nothing else of the runner's environment leaks in.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class Invocation:
    """What an invocation gave back: the handler's JSON result, or Lambda's error object."""

    ok: bool
    payload: Any
    duration_ms: float


def lambda_environment(spec: FunctionSpec, declared: Mapping[str, str], region: str) -> dict[str, str]:
    """The variables Lambda sets for every function, then the template's own."""
    base = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    return base | {
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime or 'python3.13'}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
        **declared,
    }


class LocalFunction:
    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        on_output: OutputSink,
        *,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.environment = dict(environment)
        self.preload = preload
        """Modules imported in the process before the handler, at every cold start."""
        self._on_output = on_output
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Connection | None = None
        self._stopped = False
        self.init_error: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def start(self) -> bool:
        """Start the process and wait for its cold start; False when the handler failed to load."""
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        parent_end, child_end = self._context.Pipe()
        output_read, output_write = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_host,
            args=(self.spec, self.environment, self.preload, child_end, output_write),
            name=f"lambda:{self.name}",
            daemon=True,
        )
        process.start()
        child_end.close()
        output_write.close()
        threading.Thread(target=self._forward_output, args=(output_read,), daemon=True).start()
        self._process, self._connection = process, parent_end
        if not parent_end.poll(_INIT_TIMEOUT_SECONDS):
            self._kill()
            self.init_error = {"errorType": "Runtime.InitTimeout", "errorMessage": "the handler did not load in time"}
            return False
        try:
            status, detail = parent_end.recv()
        except EOFError:
            status, detail = "init_error", {"errorType": "Runtime.ExitError", "errorMessage": "exited during init"}
        if status != "ready":
            self._kill()
            self.init_error = detail
            return False
        self.init_error = None
        return True

    def invoke(self, event: Mapping[str, Any]) -> Invocation:
        """Run the handler on ``event``, one invocation at a time, as one Lambda container does."""
        started = time.perf_counter()
        with self._lock:
            if self._stopped:
                return Invocation(
                    False, {"errorType": "Runtime.Stopped", "errorMessage": "the runner is stopping"}, 0.0
                )
            if (self._process is None or not self._process.is_alive()) and not self._start():
                return Invocation(False, self.init_error, _elapsed(started))
            connection = self._connection
            if connection is None:  # pragma: no cover - _start() sets it whenever it succeeds
                raise RuntimeError(f"{self.name} has no process")
            try:
                connection.send((json.dumps(event), str(uuid.uuid4())))
                answered = connection.poll(self.spec.timeout_seconds + 0.5)
                status, payload = connection.recv() if answered else ("timeout", None)
            except (EOFError, OSError, BrokenPipeError):
                self._kill()
                return Invocation(
                    False, {"errorType": "Runtime.ExitError", "errorMessage": "the process exited"}, _elapsed(started)
                )
            if status == "timeout":
                self._kill()  # Lambda ends the sandbox; the next invocation is a cold start
                message = f"Task timed out after {self.spec.timeout_seconds:.2f} seconds"
                return Invocation(False, {"errorType": "Sandbox.Timedout", "errorMessage": message}, _elapsed(started))
        if status == "ok":
            return Invocation(True, json.loads(str(payload)), _elapsed(started))
        return Invocation(False, payload, _elapsed(started))

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._connection is not None:
                with contextlib.suppress(OSError):
                    self._connection.send(None)
            if self._process is not None:
                self._process.join(2)
            self._kill()

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(2)
        if self._connection is not None:
            self._connection.close()
        self._process, self._connection = None, None

    def _forward_output(self, connection: Connection) -> None:
        while True:
            try:
                stream, line = connection.recv()
            except (EOFError, OSError):
                return
            self._on_output(self.name, stream, line)


def _elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- inside the function's process ---------------------------------------------------------------


class _LineForwarder(io.TextIOBase):
    """A text stream that sends each complete line to the runner."""

    def __init__(self, connection: Connection, stream: str, lock: threading.Lock) -> None:
        self._connection = connection
        self._stream = stream
        self._lock = lock
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._send(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._send(line)

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError):  # OSError: the runner is gone; so are we, shortly
            self._connection.send((self._stream, line))


def _error(exc: BaseException) -> dict[str, Any]:
    return {"errorType": type(exc).__name__, "errorMessage": str(exc)}


def _host(
    spec: FunctionSpec,
    environment: dict[str, str],
    preload: tuple[str, ...],
    connection: Connection,
    output: Connection,
) -> None:
    """The function process: load ``preload``, then the handler, then answer invocations until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle; it stops us
    # Powertools warns on each invocation that publishes no metric (a 4xx): noise on a console.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    os.environ.clear()
    os.environ.update(environment)
    lock = threading.Lock()
    sys.stdout = _LineForwarder(output, "stdout", lock)
    sys.stderr = _LineForwarder(output, "stderr", lock)
    sys.path.insert(0, str(spec.code_dir))
    os.chdir(spec.code_dir)
    try:
        for module in preload:
            importlib.import_module(module)
        handler = getattr(importlib.import_module(spec.module), spec.function_name)
    except Exception as exc:
        print(f"[ERROR] init failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        connection.send(("init_error", _error(exc)))
        return
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        event_json, request_id = message
        context = LambdaContext(
            spec.logical_id,
            spec.timeout_seconds,
            memory_limit_in_mb=spec.memory_mb,
            aws_request_id=request_id,
            region=environment.get("AWS_REGION", "eu-central-1"),
        )
        try:
            result = json.dumps(handler(json.loads(event_json), context))
        except Exception as exc:
            traceback.print_exc()
            connection.send(("error", _error(exc)))
        else:
            connection.send(("ok", result))
        sys.stdout.flush()
        sys.stderr.flush()
