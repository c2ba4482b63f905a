"""API Gateway (HTTP API, payload 2.0) on loopback: the template's routes, the real handlers.

A request becomes the event API Gateway would send (:func:`infra.local.http_events.http_api_event`:
cookies split out, query parameters joined, base64 for binary bodies, request context), goes to
the function of the matching route, and the function's answer is returned as API Gateway returns
it: status, headers, one ``Set-Cookie`` per cookie, the body decoded from base64 when flagged.
Requests no route serves may be answered by the runner's own pages (demo, Swagger UI), which are
not part of the API.

CORS is the gateway's, as in AWS: with the HttpApi's ``CorsConfiguration`` (:class:`Cors`) the gateway
answers preflights itself and sets the CORS headers of the routes' answers, ignoring any the function
sent.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from crm_bridge.providers.pace import TokenBucket
from infra.local.console import Console
from infra.local.functions import Invocation
from infra.local.http_events import http_api_event
from infra.local.template import Route, TemplateError

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(data).encode())


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes | None


LocalPages = Callable[[Request], Reply | None]


def route_throttle(settings: Mapping[str, Any]) -> TokenBucket | None:
    """A route's throttle as API Gateway applies it, from its resolved route settings: a token bucket
    of ``ThrottlingBurstLimit`` refilled at ``ThrottlingRateLimit`` a second; a request that finds
    it empty is answered 429 without reaching the function. None without a rate limit."""
    rate = settings.get("ThrottlingRateLimit")
    if rate is None:
        return None
    return TokenBucket(float(rate), int(settings.get("ThrottlingBurstLimit") or rate))


@dataclass(frozen=True)
class Cors:
    """An HttpApi's ``CorsConfiguration``, answered as API Gateway answers it for an HTTP API.

    What AWS documents ("Configuring CORS for an HTTP API"): a preflight (``OPTIONS`` with ``Origin``
    and ``Access-Control-Request-Method``) gets an answer from API Gateway itself, even without an
    ``OPTIONS`` route; for a request with an ``Origin`` the configured CORS headers are added to the
    integration's answer, and the CORS headers the integration sent are ignored. An origin is allowed
    when it is listed, or by ``*`` (any), ``https://*`` or ``http://*`` (any of that scheme); a
    request from another origin gets no CORS headers, and the browser refuses it the answer.
    Whether the requested method and headers are allowed is the browser's to compare with the lists
    the preflight answers.
    """

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None

    @classmethod
    def from_template(cls, configuration: Any) -> Cors | None:
        """From a resolved ``CorsConfiguration`` (SAM's ``true``: any origin); None without CORS."""
        if configuration is None or configuration is False:
            return None
        if configuration is True:
            return cls(allow_origins=("*",))
        if not isinstance(configuration, dict):
            raise TemplateError("HttpApi CorsConfiguration: expected true or a mapping")

        def names(key: str) -> tuple[str, ...]:
            value = configuration.get(key) or []
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(item).strip() for item in items if str(item).strip())

        max_age = configuration.get("MaxAge")
        return cls(
            allow_origins=names("AllowOrigins"),
            allow_methods=tuple(method.upper() for method in names("AllowMethods")),
            allow_headers=tuple(header.lower() for header in names("AllowHeaders")),
            expose_headers=tuple(header.lower() for header in names("ExposeHeaders")),
            allow_credentials=str(configuration.get("AllowCredentials", False)).lower() == "true",
            max_age=None if max_age in (None, "") else int(max_age),
        )

    def allowed_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` for a request from ``origin``; None when not allowed."""
        if not origin:
            return None
        lowered = origin.lower()
        for allowed in self.allow_origins:
            if allowed == "*":
                return "*"
            if allowed.lower() in ("https://*", "http://*"):
                if lowered.startswith(allowed.lower()[:-1]):
                    return origin
            elif allowed.lower().rstrip("/") == lowered:
                return origin
        return None

    @staticmethod
    def is_preflight(request: Request) -> bool:
        return (
            request.method == "OPTIONS"
            and "origin" in request.headers
            and ("access-control-request-method" in request.headers)
        )

    def preflight(self, request: Request) -> Reply:
        """API Gateway's own answer to a preflight: 204, with the CORS headers when the origin is allowed."""
        allowed = self.allowed_origin(request.headers.get("origin"))
        if allowed is None:
            return Reply(204)
        headers = self._origin_headers(allowed)
        requested_method = request.headers.get("access-control-request-method", "")
        requested_headers = request.headers.get("access-control-request-headers", "")
        if self.allow_methods:
            methods = requested_method if "*" in self.allow_methods else ",".join(self.allow_methods)
            headers.append(("Access-Control-Allow-Methods", methods))
        if self.allow_headers:
            allow = requested_headers if "*" in self.allow_headers else ",".join(self.allow_headers)
            if allow:
                headers.append(("Access-Control-Allow-Headers", allow))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        return Reply(204, headers)

    def answer(self, request: Request, reply: Reply) -> Reply:
        """An integration's answer as API Gateway sends it: its own CORS headers dropped, the
        configured ones added when the request's origin is allowed."""
        headers = [(name, value) for name, value in reply.headers if not name.lower().startswith("access-control-")]
        allowed = self.allowed_origin(request.headers.get("origin"))
        if allowed is not None:
            headers += self._origin_headers(allowed)
            if self.expose_headers:
                headers.append(("Access-Control-Expose-Headers", ",".join(self.expose_headers)))
        return Reply(reply.status, headers, reply.body)

    def _origin_headers(self, allowed: str) -> list[tuple[str, str]]:
        headers = [("Access-Control-Allow-Origin", allowed)]
        if self.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if allowed != "*":  # the answer depends on the request's Origin: caches must keep them apart
            headers.append(("Vary", "Origin"))
        return headers


def function_reply(invocation: Invocation, request_id: str) -> Reply:
    """The HTTP answer API Gateway makes of a Lambda result (payload format 2.0)."""
    extra = [("apigw-requestid", request_id)]
    if not invocation.ok:
        error = invocation.payload or {}
        if error.get("errorType") == "Sandbox.Timedout":
            return Reply.json(503, {"message": "Service Unavailable"}, extra)
        return Reply.json(500, {"message": "Internal Server Error"}, extra)
    result = invocation.payload
    if not (isinstance(result, dict) and "statusCode" in result):
        # API Gateway's inference for a result that is not a response object: 200 with it as JSON.
        return Reply.json(200, result, extra)
    headers = [(str(name), str(value)) for name, value in (result.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return Reply(int(result["statusCode"]), headers + extra, data)


class Gateway:
    def __init__(
        self,
        routes: list[Route],
        invoke: Callable[[str, dict[str, Any]], Invocation],
        console: Console,
        *,
        port: int,
        pages: LocalPages | None = None,
        throttles: Mapping[str, TokenBucket] | None = None,
        cors: Cors | None = None,
    ) -> None:
        self.routes = routes
        self.cors = cors
        self._invoke = invoke
        self._console = console
        self._pages = pages
        self.throttles = dict(throttles or {})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="gateway", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever(), so only once it runs
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def handle(self, request: Request) -> Reply:
        if self.cors is not None and self.cors.is_preflight(request) and not self._routed("OPTIONS", request.path):
            return self._preflight(self.cors, request)
        for route in self.routes:
            parameters = route.match(request.method, request.path)
            if parameters is not None:
                answer = self._call(route, request, parameters)
                return answer if self.cors is None else self.cors.answer(request, answer)
        reply = self._pages(request) if self._pages is not None else None
        return reply or Reply.json(404, {"message": "Not Found"})

    def _routed(self, method: str, path: str) -> bool:
        """A route takes this method on this path (an ``OPTIONS`` or ``ANY`` route, ``$default``)."""
        return any(route.match(method, path) is not None for route in self.routes)

    def _preflight(self, cors: Cors, request: Request) -> Reply:
        reply = cors.preflight(request)
        reply.headers.append(("apigw-requestid", uuid.uuid4().hex[:12] + "="))
        origin = request.headers.get("origin", "")
        allowed = cors.allowed_origin(origin) is not None
        outcome = "origin allowed" if allowed else f"origin {origin} not allowed (SITE_ORIGINS): no CORS headers"
        self._console.line("api", f"OPTIONS {request.path}  204 CORS preflight, {outcome}")
        return reply

    def _call(self, route: Route, request: Request, parameters: dict[str, str]) -> Reply:
        throttle = self.throttles.get(route.route_key)
        if throttle is not None and throttle.take() is None:
            self._console.throttled(request.method, request.path, throttle.rate, throttle.burst)
            return Reply.json(429, {"message": "Too Many Requests"})
        self._console.received(request.method, request.path)
        started = time.perf_counter()
        event = http_api_event(
            request.method,
            request.path,
            route_key=route.route_key,
            path_parameters={name: unquote(value) for name, value in parameters.items()},
            query=request.query,
            headers=request.headers,
            body=request.body,
        )
        reply = function_reply(self._invoke(route.function, event), event["requestContext"]["requestId"])
        lowered = {name.lower(): value for name, value in reply.headers}
        duration = (time.perf_counter() - started) * 1000
        self._console.answered(request.method, request.path, reply.status, lowered, reply.body, duration)
        return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "crm-bridge-local"

            def _serve(self) -> None:
                target = urlsplit(self.path)
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self._send(Reply.json(411, {"message": "Length Required"}))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._send(Reply.json(413, {"message": "Request Entity Too Large"}))
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else None
                request = Request(self.command, target.path or "/", target.query, _joined_headers(self), body)
                try:
                    reply = gateway.handle(request)
                except Exception as exc:  # a bug of the runner: say so rather than hang the client
                    gateway._console.line("api", f"runner error: {type(exc).__name__}: {exc}", level="ERROR")
                    reply = Reply.json(500, {"message": "Internal Server Error"})
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the console reports requests itself, without their query strings."""

        return Handler


def _joined_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """Headers by lower-case name; repeated ones joined as API Gateway joins them."""
    joined: dict[str, str] = {}
    for name, value in handler.headers.items():
        key = name.lower()
        separator = "; " if key == "cookie" else ","
        joined[key] = f"{joined[key]}{separator}{value}" if key in joined else value
    return joined
