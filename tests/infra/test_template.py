"""template.yaml after the SAM transform (offline): the promises the retry design rests on."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from crm_bridge.delivery.backoff import RetrySchedule
from crm_bridge.delivery.once import DEFAULT_EXPIRY_SECONDS
from crm_bridge.worker.settings import load_worker_settings
from tests.infra.replacement import stateful_types
from tests.infra.sam import ROOT, parameter_default, sam_template, transformed_template

# Actions on these services must name their resources: no "*" (issue 8 checks the rest of IAM).
SCOPED_SERVICES = ("sqs", "dynamodb", "ssm", "secretsmanager", "kms")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        return transformed_template(
            {"EspoCrmApiKeyName": "/crm-bridge/prod/espocrm-api-key", "Bitrix24WebhookUrlName": "/crm-bridge/prod/b24"}
        )


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::Lambda::Function")


def test_the_dead_letter_queue_alarm_fires_on_one_visible_message(template: dict[str, Any]) -> None:
    (alarm,) = [
        alarm
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_every_alarm_reaches_the_topic_and_the_email_subscription_is_optional(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) >= {
        "DeadLetterQueueAlarm",
        "QueueAgeAlarm",
        "WorkerErrorsAlarm",
        "Api5xxAlarm",
        "CrmConfigurationAlarm",
        "ShadowEnqueueAlarm",
    }
    assert all(alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] for alarm in alarms.values())
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    assert resources(template, "AWS::CloudWatch::Dashboard")


def test_the_queue_dead_letters_after_max_receive_count_which_matches_the_worker_schedule(
    template: dict[str, Any],
) -> None:
    queue = template["Resources"]["OperationsQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    worker = functions(template)["WorkerFunction"]
    assert worker["Environment"]["Variables"]["RETRY_MAX_RECEIVES"] == {"Ref": "MaxReceiveCount"}
    assert int(parameter_default("MaxReceiveCount")) == RetrySchedule().max_receives


def test_the_dead_letter_queue_outlives_the_source_queue_and_accepts_only_it(template: dict[str, Any]) -> None:
    """SQS keeps a message's first enqueue time when it dead-letters it: a DLQ that kept messages
    no longer than the source queue would drop them on arrival."""
    queue = template["Resources"]["OperationsQueue"]["Properties"]
    dlq = template["Resources"]["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 86400 > queue["MessageRetentionPeriod"]
    assert dlq["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    (source,) = dlq["RedriveAllowPolicy"]["sourceQueueArns"]
    assert source["Fn::Sub"].endswith(":${AWS::StackName}-crm-operations")
    assert queue["QueueName"] == {"Fn::Sub": "${AWS::StackName}-crm-operations"}


def test_retries_end_before_the_queue_drops_them_and_before_idempotency_forgets(template: dict[str, Any]) -> None:
    queue = template["Resources"]["OperationsQueue"]["Properties"]
    worker_timeout = functions(template)["WorkerFunction"]["Timeout"]
    schedule = RetrySchedule()
    longest = schedule.maximum_span_seconds() + schedule.max_receives * worker_timeout
    assert longest < queue["MessageRetentionPeriod"]
    assert schedule.minimum_span_seconds() >= 12 * 3600
    dlq_retention = template["Resources"]["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dlq_retention < DEFAULT_EXPIRY_SECONDS


def test_the_queue_hides_a_message_for_six_worker_timeouts_and_long_polls(template: dict[str, Any]) -> None:
    queue = template["Resources"]["OperationsQueue"]["Properties"]
    worker = functions(template)["WorkerFunction"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["ReceiveMessageWaitTimeSeconds"] == 20


def test_the_worker_reports_partial_failures_with_capped_concurrency(template: dict[str, Any]) -> None:
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["OperationsQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "WorkerFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert mapping["BatchSize"] <= 10


def test_every_function_runs_python313_on_arm64_with_the_shared_layer_and_its_handler_exists(
    template: dict[str, Any],
) -> None:
    (layer,) = [
        name for name, resource in template["Resources"].items() if resource["Type"] == "AWS::Lambda::LayerVersion"
    ]
    sam_functions = {
        name: resource["Properties"]
        for name, resource in sam_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert (
        set(functions(template))
        == set(sam_functions)
        == {
            "ApplicationsFunction",
            "MessengerEventsFunction",
            "RedirectFunction",
            "CrmHealthFunction",
            "WorkerFunction",
        }
    )
    for name, function in functions(template).items():
        assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"]), name
        assert function["Layers"] == [{"Ref": layer}], name
        assert "LogGroup" in function["LoggingConfig"], name
        code = ROOT / sam_functions[name]["CodeUri"]
        module, handler = function["Handler"].rsplit(".", 1)
        assert f"def {handler}(" in (code / f"{module}.py").read_text(), name
        assert (code / "requirements.txt").is_file(), name


def test_log_groups_expire(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    assert len(groups) == 6  # five functions and the API's access log
    assert all(group["RetentionInDays"] == {"Ref": "LogRetentionDays"} for group in groups.values())


def test_the_http_api_has_cors_throttling_and_access_logs(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]["Body"]
    assert api["x-amazon-apigateway-cors"]["allowOrigins"] == ["https://www.agency.example", "https://agency.example"]
    routes = {(path, method) for path, methods in api["paths"].items() for method in methods}
    assert routes == {
        ("/api/v1/applications", "post"),
        ("/api/v1/messenger-events", "post"),
        ("/go/{channel}", "get"),
        ("/go/{channel}", "head"),
        ("/api/v1/crm/test", "get"),
        ("/api/v1/crm/test/details", "get"),
    }
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    assert set(stage["DefaultRouteSettings"]) == {"ThrottlingRateLimit", "ThrottlingBurstLimit"}
    assert stage["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert "sourceIp" not in stage["AccessLogSettings"]["Format"]


def test_the_health_check_routes_have_their_own_low_throttle(template: dict[str, Any]) -> None:
    """Each health check asks the CRM (once a minute per instance): its routes get a throttle far
    below the API's, so they cannot take the website's share or the CRM's request budget."""
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    own = {"ThrottlingRateLimit": {"Ref": "HealthRateLimit"}, "ThrottlingBurstLimit": {"Ref": "HealthBurstLimit"}}
    assert stage["RouteSettings"]["GET /api/v1/crm/test"] == own
    assert stage["RouteSettings"]["GET /api/v1/crm/test/details"] == own
    assert int(parameter_default("HealthRateLimit")) <= 1 < int(parameter_default("ApiRateLimit"))
    assert int(parameter_default("HealthBurstLimit")) <= 5 < int(parameter_default("ApiBurstLimit"))


def test_each_public_route_has_its_own_throttle(template: dict[str, Any]) -> None:
    """A flood on one route (a script replaying /go) cannot take the others' share: each has its
    own rate and burst, parameters an operator tunes."""
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    for route, name in (
        ("POST /api/v1/applications", "Applications"),
        ("POST /api/v1/messenger-events", "MessengerEvents"),
        ("GET /go/{channel}", "Redirect"),
        ("HEAD /go/{channel}", "Redirect"),
    ):
        assert stage["RouteSettings"][route] == {
            "ThrottlingRateLimit": {"Ref": f"{name}RateLimit"},
            "ThrottlingBurstLimit": {"Ref": f"{name}BurstLimit"},
        }
        assert int(parameter_default(f"{name}RateLimit")) <= int(parameter_default(f"{name}BurstLimit"))


def test_only_operators_get_the_health_details(template: dict[str, Any]) -> None:
    """The public check is anonymous; its details need a SigV4 signature that OperatorPolicy allows."""
    paths = template["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    assert "security" not in paths["/api/v1/crm/test"]["get"]
    assert paths["/api/v1/crm/test/details"]["get"]["security"] == [{"AWS_IAM": []}]
    invoke = [statement for _, statement in _policies(template) if "execute-api:Invoke" in _listed(statement["Action"])]
    assert [statement["Resource"] for statement in invoke] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}"
            "/*/GET/api/v1/crm/test/details"
        }
    ]
    variables = functions(template)["CrmHealthFunction"]["Environment"]["Variables"]
    assert variables["HEALTH_CACHE_SECONDS"] == "60"


def test_tables_expire_their_items_and_bill_per_request(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    assert tables["IdempotencyTable"]["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert tables["VisitorSessionsTable"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert all(table["BillingMode"] == "PAY_PER_REQUEST" for table in tables.values())


def _statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for statement in document["Statement"]:
        if "Fn::If" in statement:
            yield from (branch for branch in statement["Fn::If"][1:] if "Ref" not in branch)
        else:
            yield statement


def _policies(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, role in resources(template, "AWS::IAM::Role").items():
        for policy in role.get("Policies", []):
            for statement in _statements(policy["PolicyDocument"]):
                yield name, statement
    for name, policy in resources(template, "AWS::IAM::ManagedPolicy").items():
        for statement in _statements(policy["PolicyDocument"]):
            yield name, statement


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_actions_and_no_wildcard_resources_for_data_services(template: dict[str, Any]) -> None:
    for owner, statement in _policies(template):
        actions = _listed(statement["Action"])
        assert all("*" not in action for action in actions), (owner, actions)
        if any(action.split(":")[0] in SCOPED_SERVICES for action in actions):
            assert all(resource != "*" for resource in _listed(statement["Resource"])), (owner, statement)


def test_no_generated_role_gets_an_aws_managed_policy_with_wildcards(template: dict[str, Any]) -> None:
    basic = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    for name, role in resources(template, "AWS::IAM::Role").items():
        for arn in role.get("ManagedPolicyArns", []):
            assert (
                arn in (basic, "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole") or "Fn::If" in arn
            ), (
                name,
                arn,
            )


def _role_actions(template: dict[str, Any], function: str) -> dict[str, list[Any]]:
    """Each action the function's role allows, with the resources it allows it on."""
    role = functions(template)[function]["Role"]["Fn::GetAtt"][0]
    granted: dict[str, list[Any]] = {}
    for owner, statement in _policies(template):
        if owner == role:
            for action in _listed(statement["Action"]):
                granted.setdefault(action, []).extend(_listed(statement["Resource"]))
    uses_secrets = any(
        arn == {"Fn::If": ["HasCrmSecrets", {"Ref": "CrmSecretsReadPolicy"}, {"Ref": "AWS::NoValue"}]}
        for arn in template["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
    )
    if uses_secrets:
        granted["crm-secrets"] = ["CrmSecretsReadPolicy"]
    return granted


_IDEMPOTENCY_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
"""Powertools' idempotency: no GetItem, a refused put answers with the record it found."""
_IDEMPOTENCY = {action: {"IdempotencyTable"} for action in _IDEMPOTENCY_ACTIONS}
LEAST_PRIVILEGE: dict[str, dict[str, set[str]]] = {
    # Queues now or parks what the CRM refuses; Idempotency-Key answers; the applicant's session; seals.
    "ApplicationsFunction": _IDEMPOTENCY
    | {
        "sqs:SendMessage": {"OperationsQueue", "DeadLetterQueue"},
        "dynamodb:GetItem": {"VisitorSessionsTable"},
        "dynamodb:UpdateItem": {"IdempotencyTable", "VisitorSessionsTable"},
        "dynamodb:DeleteItem": {"IdempotencyTable", "VisitorSessionsTable"},
        "kms:Encrypt": {"RecoveryKey"},
        "crm-secrets": {"CrmSecretsReadPolicy"},
    },
    "MessengerEventsFunction": {"sqs:SendMessage": {"OperationsQueue"}, "kms:Encrypt": {"RecoveryKey"}},
    "RedirectFunction": {"sqs:SendMessage": {"OperationsQueue"}, "kms:Encrypt": {"RecoveryKey"}},
    "CrmHealthFunction": {"crm-secrets": {"CrmSecretsReadPolicy"}},
    # Lambda's poller needs Receive/Delete/GetQueueAttributes; backoff is ChangeMessageVisibility.
    "WorkerFunction": _IDEMPOTENCY
    | {
        "sqs:ReceiveMessage": {"OperationsQueue"},
        "sqs:DeleteMessage": {"OperationsQueue"},
        "sqs:GetQueueAttributes": {"OperationsQueue"},
        "sqs:ChangeMessageVisibility": {"OperationsQueue"},
        "sqs:SendMessage": {"DeadLetterQueue"},
        "dynamodb:GetItem": {"VisitorSessionsTable"},
        "dynamodb:PutItem": {"IdempotencyTable", "VisitorSessionsTable"},
        "dynamodb:UpdateItem": {"IdempotencyTable", "VisitorSessionsTable"},
        "dynamodb:DeleteItem": {"IdempotencyTable", "VisitorSessionsTable"},
        "crm-secrets": {"CrmSecretsReadPolicy"},
    },
}
"""What each function's code uses, and so all its role may allow: no other function's queue, table,
key or secret, and no action it never calls."""


def test_each_function_gets_only_what_it_uses(template: dict[str, Any]) -> None:
    granted = {
        function: {
            action: {resource["Fn::GetAtt"][0] if isinstance(resource, dict) else resource for resource in resources}
            for action, resources in _role_actions(template, function).items()
        }
        for function in functions(template)
    }
    assert granted == LEAST_PRIVILEGE


def test_no_statement_allows_by_exclusion(template: dict[str, Any]) -> None:
    for owner, statement in _policies(template):
        assert statement["Effect"] == "Allow", owner
        assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys(), (owner, statement)


def test_crm_secrets_are_readable_by_name_only(template: dict[str, Any]) -> None:
    statements = list(_statements(template["Resources"]["CrmSecretsReadPolicy"]["Properties"]["PolicyDocument"]))
    by_action = {statement["Action"]: statement["Resource"] for statement in statements}
    ssm = [resource["Fn::If"][1]["Fn::Sub"] for resource in by_action["ssm:GetParameter"]]
    assert ssm[0] == "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${EspoCrmApiKeyName}"
    secrets = [resource["Fn::If"][1]["Fn::Sub"] for resource in by_action["secretsmanager:GetSecretValue"]]
    assert all(secret.endswith("-??????") for secret in secrets)


def test_the_worker_environment_satisfies_its_settings(template: dict[str, Any]) -> None:
    variables = functions(template)["WorkerFunction"]["Environment"]["Variables"]
    environment = {name: "x" if isinstance(value, dict) else str(value) for name, value in variables.items()}
    environment["RETRY_MAX_RECEIVES"] = str(parameter_default("MaxReceiveCount"))
    settings = load_worker_settings(environment)
    assert settings.retry == RetrySchedule()


def test_samconfig_deploys_dev_and_prod_with_every_required_parameter() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    declared = sam_template()["Parameters"]
    required = {name for name, parameter in declared.items() if "Default" not in parameter}
    for environment in ("dev", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
        assert required <= overrides.keys() <= declared.keys(), environment
        for name, value in overrides.items():
            pattern = declared[name].get("AllowedPattern")
            assert pattern is None or re.fullmatch(pattern, value), (environment, name)
            allowed = declared[name].get("AllowedValues")
            assert allowed is None or value in [str(choice) for choice in allowed], (environment, name)
        assert deploy["stack_name"] == f"crm-bridge-{environment}"
        assert "CAPABILITY_IAM" in deploy["capabilities"]


def test_every_function_gets_the_shadow_crm_where_it_gets_the_primary(template: dict[str, Any]) -> None:
    shadow = template["Parameters"]["CrmShadowProvider"]
    assert (shadow["AllowedValues"], shadow["Default"]) == (["", "espocrm", "bitrix24"], "")
    for name, function in functions(template).items():
        variables = function["Environment"]["Variables"]
        assert variables["CRM_PROVIDER"] == {"Ref": "CrmProvider"}, name
        assert variables["CRM_SHADOW_PROVIDER"] == {"Ref": "CrmShadowProvider"}, name
    # Whichever CRM is the shadow, the worker (which delivers its copies) may read its secrets.
    policy = template["Resources"]["CrmSecretsReadPolicy"]["Properties"]["PolicyDocument"]
    by_action = {statement["Action"]: statement["Resource"] for statement in _statements(policy)}
    readable = {resource["Fn::If"][0] for resource in by_action["ssm:GetParameter"]}
    assert readable == {"HasEspoCrmApiKey", "HasEspoCrmHmacSecret", "HasBitrix24Webhook"}
    assert "crm-secrets" in LEAST_PRIVILEGE["WorkerFunction"]


def _holds(condition: Any, parameters: dict[str, str]) -> Any:
    """A rule's condition or assertion, evaluated as CloudFormation would for these parameter values."""
    if isinstance(condition, str):
        return condition
    ((function, argument),) = condition.items()
    match function:
        case "Ref":
            return parameters[argument]
        case "Fn::Equals":
            return _holds(argument[0], parameters) == _holds(argument[1], parameters)
        case "Fn::Not":
            return not _holds(argument[0], parameters)
        case "Fn::And":
            return all(_holds(part, parameters) for part in argument)
    raise AssertionError(f"unexpected rule function {function}")


def _refused(template: dict[str, Any], **parameters: str) -> list[str]:
    values = {"EspoCrmUrl": "", "EspoCrmApiKeyName": "", "Bitrix24WebhookUrlName": "", **parameters}
    return [
        name
        for name, rule in template["Rules"].items()
        if _holds(rule.get("RuleCondition", True), values)
        and not all(_holds(assertion["Assert"], values) for assertion in rule["Assertions"])
    ]


def test_a_shadow_that_could_not_work_is_refused_at_deploy_time(template: dict[str, Any]) -> None:
    espocrm = {"EspoCrmUrl": "https://crm.example.com", "EspoCrmApiKeyName": "/crm-bridge/prod/espocrm-api-key"}
    bitrix24 = {"Bitrix24WebhookUrlName": "/crm-bridge/prod/bitrix24-webhook-url"}

    assert _refused(template, CrmProvider="espocrm", CrmShadowProvider="", **espocrm) == []
    assert _refused(template, CrmProvider="espocrm", CrmShadowProvider="bitrix24", **espocrm, **bitrix24) == []
    assert _refused(template, CrmProvider="bitrix24", CrmShadowProvider="espocrm", **espocrm, **bitrix24) == []
    assert _refused(template, CrmProvider="espocrm", CrmShadowProvider="espocrm", **espocrm) == ["ShadowIsTheOtherCrm"]
    assert _refused(template, CrmProvider="espocrm", CrmShadowProvider="bitrix24", **espocrm) == [
        "Bitrix24ShadowIsConfigured"
    ]
    assert _refused(template, CrmProvider="bitrix24", CrmShadowProvider="espocrm", **bitrix24) == [
        "EspoCrmShadowIsConfigured"
    ]


PER_CRM_OUTCOMES = (
    "LeadsCreated",
    "LeadsUpdated",
    "OperationsDelivered",
    "OperationsRetried",
    "OperationsDeadLettered",
    "CrmConfigurationErrors",
)


def test_the_dashboard_shows_outcomes_per_crm_and_the_shadow_copies_not_queued(template: dict[str, Any]) -> None:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = re.sub(r"\$\{[^}]+\}", "0", dashboard["DashboardBody"]["Fn::Sub"][0])
    widgets = json.loads(body)["widgets"]
    (per_crm,) = [widget for widget in widgets if widget["properties"]["title"].startswith("Outcomes by CRM")]
    lines = {
        tuple(line[:-1]) if isinstance(line[-1], dict) else tuple(line) for line in per_crm["properties"]["metrics"]
    }

    for provider in ("espocrm", "bitrix24"):
        for name in PER_CRM_OUTCOMES:
            assert ("CrmBridge", name, "provider", provider, "service", "crm-bridge") in lines, (name, provider)
    assert ("CrmBridge", "ShadowEnqueueFailures", "service", "crm-bridge") in lines


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_what_holds_data_follows_data_deletion_policy(policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead letters, once-only keys, sessions, the recovery key and the logs it unseals outlive the
    stack (a deletion, a rollback, a replacing update) unless the stack is a throwaway."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    deployed = transformed_template({"DataDeletionPolicy": policy})
    assert "Transform" not in deployed  # what CloudFormation runs: both transforms done
    stateful = {
        logical_id: resource
        for logical_id, resource in deployed["Resources"].items()
        if resource["Type"] in stateful_types()
    }
    assert set(stateful) == {
        "OperationsQueue",
        "DeadLetterQueue",
        "IdempotencyTable",
        "VisitorSessionsTable",
        "RecoveryKey",
        "ApiAccessLogGroup",
        *(f"{function}LogGroup" for function in ("Applications", "MessengerEvents", "Redirect", "CrmHealth", "Worker")),
    }
    for logical_id, resource in stateful.items():
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (policy, policy), logical_id


def test_data_is_retained_unless_a_stack_says_otherwise_and_no_environment_does() -> None:
    assert parameter_default("DataDeletionPolicy") == "Retain"
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for environment in ("dev", "prod"):
        overrides = config[environment]["deploy"]["parameters"]["parameter_overrides"]
        assert not [item for item in overrides if item.startswith("DataDeletionPolicy=")], environment


def test_a_deleted_key_waits_the_longest_window_and_tables_recover_to_a_point_in_time(template: dict[str, Any]) -> None:
    """Its deletion cancellable for 30 days (sealed operations stay recoverable); tables restorable
    to any second of 35 days, and backed up by DynamoDB once deleted."""
    assert template["Resources"]["RecoveryKey"]["Properties"]["PendingWindowInDays"] == 30
    for table in resources(template, "AWS::DynamoDB::Table").values():
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
