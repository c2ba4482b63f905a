"""GET /go/{channel}: send the visitor to Telegram, WhatsApp or Instagram, and note the click.

The visitor comes first: the answer is a 302 that never waits on the CRM, and even when the
click cannot be queued the redirect happens (the click is sealed into the log for recovery).
One route, answered without a resolver or pydantic: nearly every redirect is a cold start, and
those two would make it half as slow again (docs/performance.md). docs/openapi.json documents it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.problems import error_document, json_text
from crm_bridge.api.redirects import RedirectRequest, load_redirect_settings, plan_redirect
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.recovery import DeliveryUnavailable, queue_or_seal
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import count, get_metrics

settings = load_redirect_settings()
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
logger = get_logger()
metrics = get_metrics()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        redirect = plan_redirect(RedirectRequest.from_event(event), settings.targets)
        if redirect is None:
            return _error(404, "not_found", "unknown channel; use telegram, whatsapp or instagram")
        try:
            queue_or_seal(redirect.click, lambda: queue.send(redirect.click))
        except DeliveryUnavailable:
            count("RedirectClickNotQueued")  # sealed into the log; the visitor still goes on
        else:
            count("OperationsQueued")
    except Exception as error:
        logger.exception("unhandled error", extra={"error_type": type(error).__name__})
        return _error(500, "internal_error", "something went wrong on our side")
    return {
        "statusCode": 302,
        "headers": {"Location": redirect.location, "Cache-Control": "no-store"},
        "cookies": [str(cookie) for cookie in redirect.cookies],
        "body": "",
        "isBase64Encoded": False,
    }


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json_text(error_document(code, message)),
        "isBase64Encoded": False,
    }
