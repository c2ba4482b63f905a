"""The HTTP edge shared by the CRM providers: one place that turns transport failures into
:mod:`crm_bridge.errors` and keeps URLs (the Bitrix one carries its token) out of exceptions."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import httpx

from crm_bridge.errors import (
    AmbiguousWriteError,
    CrmConfigurationError,
    CrmError,
    PermanentCrmError,
    RefusedCrmError,
    RetryableCrmError,
)
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


AMBIGUOUS_WRITE_SETTLE_SECONDS = 60.0
"""How long a write that got no answer is left to land before it is tried again.

A request can reach the CRM and run after the client gave up (queued behind busy PHP workers or a
slow proxy). Retried at once, its retry searches before the late write has landed and writes the
lead a second time; retried after this pause, the search finds what the late write made."""


class BudgetExhausted(RefusedCrmError):
    """The caller's time budget ran out: the operation is worth retrying later, from the queue."""


def send(client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool) -> httpx.Response:
    """Send within the time budget, converting transport failures into retryable errors that do
    not mention the URL. A write (``writes``) that may have reached the CRM without an answer
    carries a retry-after of :data:`AMBIGUOUS_WRITE_SETTLE_SECONDS`. Inside :class:`ReadsAhead`'s
    blocks, reads sent ahead are recorded or answered, and writes refused (see there)."""
    ahead = _reads_ahead.get()
    if ahead is not None:
        reads, answering = ahead
        return reads.send(client, provider, request, writes=writes, answering=answering)
    return _send(client, provider, request, writes=writes)


def _spend_budget(provider: str) -> float | None:
    remaining = remaining_seconds()
    if remaining is not None and remaining <= 0:
        raise BudgetExhausted("time budget spent before the CRM answered", provider=provider)
    return remaining


def _send(client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool) -> httpx.Response:
    remaining = _spend_budget(provider)
    if remaining is not None:
        configured = httpx.Timeout(**request.extensions.get("timeout", {}))
        request.extensions["timeout"] = httpx.Timeout(
            min(configured.read or remaining, remaining), connect=min(configured.connect or remaining, remaining)
        ).as_dict()
    try:
        return client.send(request)
    except httpx.TransportError as exc:
        # Nothing was sent when the connection failed or the request could not be written out.
        sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.WriteError | httpx.WriteTimeout)
        what = "no answer in time" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        if writes and sent:
            raise AmbiguousWriteError(
                f"{what} ({type(exc).__name__}); the write may still land",
                provider=provider,
                retry_after_seconds=AMBIGUOUS_WRITE_SETTLE_SECONDS,
            ) from None
        raise RefusedCrmError(f"{what} ({type(exc).__name__})", provider=provider) from None  # changed nothing


class WriteAhead(Exception):
    """A write reached :func:`send` while reading ahead: refused before anything left.

    Deliberately no :class:`CrmError`: no provider catches it, so it ends the read-ahead at once."""


_RequestKey = tuple[str, str, tuple[tuple[bytes, bytes], ...], bytes]


def _request_key(request: httpx.Request) -> _RequestKey | None:
    """Everything that makes a request what it is; None for a body not in memory (never answered ahead)."""
    try:
        content = request.content
    except httpx.RequestNotRead:
        return None
    return request.method, str(request.url), tuple(request.headers.raw), content


class ReadsAhead:
    """Reads of one delivery sent ahead of it, each answered once to the very same request.

    The applications API sends the lead search while its idempotency record is being written
    (:mod:`crm_bridge.delivery.overlap`). Two blocks, one per side:

    * :meth:`sending` (ahead, before the idempotency record says "in progress"): every read is sent
      as usual and its answer kept, the response or the :class:`CrmError` sending it raised; a
      **write is refused** before anything leaves (:class:`WriteAhead`). Nothing under this block
      can change the CRM, whatever provider code runs in it.
    * :meth:`answering` (the delivery itself, after the claim): a read identical to the next one
      kept (method, URL, headers, body) gets its answer instead of going out again, as if sent now
      and answered at once: within the time budget like any request (a spent budget raises
      :class:`BudgetExhausted` as it would have). The first request that is not the next one kept,
      and the first write, drop whatever is left: nothing read ahead is ever handed out of order or
      after the delivery's own first write.

    So the CRM sees the requests it would have seen, in the same order, the first read(s) a few
    milliseconds earlier; an answer recorded ahead is never used by any other request or delivery.
    ``sending`` and ``answering`` are not meant to overlap: the delivery waits for the reads ahead
    to finish before it answers from them (the hand-over is then ordered by that wait).
    """

    def __init__(self) -> None:
        self._answers: deque[tuple[_RequestKey, httpx.Response | CrmError]] = deque()

    def sending(self) -> AbstractContextManager[None]:
        return self._side(answering=False)

    def answering(self) -> AbstractContextManager[None]:
        return self._side(answering=True)

    @contextmanager
    def _side(self, *, answering: bool) -> Iterator[None]:
        token = _reads_ahead.set((self, answering))
        try:
            yield
        finally:
            _reads_ahead.reset(token)
            if answering:
                self._answers.clear()

    def send(
        self, client: httpx.Client, provider: str, request: httpx.Request, *, writes: bool, answering: bool
    ) -> httpx.Response:
        key = _request_key(request)
        if not answering:
            if writes or key is None:
                raise WriteAhead(f"{provider}: {request.method} is not sent ahead of the idempotency claim")
            try:
                response = _send(client, provider, request, writes=False)
            except CrmError as error:
                self._answers.append((key, error))
                raise
            self._answers.append((key, response))
            return response
        if not writes and key is not None and self._answers and self._answers[0][0] == key:
            _, answer = self._answers.popleft()
            _spend_budget(provider)
            if isinstance(answer, CrmError):
                raise answer
            return answer
        self._answers.clear()
        return _send(client, provider, request, writes=writes)


_reads_ahead: ContextVar[tuple[ReadsAhead, bool] | None] = ContextVar("crm_reads_ahead", default=None)


def error_for_status(provider: str, status: int, reason: str, **details: Any) -> CrmError:
    """The generic classification of an HTTP failure; providers refine it with what the body says."""
    error_class: type[CrmError]
    if status in (408, 425, 429):
        error_class = RefusedCrmError
    elif status >= 500:  # may come after the CRM ran the request
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
