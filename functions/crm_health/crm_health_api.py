"""GET /api/v1/crm/test: is the CRM up; GET /api/v1/crm/test/details (IAM): which CRM, is it
reachable, how fast, which mapped fields it lacks, and what is misconfigured.

The public route is anonymous and answers only ``ok`` or ``down``, from a verdict the container
reuses for ``HEALTH_CACHE_SECONDS``: a storm of checks cannot drain the CRM's request budget. The
details route is reachable only with an IAM-signed request (API Gateway checks the signature before
this function runs; see template.yaml) and asks the CRM afresh.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.health import HealthCache, public_answer
from crm_bridge.api.resolver import make_resolver, resolve
from crm_bridge.api.responses import json_response
from crm_bridge.api.schemas import INVALID_REQUEST, Health, HealthSummary, answer, error
from crm_bridge.api.settings import get_api_settings
from crm_bridge.observability import get_logger

settings = get_api_settings()
app = make_resolver(settings)
logger = get_logger()
health_cache = HealthCache(settings.health_cache_seconds)
_NO_STORE = {"Cache-Control": "no-store"}


@app.get(
    "/api/v1/crm/test",
    summary="CRM health check",
    description="Public: ok or down, nothing else. The verdict is reused for HEALTH_CACHE_SECONDS (60) per "
    "instance, so frequent checks cost the CRM nothing more. Details: /api/v1/crm/test/details.",
    responses={
        200: answer("Healthy", HealthSummary),
        503: answer("Down, misconfigured or degraded (the details route says which)", HealthSummary),
        422: INVALID_REQUEST,
        500: error("Something went wrong on our side"),
    },
    tags=["operations"],
)
def crm_test() -> Response[str]:
    verdict = public_answer(health_cache.get())
    return json_response(verdict["status"], verdict["body"], headers=_NO_STORE)


@app.get(
    "/api/v1/crm/test/details",
    summary="CRM health check with details (operators, IAM-signed)",
    description="Requires an AWS SigV4-signed request (execute-api:Invoke, granted by the stack's OperatorPolicy). "
    "Provider, reachability, round-trip time and the mapped fields the CRM lacks, checked now; when misconfigured, "
    "what is wrong in a sentence. No secrets, no personal data.",
    responses={
        200: answer("Healthy", Health),
        503: answer("Unreachable, misconfigured or degraded", Health),
        422: INVALID_REQUEST,
        500: error("Something went wrong on our side"),
    },
    tags=["operations"],
)
def crm_test_details() -> Response[str]:
    verdict = health_cache.fresh()
    return json_response(verdict["status"], verdict["body"], headers=_NO_STORE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context, settings)
