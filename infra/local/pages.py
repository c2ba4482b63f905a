"""The runner's own pages beside the API: the demo site, Swagger UI, and the sandbox's console.

None of this is deployed: the demo page plays the agency's website (the form, the messenger
buttons, a partner link) with the site's own snippet, ``/crm-bridge.js`` (``site/crm-bridge.js``, as
the API's host serves it to a real site), and ``/docs`` renders the committed ``docs/openapi.json`` with the Swagger UI
that Powertools ships (no CDN: everything is served from here), and ``/_local/...`` lets the demo
show the queues and the sandbox CRM, and make the sandbox fail so that retries and the dead-letter
queue can be watched.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

from infra.local.gateway import Reply, Request
from infra.local.sandbox import SandboxFault, SandboxStore

DEMO_DIR = Path(__file__).parent / "demo"
SNIPPET = Path(__file__).parents[2] / "site" / "crm-bridge.js"
SWAGGER_ASSETS = Path(swagger_ui.__file__).parent
_STATIC = {
    "/crm-bridge.js": (SNIPPET, "text/javascript; charset=utf-8"),
    "/docs/swagger-ui-bundle.min.js": (SWAGGER_ASSETS / "swagger-ui-bundle.min.js", "text/javascript"),
    "/docs/swagger-ui.min.css": (SWAGGER_ASSETS / "swagger-ui.min.css", "text/css"),
}


@dataclass(frozen=True)
class DemoSettings:
    """What the demo page's snippet tag says (``data-api``, ``data-cookie-domain``)."""

    api_origin: str = ""
    """Where the API is: "" for the page's own origin (``DEMO_API_ORIGIN``)."""
    cookie_domain: str = ""
    """The domain the site and the API share: the ``COOKIE_DOMAIN`` the redirect function gets."""


class LocalPages:
    def __init__(
        self,
        openapi_file: Path,
        status: Callable[[], dict[str, Any]],
        sandbox: SandboxStore | None,
        demo: DemoSettings | None = None,
    ) -> None:
        self._openapi_file = openapi_file
        self._status = status
        self._sandbox = sandbox
        self.demo = demo or DemoSettings()
        """Settable until the gateway serves: the runner knows the cookie domain once the functions have it."""

    def __call__(self, request: Request) -> Reply | None:
        if request.method in ("GET", "HEAD"):
            return self._get(request)
        if request.method == "POST" and request.path.startswith("/_local/sandbox/"):
            return self._sandbox_control(request)
        return None

    def _get(self, request: Request) -> Reply | None:
        if request.path in _STATIC:
            path, content_type = _STATIC[request.path]
            return Reply(200, [("Content-Type", content_type), ("Cache-Control", "no-cache")], path.read_bytes())
        pages: dict[str, Callable[[Request], Reply]] = {
            "/": self._demo,
            "/docs": self._docs,
            "/openapi.json": self._docs,
            "/favicon.ico": lambda _: Reply(204),
            "/_local/status": lambda _: Reply.json(200, self._status(), [("Cache-Control", "no-store")]),
            "/_local/sandbox/leads": self._sandbox_leads,
        }
        page = pages.get(request.path)
        return page(request) if page else None

    def _demo(self, _: Request) -> Reply:
        """The demo page, its snippet tag filled in (``{{api}}``, ``{{cookie_domain}}``)."""
        page = (DEMO_DIR / "index.html").read_text(encoding="utf-8")
        page = page.replace("{{api}}", html.escape(self.demo.api_origin, quote=True))
        page = page.replace("{{cookie_domain}}", html.escape(self.demo.cookie_domain, quote=True))
        return Reply(200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")], page.encode())

    def _docs(self, request: Request) -> Reply:
        spec = self._openapi_file.read_text(encoding="utf-8")
        if request.path == "/openapi.json" or "format=json" in request.query:
            return Reply(200, [("Content-Type", "application/json")], spec.encode())
        html = generate_swagger_html(
            spec,
            "/docs/swagger-ui-bundle.min.js",
            "/docs/swagger-ui.min.css",
            swagger_base_url="/docs",
            oauth2_config=None,
        )
        return Reply(200, [("Content-Type", "text/html; charset=utf-8")], html.encode())

    def _sandbox_leads(self, _: Request) -> Reply:
        if self._sandbox is None:
            return Reply.json(404, {"message": "the CRM is not the sandbox"})
        leads = [lead | {"notes": self._sandbox.notes(lead["id"])} for lead in self._sandbox.leads()]
        return Reply.json(200, {"leads": leads[::-1]}, [("Cache-Control", "no-store")])

    def _sandbox_control(self, request: Request) -> Reply:
        if self._sandbox is None:
            return Reply.json(404, {"message": "the CRM is not the sandbox"})
        try:
            data = json.loads(request.body or b"{}")
            if request.path == "/_local/sandbox/faults":
                self._sandbox.clear_faults()
                times = int(data.get("times", 1))
                if times > 0:
                    self._sandbox.fail_next(SandboxFault(data["fault"]), min(times, 1000))
            elif request.path == "/_local/sandbox/rejected":
                if data.get("rejected", True):
                    self._sandbox.reject_attribute(str(data["attribute"]))
                else:
                    self._sandbox.accept_attribute(str(data["attribute"]))
            else:
                return Reply.json(404, {"message": "Not Found"})
        except (ValueError, KeyError, TypeError) as exc:
            return Reply.json(400, {"message": f"bad request: {exc}"})
        return Reply.json(200, {"ok": True})
