"""POST /api/v1/messenger-events: a click on a "message us" button, queued for the worker at once.

Validated by the layer's pydantic model and answered without a resolver: nearly every click is a
cold start, and the event handler's import would add half the cost of the SQS send itself
(docs/performance.md). docs/openapi.json documents the route.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.answers import submission_answer
from crm_bridge.api.endpoint import serve
from crm_bridge.api.http import HttpRequest, answer
from crm_bridge.api.keys import operation_id_for
from crm_bridge.api.settings import get_api_settings
from crm_bridge.api.validation import refuse_foreign_origin, validated_body
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.submission import enqueue
from crm_bridge.models import MessengerActivity, MessengerClickOperation, MessengerEvent, Origin
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics

settings = get_api_settings()
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
logger = get_logger()
metrics = get_metrics()


def post_messenger_event(request: HttpRequest) -> dict[str, Any]:
    refuse_foreign_origin(request, settings.site_origins)
    event = validated_body(request, MessengerEvent, settings.max_body_bytes)
    idempotency_key = request.idempotency_key()
    operation = MessengerClickOperation(
        operation_id=operation_id_for(idempotency_key),
        origin=Origin.MESSENGER_API,
        correlation_id=request.request_id,
        payload=MessengerActivity.model_validate(dict(event)),
    )
    result = submission_answer(enqueue(operation, queue))
    return answer(result["status"], result["body"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return serve(event, post_messenger_event)
