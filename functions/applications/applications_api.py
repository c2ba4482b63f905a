"""POST /api/v1/applications: an application form, into the CRM now or safely queued."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.answers import submission_answer
from crm_bridge.api.idempotency import Answer, IdempotentSubmissions, operation_id_for
from crm_bridge.api.resolver import make_resolver, resolve
from crm_bridge.api.responses import error_response, json_response
from crm_bridge.api.schemas import COMMON_ERRORS, Delivered, IdempotencyKey, Queued, answer, error
from crm_bridge.api.settings import get_api_settings
from crm_bridge.delivery import OperationQueue, deliver_or_queue
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.models import Application, Origin, UpsertLeadOperation
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.providers import get_provider

settings = get_api_settings()
app = make_resolver(settings)
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
submissions = IdempotentSubmissions(settings.idempotency_table)
sessions = DynamoDbVisitorSessions.from_environment() if settings.sessions_table else None
logger = get_logger()
metrics = get_metrics()

_RESPONSES: dict[int, OpenAPIResponse] = {
    201: answer("In the CRM", Delivered),
    202: answer("Kept safely and delivered later", Queued),
    409: error("The same Idempotency-Key is being processed right now"),
    **COMMON_ERRORS,
    503: error("Could not be accepted now; retry with the same Idempotency-Key"),
}


@app.post(
    "/api/v1/applications",
    summary="Submit an application form",
    description="Creates or updates the applicant's lead in the CRM within a time budget, "
    "otherwise queues it for delivery. Send an Idempotency-Key to make retries safe.",
    responses=_RESPONSES,
    tags=["applications"],
)
def post_application(
    application: Annotated[Application, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[str]:
    def submit() -> Answer:
        operation = UpsertLeadOperation(
            operation_id=operation_id_for(idempotency_key),
            origin=Origin.APPLICATIONS_API,
            correlation_id=app.current_event.request_context.request_id,
            payload=application,
        )
        budget_seconds = settings.sync_budget_ms / 1000
        return submission_answer(
            deliver_or_queue(
                operation, provider=get_provider, queue=queue, budget_seconds=budget_seconds, sessions=sessions
            )
        )

    try:
        answer = submissions.run(idempotency_key, application.model_dump(mode="json"), submit)
    except IdempotencyValidationError:
        return error_response(
            422, "idempotency_key_reused", "this Idempotency-Key was used for a different application"
        )
    except IdempotencyAlreadyInProgressError:
        return error_response(409, "in_progress", "this application is being processed; retry shortly")
    return json_response(answer["status"], answer["body"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    submissions.register_lambda_context(context)
    return resolve(app, event, context, settings)
