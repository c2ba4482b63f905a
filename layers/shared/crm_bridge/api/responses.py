"""How every API function answers: JSON bodies that name the problem, never a stack trace."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie

RETRY_AFTER_SECONDS = 30


def json_response(
    status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None, cookies: list[Cookie] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        headers=headers,
        cookies=cookies,
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    """``{"error": {"code", "message", ...}}``: a stable code for programs, a sentence for people."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status in (429, 503) else None
    return json_response(status, {"error": {"code": code, "message": message, **extra}}, headers=headers)


def status_name(status: int) -> str:
    return HTTPStatus(status).phrase
