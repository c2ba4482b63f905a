"""The HTTP edge shared by the CRM providers: one place that turns transport failures into
:mod:`crm_bridge.errors` and keeps URLs (the Bitrix one carries its token) out of exceptions."""

from __future__ import annotations

from typing import Any

import httpx

from crm_bridge.errors import CrmConfigurationError, CrmError, PermanentCrmError, RetryableCrmError
from crm_bridge.providers.budget import remaining_seconds

USER_AGENT = "crm-bridge/0.1 (+https://github.com/crm-bridge)"


def make_client(timeout_seconds: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A pooled client with explicit timeouts: connect fast or fail fast, never hang a Lambda."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 3.0)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
        transport=transport,
    )


class BudgetExhausted(RetryableCrmError):
    """The caller's time budget ran out: the operation is worth retrying later, from the queue."""


def send(client: httpx.Client, provider: str, request: httpx.Request) -> httpx.Response:
    """Send within the time budget, converting transport failures into retryable errors that do
    not mention the URL."""
    remaining = remaining_seconds()
    if remaining is not None:
        if remaining <= 0:
            raise BudgetExhausted("time budget spent before the CRM answered", provider=provider)
        configured = httpx.Timeout(**request.extensions.get("timeout", {}))
        request.extensions["timeout"] = httpx.Timeout(
            min(configured.read or remaining, remaining), connect=min(configured.connect or remaining, remaining)
        ).as_dict()
    try:
        return client.send(request)
    except httpx.TimeoutException as exc:
        raise RetryableCrmError(f"no answer in time ({type(exc).__name__})", provider=provider) from None
    except httpx.TransportError as exc:
        raise RetryableCrmError(f"connection failed ({type(exc).__name__})", provider=provider) from None


def error_for_status(provider: str, status: int, reason: str, **details: Any) -> CrmError:
    """The generic classification of an HTTP failure; providers refine it with what the body says."""
    error_class: type[CrmError]
    if status >= 500 or status in (408, 425, 429):
        error_class = RetryableCrmError
    elif status in (401, 403):
        error_class = CrmConfigurationError
    else:
        error_class = PermanentCrmError
    return error_class(reason, provider=provider, status=status, **details)


def json_body(response: httpx.Response, provider: str) -> Any:
    """The decoded body of a successful answer; a non-JSON 2xx (a proxy page) is retryable."""
    try:
        return response.json()
    except ValueError:
        raise RetryableCrmError(
            "answer was not JSON (is a proxy in the way?)", provider=provider, status=response.status_code
        ) from None


def retry_after_header(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (the form APIs use)."""
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
