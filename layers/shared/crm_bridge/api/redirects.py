"""Partner and messenger redirects: where ``/go/{channel}`` leads, and what it remembers.

The target host comes only from configuration; the request contributes at most a validated
referral code, placed in a query parameter. Tags from the query that fail validation are dropped
rather than refused: the visitor is redirected whatever the link looked like.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from pydantic import ValidationError

from crm_bridge.api.settings import RedirectTargets
from crm_bridge.models import Attribution, Channel

REF_COOKIE = "ref"
SESSION_COOKIE = "visitor_session"
REF_COOKIE_MAX_AGE = 30 * 24 * 3600
SESSION_COOKIE_MAX_AGE = 365 * 24 * 3600


def target_url(channel: Channel, referral_code: str | None, targets: RedirectTargets) -> str:
    match channel:
        case Channel.TELEGRAM:
            base = str(targets.telegram_url)
            return f"{base}?{urlencode({'start': referral_code})}" if referral_code else base
        case Channel.WHATSAPP:
            text = targets.whatsapp_text
            if referral_code:
                text += targets.whatsapp_ref_suffix.replace("{ref}", referral_code)
            return f"https://wa.me/{targets.whatsapp_number}?{urlencode({'text': text})}"
        case Channel.INSTAGRAM:
            return str(targets.instagram_url)


def lenient_attribution(values: Mapping[str, str | None]) -> Attribution:
    """Every tag that validates on its own; the others are dropped."""
    kept: dict[str, str] = {}
    for name in Attribution.model_fields:
        value = values.get(name)
        if not value:
            continue
        try:
            Attribution.model_validate({name: value})
        except ValidationError:
            continue
        kept[name] = value
    return Attribution.model_validate(kept)


def ref_cookie(referral_code: str) -> Cookie:
    return _cookie(REF_COOKIE, referral_code, REF_COOKIE_MAX_AGE, http_only=True)


def session_cookie(session_id: str) -> Cookie:
    """Readable by the site's script, which reports messenger clicks with the same session id."""
    return _cookie(SESSION_COOKIE, session_id, SESSION_COOKIE_MAX_AGE, http_only=False)


def _cookie(name: str, value: str, max_age: int, *, http_only: bool) -> Cookie:
    """Site-wide, HTTPS-only, sent on top-level navigation from other sites (a partner's link)."""
    return Cookie(
        name=name,
        value=value,
        path="/",
        secure=True,
        http_only=http_only,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )
