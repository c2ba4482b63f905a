"""Genuine API Gateway HTTP API (payload 2.0) events, as API Gateway builds them from a request.

Used by the local gateway to invoke the real handlers and by the tests, so that both exercise the
shape Lambda receives in AWS (the one ``sam local generate-event apigateway http-api-proxy`` shows).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

# What API Gateway treats as text (everything else arrives base64-encoded).
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml")


def http_api_event(
    method: str,
    path: str,
    *,
    route_key: str,
    path_parameters: Mapping[str, str] | None = None,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
    force_base64: bool = False,
) -> dict[str, Any]:
    """The event for one request. Header names are lower-cased and cookies split out, as in AWS."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    cookie_header = lowered.pop("cookie", "")
    raw_body = body.encode() if isinstance(body, str) else body
    content_type = lowered.get("content-type", "")
    as_base64 = raw_body is not None and (
        force_base64 or not content_type.startswith(_TEXT_TYPES) or not _is_utf8(raw_body)
    )
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": (lowered.get("host", "localhost")).split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:12] + "=",
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": as_base64,
    }
    if cookie_header:
        event["cookies"] = [part.strip() for part in cookie_header.split(";") if part.strip()]
    if query:
        parameters: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            # API Gateway joins repeated parameters with commas.
            parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
        event["queryStringParameters"] = parameters
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if raw_body is not None:
        event["body"] = base64.b64encode(raw_body).decode() if as_base64 else raw_body.decode()
    return event


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(
        self,
        function_name: str = "local",
        timeout_seconds: int = 10,
        *,
        memory_limit_in_mb: int = 512,
        aws_request_id: str | None = None,
        region: str = "eu-central-1",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
