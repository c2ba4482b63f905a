"""What a person watching ``make run`` sees: one line per step of each operation, ids only.

Requests as they arrive and how they were answered, batches as the worker takes them, what the
functions log (Powertools' JSON reduced to its message and the ids in it), and the dead-letter
queue as it fills. Personal data never gets here: the answers and log fields shown carry ids, and
every line still passes through the layer's redaction (phones, e-mails, registered secrets).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from crm_bridge.observability import redact
from infra.local.poller import BatchOutcome

_LEVEL_COLOURS = {"WARNING": "33", "ERROR": "31", "CRITICAL": "31"}


def _short(value: Any) -> str:
    return str(value)[:8]


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    text = f"{error.get('kind', 'error')}: {error.get('reason', '')}"
    details = [f"{name} {error[name]}" for name in ("status", "field", "code") if error.get(name)]
    return f"{text} ({', '.join(details)})" if details else text


# Log fields worth a glance, and how to show them; everything else stays in the JSON log.
_FIELDS: dict[str, Callable[[Any], str]] = {
    "operation_id": lambda value: f"op {_short(value)}",
    "message_id": lambda value: f"message {_short(value)}",
    "attempts": lambda value: f"attempt {value}",
    "record_id": lambda value: f"lead {value}",
    "action": str,
    "provider": str,
    "retry_in": lambda value: f"retry in {value} s",
    "error": _error_text,
    "ignored_fields": lambda value: "ignored " + ", ".join(map(str, value)),
    "dropped_fields": lambda value: "refused by the CRM, kept in the description: " + ", ".join(map(str, value)),
    "why": str,
    "reason": lambda value: f"reason {value}",
}


class Console:
    def __init__(self, stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self._stream = stream or sys.stdout
        self._colour = self._stream.isatty() if colour is None else colour
        self._lock = threading.Lock()

    def line(self, source: str, text: str, *, level: str = "INFO") -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        text = redact(text)
        if self._colour and level in _LEVEL_COLOURS:
            text = f"\033[{_LEVEL_COLOURS[level]}m{text}\033[0m"
        with self._lock:
            self._stream.write(f"{stamp}  {_short_name(source):<15} {text}\n")
            self._stream.flush()

    def banner(self, label: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"  {label:<9} {redact(text)}\n")
            self._stream.flush()

    # --- the gateway ------------------------------------------------------------------------------

    def received(self, method: str, path: str) -> None:
        self.line("api", f"{method} {path}  received")

    def throttled(self, method: str, path: str, rate: float, burst: int) -> None:
        self.line(
            "api",
            f"{method} {path}  429 throttled: the route's limit ({rate:g}/s, burst {burst}), as API Gateway would",
            level="WARNING",
        )

    def answered(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes, duration_ms: float
    ) -> None:
        level = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
        self.line(
            "api", f"{method} {path}  {status} {_outcome(status, headers, body)} ({duration_ms:.0f} ms)", level=level
        )

    # --- the poller ---------------------------------------------------------------------------------

    def batch_received(self, function: str, records: list[dict[str, Any]]) -> None:
        taken = ", ".join(_record_text(record) for record in records)
        self.line("queue", f"-> {_short_name(function)}: {taken}")

    def batch(self, function: str, outcome: BatchOutcome) -> None:
        if outcome.error is not None:
            error = f"{outcome.error.get('errorType')}: {outcome.error.get('errorMessage')}"
            self.line(
                "queue",
                f"invocation failed ({error}); the batch comes back after its visibility timeout",
                level="ERROR",
            )
        elif outcome.kept:
            self.line(
                "queue", f"{len(outcome.deleted)} done, {len(outcome.kept)} left on the queue to retry", level="WARNING"
            )
        else:
            self.line("queue", f"{len(outcome.deleted)} done, deleted from the queue")

    def dead_letter_depth(self, previous: int, current: int) -> None:
        if current > previous:
            self.line(
                "dlq",
                f"DEAD-LETTERED: the dead-letter queue holds {current} operation(s) (make dlq-inspect; see the README)",
                level="ERROR",
            )

    # --- the functions' own output ------------------------------------------------------------------

    def function_output(self, function: str, stream: str, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if line.strip():
                self.line(function, line, level="WARNING" if stream == "stderr" else "INFO")
            return
        if "_aws" in record:
            return  # an EMF metrics blob: CloudWatch's business, not the console's
        level = str(record.get("level", "INFO")).upper()
        if level == "DEBUG":
            return
        details = [show(record[name]) for name, show in _FIELDS.items() if record.get(name) not in (None, "", [])]
        text = str(record.get("message", ""))
        self.line(function, f"{text}" + (f"  [{'; '.join(details)}]" if details else ""), level=level)


def _short_name(source: str) -> str:
    """``ApplicationsFunction`` -> ``Applications``: the console's source column."""
    return source.removesuffix("Function") or source


def _record_text(record: Mapping[str, Any]) -> str:
    attributes = record.get("messageAttributes") or {}
    operation = (attributes.get("operation_id") or {}).get("stringValue")
    receives = (record.get("attributes") or {}).get("ApproximateReceiveCount", "?")
    name = f"op {_short(operation)}" if operation else f"message {_short(record.get('messageId'))}"
    return f"{name} (receive {receives})"


def _outcome(status: int, headers: Mapping[str, str], body: bytes) -> str:
    """The answer in a few words, from the ids and codes in it (never the submitted data).

    A redirect's answer is the same whether its click was queued or declined (not a person): the
    redirect's own log line says which, and the worker's lines show the click arriving."""
    if status in (301, 302, 303, 307, 308):
        location = urlsplit(headers.get("location", ""))
        return f"redirect to {location.hostname}{location.path}"
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    return _body_outcome(data) if isinstance(data, dict) else ""


def _body_outcome(data: dict[str, Any]) -> str:
    """An application's answer names no lead (``crm_bridge.api.answers``): its operation is what
    the console can show; the worker's log lines name the lead of what it delivers."""
    if data.get("status") == "received":
        return f"delivered (op {_short(data.get('operationId'))})"
    if data.get("status") == "queued":
        return f"queued for the worker (op {_short(data.get('operationId'))})"
    if isinstance(data.get("error"), dict):
        error = data["error"]
        fields = [str(item.get("field")) for item in error.get("fields") or [] if isinstance(item, dict)]
        return str(error.get("code")) + (f" ({', '.join(fields)})" if fields else "")
    if "reachable" in data:
        return f"CRM {data.get('provider')}: {data.get('status')}"
    return str(data.get("message", ""))
