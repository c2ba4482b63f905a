"""What every API answer says when something is wrong: ``{"error": {"code", "message", ...}}``.

A stable code for programs, a sentence for people, never a stack trace. Plain Python, shared by
the resolver-based functions (``crm_bridge.api.responses``) and the redirect, which answers
without a resolver.
"""

from __future__ import annotations

import json
from typing import Any

RETRY_AFTER_SECONDS = 30


def error_document(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def json_text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def error_headers(status: int) -> dict[str, str] | None:
    """``Retry-After`` where trying again later is the answer (429, 503)."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)} if status in (429, 503) else None
