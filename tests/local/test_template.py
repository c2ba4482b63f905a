"""The runner reads template.yaml by resource type: what it finds there is what it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local.template import (
    LocalResource,
    Resolver,
    Route,
    Template,
    TemplateError,
    load_template,
    parameter_values,
)

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def test_the_routes_are_the_http_api_events_of_the_functions(template: Template) -> None:
    routes = {route.route_key: route.function for route in template.routes()}

    assert set(routes) == {
        "POST /api/v1/applications",
        "POST /api/v1/messenger-events",
        "GET /go/{channel}",
        "HEAD /go/{channel}",
        "GET /api/v1/crm/test",
        "GET /api/v1/crm/test/details",
    }
    functions = template.functions()
    for function in routes.values():
        assert (functions[function].code_dir / f"{functions[function].module}.py").is_file()


def test_the_worker_is_fed_by_the_queue_that_dead_letters_to_the_dlq(template: Template) -> None:
    main_queue, dead_letter_queue = template.main_and_dead_letter_queues()
    (source,) = template.queue_sources()

    assert source.queue == main_queue
    assert source.report_batch_item_failures
    assert 1 <= source.batch_size <= 10
    assert dead_letter_queue != main_queue


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


SYNTHETIC = """
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Origins: {Type: CommaDelimitedList, Default: "https://a.example,https://b.example"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Queue: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/x/
      Handler: x.lambda_handler
      Environment:
        Variables:
          QUEUE_URL: !Ref Queue
          QUEUE_ARN: !GetAtt Queue.Arn
          NAME: !Sub "${AWS::StackName}-${Stage}-${Queue.QueueName}"
          ORIGINS: !Join [",", !Ref Origins]
          FIRST: !Select [0, !Ref Origins]
          MODE: !If [IsProd, strict, !If [NotProd, relaxed, never]]
          GONE: !If [IsProd, x, !Ref AWS::NoValue]
          LITERAL: !Sub "${!NotAVariable}"
      Events:
        Any: {Type: HttpApi, Properties: {Path: "/files/{path+}", Method: any}}
        Get: {Type: HttpApi, Properties: {Path: "/files/{id}", Method: get}}
        Exact: {Type: HttpApi, Properties: {Path: /files/index, Method: get}}
"""


def test_intrinsic_functions_resolve_against_local_resources(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SYNTHETIC, encoding="utf-8")
    template = load_template(path)
    resolver = Resolver(
        template,
        parameter_values(template, {}),
        region="eu-central-1",
        stack_name="local",
        resources={"Queue": LocalResource("http://q/url", {"Arn": "arn:q", "QueueName": "q"})},
    )

    environment = resolver.environment(template.functions()["Fn"])

    assert environment == {
        "QUEUE_URL": "http://q/url",
        "QUEUE_ARN": "arn:q",
        "NAME": "local-dev-q",
        "ORIGINS": "https://a.example,https://b.example",
        "FIRST": "https://a.example",
        "MODE": "relaxed",
        "LITERAL": "${NotAVariable}",
    }


def test_routes_match_as_api_gateway_matches_them(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SYNTHETIC, encoding="utf-8")
    routes = load_template(path).routes()

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
