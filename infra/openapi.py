"""Generate docs/openapi.json from the API functions' own routes and models (never by hand).

    python -m infra.openapi            # rewrite docs/openapi.json
    python -m infra.openapi --check    # exit 1 when the committed document is stale

Each function has its own resolver; Powertools' OpenAPIMerge loads every ``functions/*/*_api.py``
that has one and merges their schemas. Importing a handler reads its settings, so placeholder
values are set for the duration (nothing is called). The functions on a visitor's path
(applications, messenger events, the redirect) answer without a resolver (their cold starts:
docs/performance.md), so their routes are declared here, for the document only, with the models
and parameters their handlers read (tests/api/test_openapi.py checks the redirect's, which has no
model).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated
from unittest import mock

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from crm_bridge.api.schemas import COMMON_ERRORS, IdempotencyKey, Queued, Received, answer, error, redirect
from crm_bridge.models import Application, MessengerEvent

ROOT = Path(__file__).parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"
_PLACEHOLDER_SETTINGS = {
    "CRM_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/crm-operations",
    "CRM_DLQ_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/crm-operations-dlq",
    "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
    "REDIRECT_WHATSAPP_NUMBER": "905321112233",
    "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
    "AWS_DEFAULT_REGION": "eu-central-1",
}


RedirectTag = Annotated[str | None, Query(description="Carried along when valid, dropped otherwise")]


def redirect_documentation() -> APIGatewayHttpResolver:
    """``GET /go/{channel}`` as the redirect function answers it (tests/api/test_openapi.py checks
    that the handler reads exactly these parameters)."""
    documented = APIGatewayHttpResolver()

    @documented.get(
        "/go/<channel>",
        summary="Redirect to a messenger",
        description="302 to the configured Telegram, WhatsApp or Instagram link, carrying the partner's referral "
        "code (from ?ref= or the ref cookie); records the click for the CRM. `vs` is the visitor session, "
        "added by the website snippet where the API cannot read the site's visitor_session cookie; it counts only "
        "for a click from one of the site's pages (its Referer) and is never stored.",
        responses={
            302: redirect("Redirect to the messenger (Location header)"),
            404: error("Unknown channel"),
            500: error("Something went wrong on our side"),
        },
        tags=["redirects"],
    )
    def go(
        channel: str,
        *,
        ref: RedirectTag = None,
        utm_source: RedirectTag = None,
        utm_medium: RedirectTag = None,
        utm_campaign: RedirectTag = None,
        utm_term: RedirectTag = None,
        utm_content: RedirectTag = None,
        utm_id: RedirectTag = None,
        gclid: RedirectTag = None,
        gbraid: RedirectTag = None,
        wbraid: RedirectTag = None,
        fbclid: RedirectTag = None,
        ttclid: RedirectTag = None,
        msclkid: RedirectTag = None,
        yclid: RedirectTag = None,
        ctwa_clid: RedirectTag = None,
        vs: RedirectTag = None,
    ) -> Response[str]:
        raise NotImplementedError("documentation only: functions/redirect/redirect_api.py answers this route")

    return documented


def messenger_events_documentation() -> APIGatewayHttpResolver:
    """``POST /api/v1/messenger-events`` as functions/messenger_events answers it."""
    documented = APIGatewayHttpResolver(enable_validation=True)

    @documented.post(
        "/api/v1/messenger-events",
        summary="Report a click on a messenger button",
        description="Queues an activity for the visitor's lead (or one minimal lead per anonymous visitor session). "
        "Send an Idempotency-Key to make a retry (after a 503) the same click.",
        responses={
            202: answer("Queued", Queued),
            403: error("A page of another site (Origin not among SITE_ORIGINS)"),
            **COMMON_ERRORS,
        },
        tags=["messenger"],
    )
    def post_messenger_event(
        activity: Annotated[MessengerEvent, Body()], idempotency_key: IdempotencyKey = None
    ) -> Response[str]:
        raise NotImplementedError("documentation only: functions/messenger_events answers this route")

    return documented


def applications_documentation() -> APIGatewayHttpResolver:
    """``POST /api/v1/applications`` as functions/applications answers it."""
    documented = APIGatewayHttpResolver(enable_validation=True)

    @documented.post(
        "/api/v1/applications",
        summary="Submit an application form",
        description="Creates or updates the applicant's lead in the CRM within a time budget, "
        "otherwise queues it for delivery. Send an Idempotency-Key to make retries safe.",
        responses={
            201: answer("In the CRM (the same answer for a new applicant and one who applied before)", Received),
            202: answer("Kept safely and delivered later", Queued),
            409: error("The same Idempotency-Key is being processed right now"),
            **COMMON_ERRORS,
            503: error("Could not be accepted now; retry with the same Idempotency-Key"),
        },
        tags=["applications"],
    )
    def post_application(
        application: Annotated[Application, Body()], idempotency_key: IdempotencyKey = None
    ) -> Response[str]:
        raise NotImplementedError("documentation only: functions/applications answers this route")

    return documented


def generate() -> str:
    merge = OpenAPIMerge(
        title="crm-bridge API",
        version="1.0.0",
        description="Website applications, messenger clicks and partner redirects into EspoCRM or Bitrix24.",
    )
    with mock.patch.dict(os.environ, _PLACEHOLDER_SETTINGS):
        for handler in sorted((ROOT / "functions").glob("*/*_api.py")):
            if "make_resolver(" in handler.read_text(encoding="utf-8"):
                merge.add_file(handler, resolver_name="app")
        for documented in (applications_documentation(), redirect_documentation(), messenger_events_documentation()):
            merge.add_schema(documented.get_openapi_schema().model_dump(by_alias=True, exclude_none=True))
        schema = json.loads(merge.get_openapi_json_schema())
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    document = generate()
    if "--check" in sys.argv[1:]:
        if not DOCUMENT.exists() or DOCUMENT.read_text(encoding="utf-8") != document:
            print(f"{DOCUMENT.relative_to(ROOT)} is stale: run python -m infra.openapi", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(document, encoding="utf-8")
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
