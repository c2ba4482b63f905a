"""Settings of the resolver-based API functions (the redirect checks its own: ``crm_bridge.api.redirects``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crm_bridge.settings import validate_environment


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    queue_url: str = Field(min_length=1)
    dead_letter_queue_url: str = Field(min_length=1)
    sync_budget_ms: int = Field(default=3000, ge=100, le=25_000)
    site_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=32_768, ge=1024, le=1_048_576)
    idempotency_table: str | None = None
    sessions_table: str | None = None
    consent_required: bool = True
    """Applications must carry the applicant's acceptance of the privacy notice (KVKK, GDPR); false
    for forms that collect consent elsewhere."""
    health_cache_seconds: int = Field(default=60, ge=1, le=3600)
    """How long one container reuses the CRM's health answer: a storm of health checks costs the CRM
    (Bitrix24 allows about 2 requests/s per webhook) one call per this many seconds."""


_ENV_NAMES: dict[tuple[str, ...], str] = {
    ("queue_url",): "CRM_QUEUE_URL",
    ("dead_letter_queue_url",): "CRM_DLQ_URL",
    ("sync_budget_ms",): "CRM_SYNC_BUDGET_MS",
    ("site_origins",): "SITE_ORIGINS",
    ("max_body_bytes",): "MAX_BODY_BYTES",
    ("idempotency_table",): "IDEMPOTENCY_TABLE",
    ("sessions_table",): "SESSIONS_TABLE",
    ("health_cache_seconds",): "HEALTH_CACHE_SECONDS",
    ("consent_required",): "CONSENT_REQUIRED",
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
        "health_cache_seconds": env.get("HEALTH_CACHE_SECONDS") or 60,
        "consent_required": env.get("CONSENT_REQUIRED") or True,
    }
    return validate_environment(ApiSettings, raw, _ENV_NAMES)


@cache
def get_api_settings() -> ApiSettings:
    return load_api_settings()
