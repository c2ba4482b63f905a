"""Settings of the retry worker, validated once per container like the CRM settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.delivery.once import DEFAULT_EXPIRY_SECONDS
from crm_bridge.delivery.sessions import DEFAULT_SESSION_TTL_DAYS
from crm_bridge.settings import validate_environment


class WorkerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    queue_url: str = Field(min_length=1)
    dead_letter_queue_url: str = Field(min_length=1)
    idempotency_table: str = Field(min_length=1)
    idempotency_expiry_seconds: int = Field(default=DEFAULT_EXPIRY_SECONDS, ge=3600)
    sessions_table: str = Field(min_length=1)
    session_ttl_days: int = Field(default=DEFAULT_SESSION_TTL_DAYS, ge=1, le=3650)
    retry: RetrySchedule = RetrySchedule()

    @model_validator(mode="after")
    def _idempotency_outlives_the_retries(self) -> WorkerSettings:
        span = self.retry.maximum_span_seconds()
        if self.idempotency_expiry_seconds <= span:
            raise ValueError(
                f"IDEMPOTENCY_EXPIRY_SECONDS must be longer than the retries last ({span:.0f} s): "
                "a late retry of a delivered operation would write to the CRM again"
            )
        return self


_RETRY_ENV_NAMES = {
    "first_delay_seconds": "RETRY_FIRST_DELAY_SECONDS",
    "multiplier": "RETRY_MULTIPLIER",
    "max_delay_seconds": "RETRY_MAX_DELAY_SECONDS",
    "jitter": "RETRY_JITTER",
    "max_receives": "RETRY_MAX_RECEIVES",
}
_ENV_NAMES: dict[tuple[str, ...], str] = {
    ("queue_url",): "CRM_QUEUE_URL",
    ("dead_letter_queue_url",): "CRM_DLQ_URL",
    ("idempotency_table",): "IDEMPOTENCY_TABLE",
    ("idempotency_expiry_seconds",): "IDEMPOTENCY_EXPIRY_SECONDS",
    ("sessions_table",): "SESSIONS_TABLE",
    ("session_ttl_days",): "SESSION_TTL_DAYS",
    ("retry",): "RETRY_*",
} | {("retry", field): name for field, name in _RETRY_ENV_NAMES.items()}


def load_worker_settings(environ: Mapping[str, str] | None = None) -> WorkerSettings:
    env = os.environ if environ is None else environ
    retry = {field: env[name] for field, name in _RETRY_ENV_NAMES.items() if env.get(name)}
    raw: dict[str, Any] = {
        "queue_url": env.get("CRM_QUEUE_URL", ""),
        "dead_letter_queue_url": env.get("CRM_DLQ_URL", ""),
        "idempotency_table": env.get("IDEMPOTENCY_TABLE", ""),
        "idempotency_expiry_seconds": env.get("IDEMPOTENCY_EXPIRY_SECONDS") or DEFAULT_EXPIRY_SECONDS,
        "sessions_table": env.get("SESSIONS_TABLE", ""),
        "session_ttl_days": env.get("SESSION_TTL_DAYS") or DEFAULT_SESSION_TTL_DAYS,
        "retry": retry,
    }
    return validate_environment(WorkerSettings, raw, _ENV_NAMES)


@cache
def get_worker_settings() -> WorkerSettings:
    return load_worker_settings()
