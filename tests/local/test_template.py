"""The runner reads template.yaml by resource type: the SAM source for code and settings, the transformed
template for the API that moto's CloudFormation does not create."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.template import (
    Route,
    Template,
    TemplateError,
    api_routes,
    load_template,
    parameter_values,
)
from tests.infra.sam import transformed_template

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def test_the_routes_are_the_apis_lambda_integrations_after_the_transform(template: Template) -> None:
    routes = {route.route_key: route.function for route in api_routes(transformed_template())}

    assert routes == {
        "POST /api/v1/applications": "ApplicationsFunction",
        "POST /api/v1/messenger-events": "MessengerEventsFunction",
        "GET /go/{channel}": "RedirectFunction",
        "HEAD /go/{channel}": "RedirectFunction",
        "GET /api/v1/crm/test": "CrmHealthFunction",
        "GET /api/v1/crm/test/details": "CrmHealthFunction",
    }
    functions = template.functions()
    for function in routes.values():
        assert (functions[function].code_dir / f"{functions[function].module}.py").is_file()


def test_globals_are_merged_into_every_function_as_sam_does(template: Template) -> None:
    for spec in template.functions().values():
        assert {"CRM_PROVIDER", "CRM_QUEUE_URL", "CRM_DLQ_URL"} <= spec.environment.keys(), spec.logical_id
        assert spec.runtime == "python3.13"
    assert "REDIRECT_TELEGRAM_URL" in template.functions()["RedirectFunction"].environment


def test_the_sandbox_can_never_be_the_crm_of_a_deployed_stack(template: Template) -> None:
    crm_parameter = template.parameter_for_variable()["CRM_PROVIDER"]

    with pytest.raises(TemplateError, match="must be one of"):
        parameter_values(template, {crm_parameter: "sandbox"})
    assert "sandbox" not in template.parameters[crm_parameter]["AllowedValues"]
    assert template.parameters[crm_parameter]["Default"] != "sandbox"


def test_parameter_overrides_are_checked_as_cloudformation_checks_them(template: Template) -> None:
    telegram = template.parameter_for_variable()["REDIRECT_TELEGRAM_URL"]

    with pytest.raises(TemplateError, match="does not match"):
        parameter_values(template, {telegram: "http://t.me/insecure"})
    assert parameter_values(template, {telegram: "https://t.me/bot"})[telegram] == "https://t.me/bot"


def test_routes_match_as_api_gateway_matches_them() -> None:
    routes = sorted(
        [Route("ANY", "/files/{path+}", "Fn"), Route("GET", "/files/{id}", "Fn"), Route("GET", "/files/index", "Fn")],
        key=Route.specificity,
    )

    def first(method: str, request_path: str) -> tuple[str, dict[str, str]] | None:
        for route in routes:
            parameters = route.match(method, request_path)
            if parameters is not None:
                return route.route_key, parameters
        return None

    assert first("GET", "/files/index") == ("GET /files/index", {})
    assert first("GET", "/files/42") == ("GET /files/{id}", {"id": "42"})
    assert first("DELETE", "/files/42") == ("ANY /files/{path+}", {"path": "42"})
    assert first("GET", "/files/a/b") == ("ANY /files/{path+}", {"path": "a/b"})
    assert first("GET", "/other") is None
    assert Route("GET", "/go/{channel}", "F").match("GET", "/go/") is None
