"""POST /api/v1/messenger-events: a click on a "message us" button, queued for the worker at once."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.answers import submission_answer
from crm_bridge.api.keys import IdempotencyKey, operation_id_for
from crm_bridge.api.resolver import make_resolver, resolve
from crm_bridge.api.responses import json_response
from crm_bridge.api.schemas import COMMON_ERRORS, Queued, answer
from crm_bridge.api.settings import get_api_settings
from crm_bridge.delivery import OperationQueue, enqueue
from crm_bridge.models import MessengerActivity, MessengerClickOperation, Origin
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics

settings = get_api_settings()
app = make_resolver(settings)
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
logger = get_logger()
metrics = get_metrics()


@app.post(
    "/api/v1/messenger-events",
    summary="Report a click on a messenger button",
    description="Queues an activity for the visitor's lead (or one minimal lead per anonymous visitor session). "
    "Send an Idempotency-Key to make a retry (after a 503) the same click.",
    responses={202: answer("Queued", Queued), **COMMON_ERRORS},
    tags=["messenger"],
)
def post_messenger_event(
    activity: Annotated[MessengerActivity, Body()], idempotency_key: IdempotencyKey = None
) -> Response[str]:
    operation = MessengerClickOperation(
        operation_id=operation_id_for(idempotency_key),
        origin=Origin.MESSENGER_API,
        correlation_id=app.current_event.request_context.request_id,
        payload=activity,
    )
    answer = submission_answer(enqueue(operation, queue))
    return json_response(answer["status"], answer["body"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context, settings)
