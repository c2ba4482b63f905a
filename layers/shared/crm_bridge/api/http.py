"""The HTTP edge in plain Python: reading an API Gateway HTTP API event (payload 2.0), the guards on
request bodies, and every error answer, as :class:`HttpProblem`.

The resolver-based functions (applications, health) use these through
``crm_bridge.api.resolver``; the two functions whose cold start visitors feel on every click (the
redirect and messenger events) answer from the event with them directly, without loading the
event handler (docs/performance.md). Either way a request is refused for the same reasons, with the
same JSON.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crm_bridge.api.problems import error_document, error_headers, json_text

MAX_JSON_DEPTH = 32
_JSON_CONTENT_TYPES = ("application/json",)
_BODY_METHODS = ("POST", "PUT", "PATCH")
REF_COOKIE = "ref"
"""The partner's referral code, set by /go (HttpOnly)."""
SESSION_COOKIE = "visitor_session"
"""The visitor session: set by the site's snippet or by /go, read by every route that records a visitor."""
IDEMPOTENCY_KEY_HEADER = "idempotency-key"
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
"""1-128 visible ASCII characters (the OpenAPI document says the same)."""


class HttpProblem(Exception):
    """A request answered with an error: status, a stable code, a sentence, maybe more fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def document(self) -> dict[str, Any]:
        return error_document(self.code, self.message, **self.extra)

    def headers(self) -> dict[str, str] | None:
        return error_headers(self.status)


def invalid_fields(errors: Sequence[Mapping[str, Any]]) -> HttpProblem:
    """422 naming each field pydantic refused (its messages, never the values)."""
    fields = [
        {"field": _field_name(tuple(error.get("loc", ()))), "message": str(error.get("msg", "invalid"))}
        for error in errors
    ]
    return HttpProblem(422, "invalid_request", "some fields are missing or invalid", fields=fields)


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def unavailable(operation_id: str) -> HttpProblem:
    """503: neither the CRM nor the queue took the operation (it was sealed into the log)."""
    return HttpProblem(
        503,
        "temporarily_unavailable",
        "we could not accept this right now; please try again in a moment",
        operationId=operation_id,
    )


INTERNAL_ERROR = HttpProblem(500, "internal_error", "something went wrong on our side")


def invalid_json() -> HttpProblem:
    """400 (a new instance each time: a raised exception keeps its traceback)."""
    return HttpProblem(400, "invalid_json", "the request body is not valid JSON")


def json_loads(body: str) -> Any:
    """json.loads that refuses absurd nesting instead of exhausting the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", body, 0)
        elif char in "]}":
            depth -= 1
    return json.loads(body)


def _is_utf8(encoded: str) -> bool:
    try:
        base64.b64decode(encoded).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError alike
        return False
    return True


@dataclass(frozen=True)
class HttpRequest:
    """What an HTTP API event (payload 2.0) carries; header names are lower-case, as API Gateway sends them."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    path_parameters: Mapping[str, str]
    cookies: Mapping[str, str]
    body: str
    base64_encoded: bool
    request_id: str | None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> HttpRequest:
        context = event.get("requestContext") or {}
        cookies: dict[str, str] = {}
        for cookie in event.get("cookies") or []:
            name, _, value = cookie.strip().partition("=")
            cookies.setdefault(name, value)
        return cls(
            method=str((context.get("http") or {}).get("method", "")).upper(),
            headers={name.lower(): value for name, value in (event.get("headers") or {}).items()},
            query=event.get("queryStringParameters") or {},
            path_parameters=event.get("pathParameters") or {},
            cookies=cookies,
            body=event.get("body") or "",
            base64_encoded=bool(event.get("isBase64Encoded")),
            request_id=context.get("requestId"),
        )

    def refusal(self, max_body_bytes: int) -> HttpProblem | None:
        """Why the body cannot even be read (too large, not JSON, not text), before it is parsed."""
        if self.method not in _BODY_METHODS:
            return None
        size = len(self.body) * 3 // 4 if self.base64_encoded else len(self.body.encode())
        if size > max_body_bytes:
            return HttpProblem(413, "body_too_large", f"the request body is larger than {max_body_bytes} bytes")
        content_type = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type not in _JSON_CONTENT_TYPES:
            return HttpProblem(415, "unsupported_media_type", "send the body as application/json")
        if self.base64_encoded and not _is_utf8(self.body):  # API Gateway encodes a body that is not text
            return HttpProblem(400, "invalid_json", "the request body is not valid JSON (it is not UTF-8 text)")
        return None

    def json_body(self, max_body_bytes: int) -> Any:
        """The body as JSON (None when there is none: the model then names what is missing), or
        the HttpProblem that refuses it."""
        refusal = self.refusal(max_body_bytes)
        if refusal is not None:
            raise refusal
        text = base64.b64decode(self.body).decode() if self.base64_encoded else self.body
        if not text:
            return None
        try:
            return json_loads(text)
        except (ValueError, RecursionError):
            raise invalid_json() from None

    def idempotency_key(self) -> str | None:
        """The optional ``Idempotency-Key`` header, or 422 when it is malformed."""
        key = self.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is None:
            return None
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
            raise invalid_fields(
                [{"loc": ("header", IDEMPOTENCY_KEY_HEADER), "msg": "must be 1-128 visible ASCII characters"}]
            )
        return key


def answer(
    status: int,
    body: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[str] = (),
) -> dict[str, Any]:
    """A Lambda proxy answer for the HTTP API; a body is JSON."""
    all_headers = {"Content-Type": "application/json"} if body is not None else {}
    all_headers |= headers or {}
    result: dict[str, Any] = {
        "statusCode": status,
        "headers": all_headers,
        "body": json_text(dict(body)) if body is not None else "",
        "isBase64Encoded": False,
    }
    if cookies:
        result["cookies"] = list(cookies)
    return result


def problem_answer(problem: HttpProblem) -> dict[str, Any]:
    return answer(problem.status, problem.document(), headers=problem.headers())
