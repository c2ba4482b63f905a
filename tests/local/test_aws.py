"""moto's server as the runner uses it: the stack deployed into it, then IAM enforced role by role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from infra.cloudformation_yaml import load_sam_file
from infra.local.aws import LocalAws, store_secret
from infra.local.stack import (
    Stack,
    dead_letter_queue_arn,
    deploy,
    function_configuration,
    operator_credentials,
    queue_sources,
    queue_url,
    role_credentials,
)
from infra.local.template import load_template, parameter_values

ROOT = Path(__file__).parents[2]
SECRET = "/crm-bridge/local/espocrm-api-key"
FUNCTIONS = ("MessengerEventsFunction", "WorkerFunction")


@pytest.fixture(scope="module")
def stack(local_aws: LocalAws) -> Stack:
    template = load_template(ROOT / "template.yaml")
    parameters = parameter_values(template, {"EspoCrmApiKeyName": SECRET})
    # moto keeps its state per process: each stack of a test session is named afresh.
    return deploy(local_aws, load_sam_file(ROOT / "template.yaml"), parameters, f"unit-{uuid.uuid4().hex[:8]}")


def test_the_stack_is_the_transformed_template_less_what_moto_cannot_create(local_aws: LocalAws, stack: Stack) -> None:
    assert stack.status == "CREATE_COMPLETE"
    assert set(stack.skipped.values()) == {
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::CloudWatch::Alarm",
    }, "the runner emulates the API; the alarms and the e-mail subscription (no AlarmEmail) are not there"
    (source,) = queue_sources(local_aws, stack)
    assert (source.function, source.report_batch_item_failures) == ("WorkerFunction", True)
    url = queue_url(stack, source.queue)
    attributes = local_aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dead_letter_queue_arn(local_aws, url) != source.queue
    assert int(redrive["maxReceiveCount"]) == int(stack.parameters["MaxReceiveCount"])
    mapping = local_aws.client("lambda").list_event_source_mappings(EventSourceArn=source.queue)
    assert [item["State"] for item in mapping["EventSourceMappings"]] == ["Disabled"], "the runner's poller plays it"

    variables = function_configuration(local_aws, stack, "WorkerFunction")["Environment"]["Variables"]
    assert variables["CRM_QUEUE_URL"] == url == stack.outputs["OperationsQueueUrl"]
    assert variables["ESPOCRM_API_KEY_PARAM"] == SECRET
    table = local_aws.client("dynamodb").describe_table(TableName=variables["IDEMPOTENCY_TABLE"])["Table"]
    assert table["TableName"] == stack.outputs["IdempotencyTableName"]


def _refused(call: Callable[[], object]) -> bool:
    """Whether IAM refused the call (moto's SQS answers it in XML, which botocore's JSON SQS reads as
    a bare 403)."""
    with pytest.raises(ClientError) as refused:
        call()
    return bool(refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403)


@dataclass
class Enforced:
    aws: LocalAws
    """A second server on the same moto state, IAM enforced (for the whole process while it runs:
    moto's setting is global, so what the test needs of the stack is read before)."""
    credentials: dict[str, dict[str, str]]
    variables: dict[str, str]
    denied: list[tuple[str, str, str]]


@pytest.fixture
def enforced(local_aws: LocalAws, stack: Stack) -> Iterator[Enforced]:
    store_secret(local_aws, SECRET, "k" * 20)
    roles = {name: function_configuration(local_aws, stack, name)["Role"] for name in FUNCTIONS}
    credentials = {name: role_credentials(local_aws, role, name) for name, role in roles.items()}
    variables = function_configuration(local_aws, stack, "WorkerFunction")["Environment"]["Variables"]
    denied: list[tuple[str, str, str]] = []
    aws = LocalAws()
    aws.start()
    aws.enforce_iam(operator_credentials(local_aws, stack), lambda *refusal: denied.append(refusal))
    yield Enforced(aws, credentials, variables, denied)
    aws.stop()


def test_each_function_may_do_what_its_role_allows_and_nothing_else(enforced: Enforced, stack: Stack) -> None:
    aws, denied = enforced.aws, enforced.denied
    messenger, worker = (enforced.credentials[name] for name in FUNCTIONS)
    variables = enforced.variables
    queue, dead_letters, table = variables["CRM_QUEUE_URL"], variables["CRM_DLQ_URL"], variables["IDEMPOTENCY_TABLE"]
    key = variables["RECOVERY_KMS_KEY_ID"]

    aws.client("sqs", messenger).send_message(QueueUrl=queue, MessageBody="{}")
    aws.client("kms", messenger).encrypt(KeyId=key, Plaintext=b"x")
    assert _refused(lambda: aws.client("sqs", messenger).send_message(QueueUrl=dead_letters, MessageBody="{}"))
    assert _refused(lambda: aws.client("dynamodb", messenger).get_item(TableName=table, Key={"id": {"S": "x"}}))

    (message,) = aws.client("sqs", worker).receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    aws.client("sqs", worker).delete_message_batch(
        QueueUrl=queue, Entries=[{"Id": "1", "ReceiptHandle": message["ReceiptHandle"]}]
    )
    aws.client("dynamodb", worker).put_item(TableName=table, Item={"id": {"S": "x"}})
    aws.client("ssm", worker).get_parameter(Name=SECRET, WithDecryption=True)
    assert _refused(lambda: aws.client("kms", worker).encrypt(KeyId=key, Plaintext=b"x"))
    assert _refused(lambda: aws.client("ssm", worker).get_parameter(Name="/another/secret"))

    # The runner and make dlq-inspect act as the operator (the stack's OperatorPolicy).
    aws.client("sqs").receive_message(QueueUrl=dead_letters, VisibilityTimeout=0)
    aws.client("cloudformation").describe_stacks(StackName=stack.name)  # make dlq-inspect STACK=...
    assert _refused(lambda: aws.client("sqs").receive_message(QueueUrl=queue))

    refusals = [(caller.split("/")[-1], action) for caller, action, _ in denied]
    assert refusals == [
        ("MessengerEventsFunction", "sqs:SendMessage"),
        ("MessengerEventsFunction", "dynamodb:GetItem"),
        ("WorkerFunction", "kms:Encrypt"),
        ("WorkerFunction", "ssm:GetParameter"),
        ("local-operator", "sqs:ReceiveMessage"),
    ]
    assert denied[1][2].endswith(f":table/{table}"), "the refusal names the resource"


def test_secrets_go_where_the_layer_reads_them(local_aws: LocalAws) -> None:
    store_secret(local_aws, "/crm-bridge/local/unit-key", "s3cr3t-value")
    store_secret(local_aws, "secretsmanager:/crm-bridge/local/unit-webhook", "https://x.bitrix24.com/rest/1/t/")

    ssm = local_aws.client("ssm").get_parameter(Name="/crm-bridge/local/unit-key", WithDecryption=True)
    secret = local_aws.client("secretsmanager").get_secret_value(SecretId="/crm-bridge/local/unit-webhook")
    assert (ssm["Parameter"]["Type"], ssm["Parameter"]["Value"]) == ("SecureString", "s3cr3t-value")
    assert secret["SecretString"] == "https://x.bitrix24.com/rest/1/t/"
