"""The API Gateway HTTP API resolver of the functions that route with Powertools (applications,
health), with the guards and error answers of ``crm_bridge.api.http``.

Request bodies are validated against the layer's pydantic models (``enable_validation``), which is
also what generates the OpenAPI document. Before that (:func:`resolve`): a size cap and a JSON
content type for request bodies; during it, JSON nesting is limited; and every failure is
answered as JSON with a code.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.endpoint import delivery_unavailable, internal_error
from crm_bridge.api.http import HttpProblem, HttpRequest, invalid_fields, invalid_json, json_loads, problem_answer
from crm_bridge.api.responses import error_response
from crm_bridge.api.settings import ApiSettings
from crm_bridge.delivery import DeliveryUnavailable


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
    app = APIGatewayHttpResolver(enable_validation=True, cors=cors, json_body_deserializer=json_loads)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(DeliveryUnavailable)(_unavailable)
    app.not_found(_not_found)
    app.exception_handler(Exception)(_internal_error)
    return app


def resolve(
    app: APIGatewayHttpResolver, event: dict[str, Any], context: LambdaContext, settings: ApiSettings
) -> dict[str, Any]:
    """Answer an HTTP API event: request bodies are checked before validation even parses them."""
    refusal = HttpRequest.from_event(event).refusal(settings.max_body_bytes)
    if refusal is not None:
        return problem_answer(refusal)
    return app.resolve(event, context)


def _problem_response(problem: HttpProblem) -> Response[str]:
    return error_response(problem.status, problem.code, problem.message, **problem.extra)


def _invalid_request(error: RequestValidationError) -> Response[str]:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return _problem_response(invalid_json())
    return _problem_response(invalid_fields(problems))


def _unavailable(error: DeliveryUnavailable) -> Response[str]:
    return _problem_response(delivery_unavailable(error))


def _not_found(_: NotFoundError) -> Response[str]:
    return error_response(404, "not_found", "no such resource")


def _internal_error(error: Exception) -> Response[str]:
    return _problem_response(internal_error(error))
