"""The health check's verdict, in words an operator and a monitor both understand."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_bridge.errors import SettingsError
from crm_bridge.observability import get_logger
from crm_bridge.providers import get_provider

if TYPE_CHECKING:  # Powertools idempotency (and boto3 with it) only where submissions use it
    from crm_bridge.api.idempotency import Answer


def health_answer() -> Answer:
    """200 ``ok`` only when the CRM answers, accepts our credentials and has every mapped field.

    ``down``: unreachable; ``misconfigured``: credentials, permissions or settings; ``degraded``:
    reachable but lacking mapped fields (their values would be silently dropped).
    """
    try:
        provider = get_provider()
    except SettingsError as exc:
        get_logger().error("CRM settings are invalid", extra={"error": str(exc)})
        return {"status": 503, "body": {"status": "misconfigured", "provider": None, "reachable": False}}
    report = provider.test_connection()
    if report.error_kind is not None:
        status = "down" if not report.reachable else "misconfigured"
        get_logger().warning("CRM health check failed", extra={"error_kind": report.error_kind, "error": report.error})
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
    }
    return {"status": 200 if status == "ok" else 503, "body": body}
