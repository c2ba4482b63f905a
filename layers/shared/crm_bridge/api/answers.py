"""What the website is told about a submission: the lead it became, or that it is safely queued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_bridge.delivery.submission import Submission, SubmissionStatus
from crm_bridge.observability.metrics import count, delivered, outcome

if TYPE_CHECKING:  # Powertools idempotency (and boto3 with it) only where submissions use it
    from crm_bridge.api.idempotency import Answer


def submission_answer(submission: Submission) -> Answer:
    """201 with the lead when the CRM has it; 202 when the queue (or the dead-letter queue) does.

    A dead-lettered operation is "queued" for the website too: it is kept, and an operator will
    redrive it once the CRM accepts it; the website has nothing to do differently.
    """
    operation_id = str(submission.operation.operation_id)
    result = submission.result
    if submission.status is SubmissionStatus.DELIVERED and result is not None:
        from crm_bridge.providers import LeadAction  # only a function that delivers has the providers loaded

        delivered(result.provider, result.action, result.elapsed_ms)
        status = "created" if result.action is LeadAction.CREATED else "updated"
        body = {"status": status, "leadId": result.record_id, "provider": result.provider, "operationId": operation_id}
        return {"status": 201, "body": body}
    if submission.status is SubmissionStatus.DEAD_LETTERED and submission.error is not None:
        outcome("OperationsDeadLettered", submission.error.provider)
    else:
        count("OperationsQueued")
    return {"status": 202, "body": {"status": "queued", "operationId": operation_id}}
