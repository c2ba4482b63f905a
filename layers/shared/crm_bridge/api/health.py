"""The health check's verdict, in words an operator and a monitor both understand.

The check is public, and each fresh verdict costs the CRM a request (Bitrix24 allows about 2 per
second per webhook), so a container reuses its verdict for ``HEALTH_CACHE_SECONDS``
(:class:`HealthCache`), and an anonymous caller learns only up or down (:func:`public_answer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from crm_bridge.errors import SettingsError
from crm_bridge.observability import get_logger, redact
from crm_bridge.providers import get_provider

if TYPE_CHECKING:  # Powertools idempotency (and boto3 with it) only where submissions use it
    from crm_bridge.api.idempotency import Answer


def health_answer() -> Answer:
    """200 ``ok`` only when the CRM answers, accepts our credentials and has every mapped field.

    ``down``: unreachable; ``misconfigured``: credentials, permissions or settings, named in
    ``problem``; ``degraded``: reachable but lacking mapped fields (their values would be silently
    dropped).
    """
    try:
        provider = get_provider()
    except SettingsError as exc:
        get_logger().error("CRM settings are invalid", extra={"error": str(exc)})
        unusable = {"status": "misconfigured", "provider": None, "reachable": False, "problem": _problem(str(exc))}
        return {"status": 503, "body": unusable}
    report = provider.test_connection()
    problem = None
    if report.error_kind is not None:
        status = "down" if not report.reachable else "misconfigured"
        get_logger().warning("CRM health check failed", extra={"error_kind": report.error_kind, "error": report.error})
        if status == "misconfigured":
            problem = _problem(report.error)
    elif report.missing_fields:
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "provider": report.provider,
        "reachable": report.reachable,
        "roundTripMs": report.elapsed_ms,
        "missingFields": report.missing_fields,
        "errorKind": report.error_kind,
        "problem": problem,
    }
    return {"status": 200 if status == "ok" else 503, "body": body}


def _problem(text: str | None) -> str | None:
    """What the operator must change, in a sentence: crm-bridge's own (a setting, the CRM's mode,
    rejected credentials) or the CRM's reason. A CRM's text is redacted where the provider reads it,
    all but a Bitrix24 error code; this answer never passes the log formatter's redaction, so it
    gets the same here (secrets, webhook tokens, personal data)."""
    return redact(text) if text else None


def public_answer(answer: Answer) -> Answer:
    """What an anonymous caller may know: ``ok`` (200) or ``down`` (503), nothing about the CRM."""
    healthy = answer["status"] == 200
    return {"status": 200 if healthy else 503, "body": {"status": "ok" if healthy else "down"}}


class HealthCache:
    """One verdict per ``ttl_seconds`` per container, however many callers ask (failures included:
    a CRM that is down must not be asked more often). Callers that arrive while the CRM is being
    asked wait for that answer instead of asking again."""

    def __init__(
        self,
        ttl_seconds: float,
        check: Callable[[], Answer] = health_answer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.check = check
        self.clock = clock
        self._lock = threading.Lock()
        self._answer: Answer | None = None
        self._checked_at = 0.0

    def get(self) -> Answer:
        with self._lock:
            if self._answer is None or self.clock() - self._checked_at >= self.ttl_seconds:
                return self._refresh()
            return self._answer

    def fresh(self) -> Answer:
        """Ask the CRM now (an operator after a fix), and keep the answer for everyone."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> Answer:
        answer = self.check()
        self._answer, self._checked_at = answer, self.clock()
        return answer
