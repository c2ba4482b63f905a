"""GET /go/{channel}: send the visitor to Telegram, WhatsApp or Instagram, and note the click.

The visitor comes first: the answer is a 302 that never waits on the CRM, and even when the
click cannot be queued the redirect happens (the click is sealed into the log for recovery).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from crm_bridge.api.redirects import (
    REF_COOKIE,
    SESSION_COOKIE,
    lenient_attribution,
    ref_cookie,
    session_cookie,
    target_url,
)
from crm_bridge.api.resolver import make_resolver, resolve
from crm_bridge.api.responses import error_response
from crm_bridge.api.schemas import INVALID_REQUEST, error, redirect
from crm_bridge.api.settings import get_api_settings, require_redirect_targets
from crm_bridge.delivery import DeliveryUnavailable, OperationQueue, enqueue
from crm_bridge.models import Channel, MessengerActivity, MessengerClickOperation, Origin
from crm_bridge.models.messenger import SESSION_ID_PATTERN
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import count, get_metrics

settings = get_api_settings()
targets = require_redirect_targets(settings)
app = make_resolver(settings)
queue = OperationQueue(settings.queue_url, settings.dead_letter_queue_url)
logger = get_logger()
metrics = get_metrics()

OptionalTag = Annotated[str | None, Query(description="Carried along when valid, dropped otherwise")]


@app.get(
    "/go/<channel>",
    summary="Redirect to a messenger",
    description="302 to the configured Telegram, WhatsApp or Instagram link, carrying the partner's referral "
    "code (from ?ref= or the ref cookie); records the click for the CRM.",
    responses={
        302: redirect("Redirect to the messenger (Location header)"),
        404: error("Unknown channel"),
        422: INVALID_REQUEST,
        500: error("Something went wrong on our side"),
    },
    tags=["redirects"],
)
def go(
    channel: str,
    *,
    ref: OptionalTag = None,
    utm_source: OptionalTag = None,
    utm_medium: OptionalTag = None,
    utm_campaign: OptionalTag = None,
    utm_term: OptionalTag = None,
    utm_content: OptionalTag = None,
    utm_id: OptionalTag = None,
    gclid: OptionalTag = None,
    fbclid: OptionalTag = None,
) -> Response[str]:
    if channel not in set(Channel):
        return error_response(404, "not_found", "unknown channel; use telegram, whatsapp or instagram")
    cookies = _request_cookies()
    from_query = lenient_attribution({"referral_code": ref}).referral_code
    referral_code = from_query or lenient_attribution({"referral_code": cookies.get(REF_COOKIE)}).referral_code
    attribution = lenient_attribution(
        {
            "referral_code": referral_code,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
            "utm_term": utm_term,
            "utm_content": utm_content,
            "utm_id": utm_id,
            "gclid": gclid,
            "fbclid": fbclid,
        }
    )
    session_id = cookies.get(SESSION_COOKIE, "")
    new_session = not SESSION_ID_PATTERN.fullmatch(session_id)
    if new_session:
        session_id = secrets.token_urlsafe(16)
    _record_click(Channel(channel), session_id, attribution)

    set_cookies = ([ref_cookie(from_query)] if from_query else []) + (
        [session_cookie(session_id)] if new_session else []
    )
    return Response(
        status_code=302,
        body="",
        headers={"Location": target_url(Channel(channel), referral_code, targets), "Cache-Control": "no-store"},
        cookies=set_cookies,
    )


def _request_cookies() -> dict[str, str]:
    cookies: dict[str, str] = {}
    for cookie in app.current_event.cookies or []:
        name, _, value = cookie.strip().partition("=")
        cookies.setdefault(name, value)
    return cookies


def _referring_page() -> str | None:
    """The page the link was on, without its query (which may carry personal data)."""
    referer = app.current_event.headers.get("referer") or ""
    path = urlsplit(referer).path if referer.startswith(("http://", "https://")) else ""
    return path[:2048] or None


def _record_click(channel: Channel, session_id: str, attribution: Any) -> None:
    try:
        activity = MessengerActivity(
            channel=channel, session_id=session_id, page=_referring_page(), attribution=attribution
        )
    except ValidationError:
        activity = MessengerActivity(channel=channel, session_id=session_id, attribution=attribution)
    operation = MessengerClickOperation(
        origin=Origin.REDIRECT, correlation_id=app.current_event.request_context.request_id, payload=activity
    )
    try:
        enqueue(operation, queue)
    except DeliveryUnavailable:
        count("RedirectClickNotQueued")  # sealed into the log by enqueue(); the visitor still goes on
    else:
        count("OperationsQueued")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context, settings)
