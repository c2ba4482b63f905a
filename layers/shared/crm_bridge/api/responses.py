"""How every API function answers: JSON bodies that name the problem, never a stack trace."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie

from crm_bridge.api.problems import error_document, error_headers, json_text


def json_response(
    status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None, cookies: list[Cookie] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json_text(body),
        headers=headers,
        cookies=cookies,
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    """``{"error": {"code", "message", ...}}`` (:mod:`crm_bridge.api.problems`) as a resolver's answer."""
    return json_response(status, error_document(code, message, **extra), headers=error_headers(status))
