"""A request body read into one of the layer's models: the JSON guards, then pydantic.

Apart from ``crm_bridge.api.http`` because it loads pydantic, which the redirect never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from crm_bridge.api.http import REF_COOKIE, SESSION_COOKIE, HttpProblem, HttpRequest, invalid_fields
from crm_bridge.models import Application
from crm_bridge.normalization import SESSION_ID_PATTERN, valid_attribution_tags


def validated_body[M: BaseModel](request: HttpRequest, model: type[M], max_body_bytes: int) -> M:
    """The body as ``model`` (what it lacks of the visitor's session and partner code read from the
    cookies: :func:`with_visitor_cookies`), or the HttpProblem that refuses it (400, 413, 415, or
    422 by field)."""
    body = with_visitor_cookies(request.json_body(max_body_bytes), request.cookies)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise invalid_fields(error.errors(include_input=False)) from None


def with_visitor_cookies(body: object, cookies: Mapping[str, str]) -> object:
    """The body with the visitor session and the partner code taken from the cookies (the ones /go
    and the site's snippet set) where the body lacks them: a site that posts with
    ``credentials: "include"`` from the cookies' domain need not copy them itself. A cookie that is
    not valid is ignored, never refused: the visitor did not type it."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    session = cookies.get(SESSION_COOKIE, "")
    if not body.get("session_id") and SESSION_ID_PATTERN.fullmatch(session):
        body["session_id"] = session
    referral_code = valid_attribution_tags({"referral_code": cookies.get(REF_COOKIE)}).get("referral_code")
    touches = [body.get(name) for name in ("first_touch", "last_touch", "attribution")]
    if referral_code is None or any(isinstance(touch, dict) and touch.get("referral_code") for touch in touches):
        return body
    key = (
        "attribution" if isinstance(body.get("attribution"), dict) and body.get("last_touch") is None else "last_touch"
    )
    touch = body.get(key)
    if touch is None:
        body[key] = {"referral_code": referral_code}
    elif isinstance(touch, dict):
        body[key] = touch | {"referral_code": referral_code}
    return body


def refuse_without_consent(application: Application) -> None:
    """422 naming ``consent`` when the applicant did not accept the privacy notice, for sites whose
    form is where consent is collected (``CONSENT_REQUIRED``)."""
    if not application.consent:
        raise invalid_fields([{"loc": ("consent",), "msg": "the privacy notice must be accepted (send consent true)"}])


def refuse_foreign_origin(request: HttpRequest, site_origins: tuple[str, ...]) -> None:
    """403 for a browser's request from a page of another site: a browser names the page's origin
    (``Origin``), which scripts on other sites cannot change. The site's own origins
    (``SITE_ORIGINS``) and the API's own host (a same-origin page) pass; no ``Origin``, no browser."""
    origin = request.headers.get("origin")
    if origin is None or origin in site_origins:
        return
    host = request.headers.get("host")
    if host and urlsplit(origin).netloc == host:
        return
    raise HttpProblem(403, "origin_not_allowed", "this site may not report clicks here (SITE_ORIGINS)")
