"""The gateway turns real HTTP into genuine HTTP API v2 events and Lambda answers back into HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_bridge.providers.pace import TokenBucket
from infra.local.console import Console
from infra.local.functions import Invocation
from infra.local.gateway import Cors, Gateway, Request, route_throttle
from infra.local.pages import DemoSettings, LocalPages
from infra.local.template import Route, Template, api_cors, api_throttles, load_template, parameter_values
from tests.infra.sam import transformed_template

ROOT = Path(__file__).parents[2]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: Invocation = Invocation(True, {"statusCode": 204}, 1.0)

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        self.events.append(event | {"function": function})
        return self.answer


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


@pytest.fixture
def served() -> Iterator[tuple[httpx.Client, Recorder, io.StringIO]]:
    recorder, console = Recorder(), io.StringIO()
    routes = [Route("GET", "/go/{channel}", "Redirect"), Route("POST", "/api/v1/files", "Upload")]
    gateway = Gateway(routes, recorder, Console(console), port=0)
    gateway.start()
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as client:
        yield client, recorder, console
    gateway.stop()


def test_a_request_becomes_an_http_api_v2_event(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    client.get("/go/tele%20gram?ref=P-1&utm_source=a&utm_source=b", headers={"Cookie": "ref=OLD; visitor_session=abc"})

    (event,) = recorder.events
    assert event["function"] == "Redirect"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /go/{channel}"
    assert event["rawPath"] == "/go/tele%20gram"
    assert event["pathParameters"] == {"channel": "tele gram"}
    assert event["rawQueryString"] == "ref=P-1&utm_source=a&utm_source=b"
    assert event["queryStringParameters"] == {"ref": "P-1", "utm_source": "a,b"}
    assert event["cookies"] == ["ref=OLD", "visitor_session=abc"]
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "GET"


def test_a_binary_body_arrives_base64_encoded(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    client.post("/api/v1/files", content=b"\x00\xff", headers={"content-type": "application/octet-stream"})
    client.post("/api/v1/files", json={"a": "ç"})

    binary, text = recorder.events
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"
    assert (text["isBase64Encoded"], text["body"]) == (False, '{"a":"ç"}')


def test_the_answer_comes_back_with_every_cookie_and_a_decoded_body(
    served: tuple[httpx.Client, Recorder, io.StringIO],
) -> None:
    client, recorder, console = served
    recorder.answer = Invocation(
        True,
        {
            "statusCode": 302,
            "headers": {"Location": "https://t.me/bot?start=P-1", "Cache-Control": "no-store"},
            "cookies": ["ref=P-1; Path=/; Secure", "visitor_session=xyz; Path=/"],
            "body": base64.b64encode(b"moved").decode(),
            "isBase64Encoded": True,
        },
        1.0,
    )

    answer = client.get("/go/telegram")

    assert answer.status_code == 302
    assert answer.headers["location"] == "https://t.me/bot?start=P-1"
    assert answer.headers.get_list("set-cookie") == ["ref=P-1; Path=/; Secure", "visitor_session=xyz; Path=/"]
    assert answer.content == b"moved"
    assert answer.headers["apigw-requestid"]
    assert "GET /go/telegram  302 redirect to t.me/bot" in console.getvalue()
    assert "P-1" not in console.getvalue().split("redirect to")[1], "the console leaves the query out"


def test_failures_are_answered_as_api_gateway_answers_them(served: tuple[httpx.Client, Recorder, io.StringIO]) -> None:
    client, recorder, _ = served

    recorder.answer = Invocation(False, {"errorType": "ValueError", "errorMessage": "boom"}, 1.0)
    crashed = client.get("/go/telegram")
    recorder.answer = Invocation(False, {"errorType": "Sandbox.Timedout", "errorMessage": "timed out"}, 1.0)
    timed_out = client.get("/go/telegram")
    recorder.answer = Invocation(True, {"plain": "object"}, 1.0)
    inferred = client.get("/go/telegram")
    unknown = client.get("/nothing")
    wrong_method = client.post("/go/telegram", json={})

    assert (crashed.status_code, crashed.json()) == (500, {"message": "Internal Server Error"})
    assert (timed_out.status_code, timed_out.json()) == (503, {"message": "Service Unavailable"})
    assert (inferred.status_code, inferred.json()) == (200, {"plain": "object"})
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not Found"})
    assert wrong_method.status_code == 404


# --- CORS: the HttpApi's CorsConfiguration, answered by the gateway as API Gateway answers it ----------

SITE = "https://www.agency.example"
CORS = Cors(
    allow_origins=(SITE, "https://agency.example"),
    allow_methods=("GET", "POST", "OPTIONS"),
    allow_headers=("content-type", "idempotency-key"),
    expose_headers=("retry-after",),
    allow_credentials=True,
    max_age=600,
)


@pytest.fixture
def cors_served() -> Iterator[tuple[httpx.Client, Recorder]]:
    recorder = Recorder()
    routes = [Route("POST", "/api/v1/applications", "Applications"), Route("GET", "/go/{channel}", "Redirect")]
    gateway = Gateway(routes, recorder, Console(io.StringIO()), port=0, cors=CORS)
    gateway.start()
    with httpx.Client(base_url=gateway.url, follow_redirects=False) as client:
        yield client, recorder
    gateway.stop()


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(
    cors_served: tuple[httpx.Client, Recorder],
) -> None:
    client, recorder = cors_served

    answer = client.options(
        "/api/v1/applications",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key",
        },
    )

    assert answer.status_code == 204
    assert answer.content == b""
    assert cors_headers(answer) == {
        "access-control-allow-origin": SITE,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "content-type,idempotency-key",
        "access-control-max-age": "600",
    }
    assert answer.headers["vary"] == "Origin"
    assert answer.headers["apigw-requestid"]
    assert recorder.events == [], "no function is invoked for a preflight"


def test_a_preflight_from_another_origin_gets_no_cors_headers(cors_served: tuple[httpx.Client, Recorder]) -> None:
    client, recorder = cors_served

    answer = client.options(
        "/api/v1/applications", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    not_a_preflight = client.options("/api/v1/applications", headers={"Origin": SITE})

    assert (answer.status_code, cors_headers(answer)) == (204, {})
    assert not_a_preflight.status_code == 404, "OPTIONS without Access-Control-Request-Method is routed: no route"
    assert recorder.events == []


def test_answers_to_an_allowed_origin_carry_the_configured_cors_headers_not_the_functions(
    cors_served: tuple[httpx.Client, Recorder],
) -> None:
    client, recorder = cors_served
    recorder.answer = Invocation(
        True,
        {
            "statusCode": 429,
            "headers": {
                "Content-Type": "application/json",
                "Retry-After": "3",
                "Access-Control-Allow-Origin": "https://evil.example",  # API Gateway ignores the function's
                "Access-Control-Allow-Headers": "*",
            },
            "body": "{}",
        },
        1.0,
    )

    allowed = client.post("/api/v1/applications", json={}, headers={"Origin": SITE})
    other = client.post("/api/v1/applications", json={}, headers={"Origin": "https://evil.example"})
    no_origin = client.post("/api/v1/applications", json={})

    assert allowed.status_code == 429
    assert cors_headers(allowed) == {
        "access-control-allow-origin": SITE,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "retry-after",
    }
    assert allowed.headers["vary"] == "Origin"
    assert allowed.headers["retry-after"] == "3"
    assert cors_headers(other) == {} == cors_headers(no_origin)
    assert "vary" not in other.headers
    assert len(recorder.events) == 3


def test_redirects_get_the_cors_headers_too(cors_served: tuple[httpx.Client, Recorder]) -> None:
    client, recorder = cors_served
    recorder.answer = Invocation(True, {"statusCode": 302, "headers": {"Location": "https://t.me/bot"}}, 1.0)

    answer = client.get("/go/telegram", headers={"Origin": "https://agency.example"})

    assert answer.status_code == 302
    assert answer.headers["access-control-allow-origin"] == "https://agency.example"


def test_a_route_that_takes_options_answers_preflights_itself() -> None:
    recorder = Recorder()
    gateway = Gateway([Route("ANY", "/api/{proxy+}", "Proxy")], recorder, Console(io.StringIO()), port=0, cors=CORS)
    gateway.start()
    try:
        with httpx.Client(base_url=gateway.url) as client:
            answer = client.options("/api/x", headers={"Origin": SITE, "Access-Control-Request-Method": "POST"})
    finally:
        gateway.stop()

    assert answer.status_code == 204
    assert [event["routeKey"] for event in recorder.events] == ["ANY /api/{proxy+}"]
    assert answer.headers["access-control-allow-origin"] == SITE


def test_origins_match_as_api_gateway_matches_them() -> None:
    schemes = Cors(allow_origins=("https://*",))
    anyone = Cors(allow_origins=("*",))

    assert CORS.allowed_origin("HTTPS://WWW.AGENCY.EXAMPLE") == "HTTPS://WWW.AGENCY.EXAMPLE"
    assert CORS.allowed_origin("https://www.agency.example:8443") is None
    assert CORS.allowed_origin("http://www.agency.example") is None
    assert CORS.allowed_origin("null") is None
    assert CORS.allowed_origin(None) is None
    assert schemes.allowed_origin("https://any.example") == "https://any.example"
    assert schemes.allowed_origin("http://any.example") is None
    assert anyone.allowed_origin("http://any.example") == "*"
    assert Cors(allow_origins=()).allowed_origin(SITE) is None


def test_the_templates_cors_configuration_with_the_local_site_origins(template: Template) -> None:
    assert template.list_parameter_for_variable()["SITE_ORIGINS"] == "SiteOrigins"
    parameters = parameter_values(template, {"SiteOrigins": "http://www.agency.test:3000, https://agency.test"})

    cors = Cors.from_template(api_cors(transformed_template(parameters)))

    assert cors is not None
    assert cors.allow_origins == ("http://www.agency.test:3000", "https://agency.test")
    assert cors.allow_credentials
    assert {"POST", "OPTIONS"} <= set(cors.allow_methods)
    assert {"content-type", "idempotency-key"} <= set(cors.allow_headers)
    assert cors.expose_headers == ("retry-after",), "the snippet reads Retry-After"
    assert cors.max_age is not None
    assert Cors.from_template(None) is None
    assert Cors.from_template(True) == Cors(allow_origins=("*",))


def test_without_a_cors_configuration_the_functions_headers_pass_and_options_is_routed(
    served: tuple[httpx.Client, Recorder, io.StringIO],
) -> None:
    client, recorder, _ = served
    recorder.answer = Invocation(True, {"statusCode": 204, "headers": {"Access-Control-Allow-Origin": SITE}}, 1.0)

    answer = client.get("/go/telegram", headers={"Origin": SITE})
    preflight = client.options("/go/telegram", headers={"Origin": SITE, "Access-Control-Request-Method": "GET"})

    assert answer.headers["access-control-allow-origin"] == SITE
    assert preflight.status_code == 404


def test_the_demo_page_names_the_api_and_the_cookie_domain_and_its_snippet_is_served(tmp_path: Path) -> None:
    pages = LocalPages(tmp_path / "openapi.json", dict, None)
    pages.demo = DemoSettings(api_origin='http://go.agency.test:3000"', cookie_domain=".agency.test")

    demo = pages(Request("GET", "/", "", {}, None))
    snippet = pages(Request("GET", "/crm-bridge.js", "", {}, None))

    assert demo is not None
    assert snippet is not None
    html = demo.body.decode()
    assert 'data-api="http://go.agency.test:3000&quot;"' in html, "filled in, escaped"
    assert 'data-cookie-domain=".agency.test"' in html
    assert 'href="http://go.agency.test:3000&quot;/go/whatsapp"' in html
    assert "{{" not in html
    assert dict(snippet.headers)["Content-Type"].startswith("text/javascript")
    assert snippet.body == (ROOT / "site" / "crm-bridge.js").read_bytes()
    same_origin = LocalPages(tmp_path / "openapi.json", dict, None)(Request("GET", "/", "", {}, None))
    assert same_origin is not None
    assert 'data-api=""' in same_origin.body.decode()


def test_a_throttle_lets_its_burst_through_then_its_rate() -> None:
    now = [0.0]
    throttle = route_throttle({"ThrottlingRateLimit": 2, "ThrottlingBurstLimit": 3})
    assert throttle is not None
    throttle = TokenBucket(throttle.rate, throttle.burst, clock=lambda: now[0])

    def passes() -> bool:
        return throttle.take() is not None

    assert [passes() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back at 2 a second
    assert [passes(), passes()] == [True, False]
    now[0] += 60  # never more than the burst
    assert sum(passes() for _ in range(10)) == 3
    assert route_throttle({}) is None


def test_the_template_gives_each_route_its_own_throttle() -> None:
    template = load_template(ROOT / "template.yaml")
    parameters = {name: str(value) for name, value in parameter_values(template, {}).items()}
    throttles = {
        route: route_throttle(settings) for route, settings in api_throttles(transformed_template(), parameters).items()
    }

    limits = {route: (throttle.rate, throttle.burst) for route, throttle in throttles.items() if throttle is not None}
    assert limits["GET /go/{channel}"] == limits["HEAD /go/{channel}"] == (20.0, 50)
    assert limits["POST /api/v1/messenger-events"] == (10.0, 20)
    assert limits["POST /api/v1/applications"] == (5.0, 20)
    assert limits["GET /api/v1/crm/test"] == (1.0, 5)
