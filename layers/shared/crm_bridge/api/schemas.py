"""The API's answer bodies as models: documented in the OpenAPI document exactly as they are sent."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseHeader
from pydantic import BaseModel, ConfigDict, Field

from crm_bridge.api.http import IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_PATTERN
from crm_bridge.errors import ErrorKind

IdempotencyKey = Annotated[
    str | None,
    Header(alias=IDEMPOTENCY_KEY_HEADER, min_length=1, max_length=128, pattern=f"^{IDEMPOTENCY_KEY_PATTERN.pattern}$"),
]
"""The optional request header, as the routes declare it (``HttpRequest.idempotency_key`` reads it
the same way where there is no resolver)."""


class _Documented(BaseModel):
    """Built only when the OpenAPI document is generated, not in a function's cold start."""

    model_config = ConfigDict(defer_build=True)


class Received(_Documented):
    """201: the CRM has the application. The same answer whether it made a new lead or went onto the
    lead of someone who applied before: the API tells no caller who else exists, nor any lead's id."""

    status: Literal["received"]
    operationId: str


class Queued(_Documented):
    """202: kept safely; delivered to the CRM by the worker."""

    status: Literal["queued"]
    operationId: str


class FieldProblem(_Documented):
    field: str = Field(description="Dotted path of the field, e.g. attribution.referral_code")
    message: str


class ErrorDetail(_Documented):
    code: str = Field(description="Stable, for programs: invalid_request, invalid_json, body_too_large, ...")
    message: str = Field(description="For people")
    fields: list[FieldProblem] | None = None
    operationId: str | None = Field(default=None, description="With 503: retry with the same Idempotency-Key")


class ErrorBody(_Documented):
    error: ErrorDetail


class HealthSummary(_Documented):
    """The public health check: up or down, nothing about the CRM."""

    status: Literal["ok", "down"]


class Health(_Documented):
    """The operator's health check (IAM-signed): which CRM, and what is wrong with it."""

    status: Literal["ok", "degraded", "down", "misconfigured"]
    provider: str | None
    reachable: bool
    roundTripMs: float | None = None
    missingFields: list[str] | None = None
    errorKind: ErrorKind | None = None
    problem: str | None = Field(
        default=None,
        description="When misconfigured: what is wrong, in a sentence (a setting, the CRM's mode or its refusal), "
        "with secrets and personal data redacted",
    )


def answer(description: str, model: type[BaseModel] | None = None) -> OpenAPIResponse:
    """One entry of a route's ``responses``; without a model, an answer without a body (Powertools
    would otherwise document the handler's return type, a string, as a JSON body)."""
    if model is None:
        return {"description": description, "content": {}}
    return {"description": description, "content": {"application/json": {"model": model}}}


def redirect(description: str) -> OpenAPIResponse:
    """A 302: no body, and always a ``Location``."""
    location: OpenAPIResponseHeader = {"description": "Where to go", "schema": {"type": "string", "format": "uri"}}
    return {"description": description, "content": {}, "headers": {"Location": location}}


def error(description: str) -> OpenAPIResponse:
    return answer(description, ErrorBody)


INVALID_REQUEST = error("Fields missing or invalid, each named")
"""Every route's 422 (Powertools' default documents its own HTTPValidationError, which is never sent)."""

COMMON_ERRORS: dict[int, OpenAPIResponse] = {
    400: error("The body is not JSON (or nested too deeply)"),
    413: error("The body is too large"),
    415: error("The body is not application/json"),
    422: INVALID_REQUEST,
    500: error("Something went wrong on our side"),
    503: error("Could not be accepted now; retry"),
}
