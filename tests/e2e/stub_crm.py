"""A stub EspoCRM on a real loopback port: the recorded-fixture simulator behind ``http.server``.

The respx simulator (tests/simulators/espocrm.py) already answers as EspoCRM 8.4.2 does, from the
recorded exchanges; here its router's handler answers real HTTP requests, so that a runner process
(which cannot be patched) talks to it over TCP exactly as it would talk to a real EspoCRM.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.simulators.espocrm import SimulatedEspoCrm

# Headers the HTTP server writes itself, or that describe the simulator's in-memory transfer.
_NOT_FORWARDED = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "content-encoding", "date", "server"}
)


class LoopbackCrm:
    """An HTTP server on a loopback port that answers each request with :meth:`answer`.

    Down until :meth:`start`; then up until :meth:`stop` (``port`` stays the same)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def answer(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = httpx.Request(
                    self.command,
                    stub.base_url + self.path,
                    headers=list(self.headers.items()),
                    content=self.rfile.read(length) if length else b"",
                )
                response = stub.answer(request)
                self.send_response(response.status_code)
                for name, value in response.headers.multi_items():
                    if name.lower() not in _NOT_FORWARDED:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class StubEspoCrm(LoopbackCrm):
    """The recorded-fixture simulator answering real HTTP on a loopback port."""

    def __init__(self, port: int, api_key: str) -> None:
        super().__init__(port)
        self.sim = SimulatedEspoCrm(base_url=self.base_url, api_key=api_key)
        self._lock = threading.Lock()

    def answer(self, request: httpx.Request) -> httpx.Response:
        with self._lock:  # the simulator's state is not meant for concurrent requests
            return self.sim.router.handler(request)
