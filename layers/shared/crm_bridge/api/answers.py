"""What the website is told about a submission: that the CRM has it, or that it is safely queued.

Never which lead it became, nor whether it was new: an answer that differed by who applied before
would tell anyone with a phone number or an e-mail address whether that person is a client, and a
lead id would let them write onto that person's lead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_bridge.delivery.submission import Submission, SubmissionStatus
from crm_bridge.observability.metrics import count, delivered, outcome

if TYPE_CHECKING:  # Powertools idempotency (and boto3 with it) only where submissions use it
    from crm_bridge.api.idempotency import Answer


def submission_answer(submission: Submission) -> Answer:
    """201 when the CRM has it; 202 when the queue (or the dead-letter queue) does.

    A dead-lettered operation is "queued" for the website too: it is kept, and an operator will
    redrive it once the CRM accepts it; the website has nothing to do differently.
    """
    operation_id = str(submission.operation.operation_id)
    result = submission.result
    if submission.status is SubmissionStatus.DELIVERED and result is not None:
        delivered(result.provider, result.action, result.elapsed_ms)
        return {"status": 201, "body": {"status": "received", "operationId": operation_id}}
    if submission.status is SubmissionStatus.DEAD_LETTERED and submission.error is not None:
        outcome("OperationsDeadLettered", submission.error.provider)
    else:
        count("OperationsQueued")
    return {"status": 202, "body": {"status": "queued", "operationId": operation_id}}
