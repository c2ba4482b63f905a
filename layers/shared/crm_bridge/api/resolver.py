"""The API Gateway HTTP API resolver every API function uses, with one set of guards and errors.

Request bodies are validated against the layer's pydantic models (``enable_validation``), which is
also what generates the OpenAPI document. Before that (:func:`resolve`): a size cap and a JSON
content type for request bodies; during it, JSON nesting is limited; and every failure is
answered as JSON with a code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.responses import error_response
from crm_bridge.api.settings import ApiSettings
from crm_bridge.delivery import DeliveryUnavailable
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import count

MAX_JSON_DEPTH = 32
_JSON_CONTENT_TYPES = ("application/json",)


def _json_loads(body: str) -> Any:
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


def make_resolver(settings: ApiSettings) -> APIGatewayHttpResolver:
    origins = list(settings.site_origins)
    cors = (
        CORSConfig(
            allow_origin=origins[0],
            extra_origins=origins[1:],
            allow_headers=["Content-Type", "Idempotency-Key"],
            max_age=600,
        )
        if origins
        else None
    )
    app = APIGatewayHttpResolver(enable_validation=True, cors=cors, json_body_deserializer=_json_loads)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(DeliveryUnavailable)(_unavailable)
    app.not_found(_not_found)
    app.exception_handler(Exception)(_internal_error)
    return app


def resolve(
    app: APIGatewayHttpResolver, event: dict[str, Any], context: LambdaContext, settings: ApiSettings
) -> dict[str, Any]:
    """Answer an HTTP API event: request bodies are checked before validation even parses them."""
    refusal = _refuse_body(APIGatewayProxyEventV2(event), settings.max_body_bytes)
    if refusal is not None:
        status, code, message = refusal
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message}}),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)


def _refuse_body(event: APIGatewayProxyEventV2, max_bytes: int) -> tuple[int, str, str] | None:
    if event.request_context.http.method not in ("POST", "PUT", "PATCH"):
        return None
    body = event.body or ""
    size = len(body) * 3 // 4 if event.is_base64_encoded else len(body.encode())
    if size > max_bytes:
        return 413, "body_too_large", f"the request body is larger than {max_bytes} bytes"
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type not in _JSON_CONTENT_TYPES:
        return 415, "unsupported_media_type", "send the body as application/json"
    if event.is_base64_encoded and not _is_utf8(body):  # API Gateway encodes a body that is not text
        return 400, "invalid_json", "the request body is not valid JSON (it is not UTF-8 text)"
    return None


def _is_utf8(encoded: str) -> bool:
    try:
        base64.b64decode(encoded).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError alike
        return False
    return True


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "header", "path", "cookie"):
        parts = parts[1:] if parts[0] == "body" else parts
    return ".".join(parts) or "body"


def _invalid_request(error: RequestValidationError) -> Response[str]:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    fields = [
        {"field": _field_name(tuple(problem.get("loc", ()))), "message": str(problem.get("msg", "invalid"))}
        for problem in problems
    ]
    return error_response(422, "invalid_request", "some fields are missing or invalid", fields=fields)


def _unavailable(error: DeliveryUnavailable) -> Response[str]:
    count("DeliveryUnavailable")
    return error_response(
        503,
        "temporarily_unavailable",
        "we could not accept this right now; please try again in a moment",
        operationId=error.operation_id,
    )


def _not_found(_: NotFoundError) -> Response[str]:
    return error_response(404, "not_found", "no such resource")


def _internal_error(error: Exception) -> Response[str]:
    get_logger().exception("unhandled error", extra={"error_type": type(error).__name__})
    return error_response(500, "internal_error", "something went wrong on our side")
