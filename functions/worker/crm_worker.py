"""SQS -> CRM: the retry worker. Batches of operations go to the shared layer's Worker."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.worker import get_worker

worker = get_worker()  # a misconfigured worker refuses to start, naming the bad setting
logger = get_logger()
metrics = get_metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return worker.handle(event, context)
