"""GET /api/v1/crm/test: which CRM, is it reachable, how fast, and which mapped fields it lacks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.health import health_answer
from crm_bridge.api.resolver import make_resolver, resolve
from crm_bridge.api.responses import json_response
from crm_bridge.api.schemas import INVALID_REQUEST, Health, answer, error
from crm_bridge.api.settings import get_api_settings
from crm_bridge.observability import get_logger

settings = get_api_settings()
app = make_resolver(settings)
logger = get_logger()


@app.get(
    "/api/v1/crm/test",
    summary="CRM health check",
    description="Provider, reachability, round-trip time and the mapped fields the CRM lacks. No secrets, "
    "no CRM error text.",
    responses={
        200: answer("Healthy", Health),
        503: answer("Unreachable, misconfigured or degraded", Health),
        422: INVALID_REQUEST,
        500: error("Something went wrong on our side"),
    },
    tags=["operations"],
)
def crm_test() -> Response[str]:
    answer = health_answer()
    return json_response(answer["status"], answer["body"], headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context, settings)
