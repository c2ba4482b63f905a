"""Settings of the HTTP API functions, validated once per container like the CRM settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from crm_bridge.errors import SettingsError
from crm_bridge.settings import validate_environment

DEFAULT_WHATSAPP_TEXT = "Hello! I would like to know more about studying abroad."
DEFAULT_WHATSAPP_REF_SUFFIX = " My code: {ref}"


def _https(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError("must be an https:// URL")
    return url


HttpsUrl = Annotated[HttpUrl, AfterValidator(_https)]


class RedirectTargets(BaseModel):
    """Where the /go/{channel} links lead. Only configuration decides the host: no open redirect."""

    model_config = ConfigDict(frozen=True)

    telegram_url: HttpsUrl = Field(description="Telegram bot link; the referral code goes in ?start=")
    whatsapp_number: str = Field(pattern=r"^[1-9]\d{6,14}$", description="Digits only, with country code")
    whatsapp_text: str = Field(min_length=1, max_length=500, description="Prefilled message")
    whatsapp_ref_suffix: str = Field(
        max_length=100, pattern=r"\{ref\}", description="Appended when there is a referral code; {ref} is the code"
    )
    instagram_url: HttpsUrl


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    queue_url: str = Field(min_length=1)
    dead_letter_queue_url: str = Field(min_length=1)
    sync_budget_ms: int = Field(default=3000, ge=100, le=25_000)
    site_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)
    idempotency_table: str | None = None
    sessions_table: str | None = None
    redirects: RedirectTargets | None = None


_ENV_NAMES = {
    ("queue_url",): "CRM_QUEUE_URL",
    ("dead_letter_queue_url",): "CRM_DLQ_URL",
    ("sync_budget_ms",): "CRM_SYNC_BUDGET_MS",
    ("site_origins",): "SITE_ORIGINS",
    ("max_body_bytes",): "MAX_BODY_BYTES",
    ("idempotency_table",): "IDEMPOTENCY_TABLE",
    ("sessions_table",): "SESSIONS_TABLE",
    ("redirects", "telegram_url"): "REDIRECT_TELEGRAM_URL",
    ("redirects", "whatsapp_number"): "REDIRECT_WHATSAPP_NUMBER",
    ("redirects", "whatsapp_text"): "REDIRECT_WHATSAPP_TEXT",
    ("redirects", "whatsapp_ref_suffix"): "REDIRECT_WHATSAPP_REF_SUFFIX",
    ("redirects", "instagram_url"): "REDIRECT_INSTAGRAM_URL",
}


def load_api_settings(environ: Mapping[str, str] | None = None) -> ApiSettings:
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {
        "queue_url": env.get("CRM_QUEUE_URL", ""),
        "dead_letter_queue_url": env.get("CRM_DLQ_URL", ""),
        "sync_budget_ms": env.get("CRM_SYNC_BUDGET_MS") or 3000,
        "site_origins": tuple(origin.strip() for origin in env.get("SITE_ORIGINS", "").split(",") if origin.strip()),
        "max_body_bytes": env.get("MAX_BODY_BYTES") or 32_768,
        "idempotency_table": env.get("IDEMPOTENCY_TABLE") or None,
        "sessions_table": env.get("SESSIONS_TABLE") or None,
    }
    if any(env.get(name) for name in ("REDIRECT_TELEGRAM_URL", "REDIRECT_WHATSAPP_NUMBER", "REDIRECT_INSTAGRAM_URL")):
        raw["redirects"] = {
            "telegram_url": env.get("REDIRECT_TELEGRAM_URL", ""),
            "whatsapp_number": env.get("REDIRECT_WHATSAPP_NUMBER", ""),
            "whatsapp_text": env.get("REDIRECT_WHATSAPP_TEXT") or DEFAULT_WHATSAPP_TEXT,
            "whatsapp_ref_suffix": env.get("REDIRECT_WHATSAPP_REF_SUFFIX") or DEFAULT_WHATSAPP_REF_SUFFIX,
            "instagram_url": env.get("REDIRECT_INSTAGRAM_URL", ""),
        }
    return validate_environment(ApiSettings, raw, _ENV_NAMES)


@cache
def get_api_settings() -> ApiSettings:
    return load_api_settings()


def require_redirect_targets(settings: ApiSettings) -> RedirectTargets:
    """The redirect function cannot start without its targets."""
    if settings.redirects is None:
        raise SettingsError(
            "invalid configuration: REDIRECT_TELEGRAM_URL, REDIRECT_WHATSAPP_NUMBER and REDIRECT_INSTAGRAM_URL are not set"
        )
    return settings.redirects
