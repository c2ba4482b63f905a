"""One error taxonomy for every CRM, decided once at the provider edge.

Callers (the API handlers, the retry worker) never look at HTTP status codes or CRM error codes:
they look at :class:`ErrorKind` and, for retries, at ``retry_after_seconds``.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """What a failure means for delivery."""

    RETRYABLE = "retryable"
    """Transient: timeouts, connection errors, 5xx, rate limits. Retry with backoff."""
    CONFIGURATION = "configuration"
    """Our setup is wrong (401/403, missing scope or role). Retry, and alarm loudly."""
    PERMANENT = "permanent"
    """The CRM refuses this data (validation). Retrying cannot help: dead-letter it."""


class CrmError(Exception):
    """A CRM call failed. The message is safe to log: no secrets, no personal data."""

    kind: ErrorKind

    def __init__(
        self,
        reason: str,
        *,
        provider: str,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.reason = reason
        self.provider = provider
        self.status = status
        self.code = code
        self.field = field
        self.retry_after_seconds = retry_after_seconds
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"{self.provider}: {self.reason}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.field:
            parts.append(f"field={self.field}")
        if self.retry_after_seconds is not None:
            parts.append(f"retry_after={self.retry_after_seconds:g}s")
        return " ".join(parts)

    def to_dict(self) -> dict[str, str | int | float | None]:
        """The error as data: what goes into message attributes, logs and the DLQ."""
        return {
            "kind": self.kind.value,
            "provider": self.provider,
            "reason": self.reason,
            "status": self.status,
            "code": self.code,
            "field": self.field,
            "retry_after_seconds": self.retry_after_seconds,
        }


class RetryableCrmError(CrmError):
    kind = ErrorKind.RETRYABLE


class RefusedCrmError(RetryableCrmError):
    """The request surely changed nothing: it never left, it only read, or the CRM turned it away
    before running it (a rate or time limit, maintenance mode). Worth retrying, like any retryable
    error; unlike a 5xx or a write without an answer, which may come after the CRM ran it."""


class AmbiguousWriteError(RetryableCrmError):
    """A write was sent and no answer came: the CRM may have run it, or may still run it late.

    Its retry waits until the write could have landed (``retry_after_seconds``) and searches again
    before writing; meanwhile nothing else may write in its place (a visitor session's claim holds)."""


class SessionLeadInProgress(RetryableCrmError):
    """Another operation (a visitor's first click) is creating the visitor session's lead: an operation
    of the same visitor waits for that lead rather than make a second one."""

    def __init__(self, provider: str) -> None:
        super().__init__(
            "another operation of this visitor session is creating its lead", provider=provider, code="session_claimed"
        )


class CrmConfigurationError(CrmError):
    kind = ErrorKind.CONFIGURATION


class PermanentCrmError(CrmError):
    kind = ErrorKind.PERMANENT


class LeadNotFound(PermanentCrmError):
    """The lead an activity was meant for does not exist (deleted, or a stale id from the site)."""


class SettingsError(Exception):
    """The deployment's configuration is missing or invalid; the message names each setting."""
