"""POST /api/v1/applications: an application form, into the CRM now or safely queued.

Validated by the layer's pydantic model and answered without a resolver: the event handler's
import would be a fifth of a cold start that an applicant waits through (docs/performance.md).
docs/openapi.json documents the route.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.answers import submission_answer
from crm_bridge.api.endpoint import serve
from crm_bridge.api.http import HttpProblem, HttpRequest, answer
from crm_bridge.api.idempotency import Answer, IdempotentSubmissions, operation_id_for
from crm_bridge.api.settings import get_api_settings
from crm_bridge.api.validation import refuse_without_consent, validated_body
from crm_bridge.delivery.overlap import application_ahead
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.sessions import DynamoDbVisitorSessions
from crm_bridge.delivery.submit import deliver_or_queue
from crm_bridge.models import Application, Origin, UpsertLeadOperation
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.providers import get_provider

settings = get_api_settings()
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
submissions = IdempotentSubmissions(settings.idempotency_table)
sessions = DynamoDbVisitorSessions.from_environment() if settings.sessions_table else None
logger = get_logger()
metrics = get_metrics()


def post_application(request: HttpRequest) -> dict[str, Any]:
    application = validated_body(request, Application, settings.max_body_bytes)
    if settings.consent_required:
        refuse_without_consent(application)
    idempotency_key = request.idempotency_key()
    operation = UpsertLeadOperation(
        operation_id=operation_id_for(idempotency_key),
        origin=Origin.APPLICATIONS_API,
        correlation_id=request.request_id,
        payload=application,
    )
    budget_seconds = settings.sync_budget_ms / 1000
    # The lead search goes out while the idempotency record is claimed, and the visitor session is
    # written while the answer is stored: crm_bridge/delivery/overlap.py says why that is safe.
    with application_ahead(
        get_provider, application, operation.operation_id, budget_seconds=budget_seconds, sessions=sessions
    ) as ahead:

        def submit() -> Answer:
            with ahead.claimed(budget_seconds) as budget_left:
                return submission_answer(
                    deliver_or_queue(
                        operation,
                        provider=get_provider,
                        queue=queue,
                        budget_seconds=budget_left,
                        sessions=ahead.sessions,
                    )
                )

        try:
            result = submissions.run(idempotency_key, application.model_dump(mode="json"), submit)
        except IdempotencyValidationError:
            raise HttpProblem(
                422, "idempotency_key_reused", "this Idempotency-Key was used for a different application"
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise HttpProblem(409, "in_progress", "this application is being processed; retry shortly") from None
    return answer(result["status"], result["body"])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    submissions.register_lambda_context(context)
    return serve(event, post_application)
