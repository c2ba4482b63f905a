"""GET /go/{channel}: send the visitor to Telegram, WhatsApp or Instagram, and note the click.

The visitor comes first: the answer is a 302 that never waits on the CRM, and even when the
click cannot be queued the redirect happens (the click is sealed into the log for recovery).
Answered without a resolver or pydantic: nearly every redirect is a cold start, and those two
would make it half as slow again (docs/performance.md). docs/openapi.json documents the route.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crm_bridge.api.endpoint import serve
from crm_bridge.api.http import HttpRequest, answer
from crm_bridge.api.redirects import load_redirect_settings, plan_redirect
from crm_bridge.delivery.dual_write import shadowed
from crm_bridge.delivery.queue import OperationQueue
from crm_bridge.delivery.recovery import DeliveryUnavailable, queue_or_seal
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import clicks_ignored, count, get_metrics

settings = load_redirect_settings()
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
logger = get_logger()
metrics = get_metrics()


def go(request: HttpRequest) -> dict[str, Any]:
    redirect = plan_redirect(request, settings)
    click = redirect.click
    if click is None:
        clicks_ignored(redirect.not_a_person or "unknown")
        logger.info("click not recorded: not a person", extra={"reason": redirect.not_a_person})
    else:
        try:
            with shadowed(click, queue) as message:
                queue_or_seal(message, lambda: queue.send(message))
        except DeliveryUnavailable:
            count("RedirectClickNotQueued")  # sealed into the log; the visitor still goes on
        else:
            count("OperationsQueued")
    headers = {"Location": redirect.location, "Cache-Control": "no-store"}
    return answer(302, headers=headers, cookies=[str(cookie) for cookie in redirect.cookies])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return serve(event, go)
