"""AWS under moto for the handler, worker and fault tests: what template.yaml declares, created once here.

:func:`template_aws` starts ``mock_aws()`` and creates in it the operations queue and its dead-letter
queue (retention, visibility timeout, and the redrive policy with the template's default
``MaxReceiveCount``), the idempotency and visitor-sessions tables (keys, billing mode, TTL attribute)
and the recovery KMS key, all from the template's own properties, under the fixed names the tests'
environment uses. The layer's cached boto3 clients are cleared on the way in and out, so that none
made under another test's mock (or none) is used.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws, settings
from moto.core.authorization import enable_iam_authentication

from crm_bridge import aws
from crm_bridge.delivery import queue as queue_module
from crm_bridge.delivery import recovery
from crm_bridge.delivery import sessions as sessions_module
from infra.cloudformation_yaml import load_sam_file
from infra.local import iam
from infra.local.aws import CREDENTIALS, ClientsByCaller, store_secret
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
from tests.e2e.permissions import deploy_without
from tests.infra.sam import REQUIRED_PARAMETERS, TEMPLATE, parameter_default, sam_template

QUEUE_NAME = "crm-operations"
DLQ_NAME = "crm-operations-dlq"
IDEMPOTENCY_TABLE = "crm-idempotency"
SESSIONS_TABLE = "crm-visitor-sessions"


@dataclass(frozen=True)
class AwsResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    max_receive_count: int
    kms_key_id: str
    idempotency_table: str = IDEMPOTENCY_TABLE
    sessions_table: str = SESSIONS_TABLE

    def environment(self) -> dict[str, str]:
        """The queue and table variables every function gets from the template, pointing here.

        ``RECOVERY_KMS_KEY_ID`` and ``RETRY_MAX_RECEIVES`` are left to the caller: only some functions
        read them, and a test that sets one chooses that function's behaviour."""
        return {
            "CRM_QUEUE_URL": self.queue_url,
            "CRM_DLQ_URL": self.dlq_url,
            "IDEMPOTENCY_TABLE": self.idempotency_table,
            "SESSIONS_TABLE": self.sessions_table,
        }


def template_properties(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = sam_template()["Resources"][logical_id]["Properties"]
    return properties


def clear_aws_clients() -> None:
    """Forget the layer's cached boto3 clients (SQS, DynamoDB for sessions, KMS, the parameter stores)."""
    queue_module._sqs_client.cache_clear()
    aws.ssm_provider.cache_clear()
    aws.secrets_provider.cache_clear()
    sessions_module._dynamodb_client.cache_clear()
    recovery._kms_client.cache_clear()


def create_aws_resources() -> AwsResources:
    """The queues, tables and key as template.yaml declares them; call it under ``mock_aws()``."""
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(
        QueueName=DLQ_NAME,
        Attributes={"MessageRetentionPeriod": str(template_properties("DeadLetterQueue")["MessageRetentionPeriod"])},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = template_properties("OperationsQueue")
    max_receive_count = int(parameter_default("MaxReceiveCount"))
    queue_url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": str(queue["VisibilityTimeout"]),
            "MessageRetentionPeriod": str(queue["MessageRetentionPeriod"]),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dynamodb = boto3.client("dynamodb")
    for logical_id, name in (("IdempotencyTable", IDEMPOTENCY_TABLE), ("VisitorSessionsTable", SESSIONS_TABLE)):
        table = template_properties(logical_id)
        dynamodb.create_table(
            TableName=name,
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            BillingMode=table["BillingMode"],
        )
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=table["TimeToLiveSpecification"])
    key = boto3.client("kms").create_key(Description=template_properties("RecoveryKey")["Description"])
    return AwsResources(queue_url, queue_arn, dlq_url, max_receive_count, key["KeyMetadata"]["KeyId"])


@contextmanager
def template_aws() -> Iterator[AwsResources]:
    """``mock_aws()`` with the template's queues, tables and key in it, and no stale boto3 client."""
    with mock_aws():
        clear_aws_clients()
        try:
            yield create_aws_resources()
        finally:
            clear_aws_clients()


@contextmanager
def iam_set_aside() -> Iterator[None]:
    """For what a test does beside the stack, that no role of it would do (a scratch queue of its own):
    moto without IAM for a moment, with the process's own credentials."""
    enforced_from = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = enforced_from


class InProcessAws:
    """What :mod:`infra.local.stack` deploys into and reads, inside ``mock_aws()``: the runner's own
    deploy, without its server (the fault runs move moto's clock, in this process)."""

    def __init__(self) -> None:
        self.credentials = dict(CREDENTIALS)
        self._clients = ClientsByCaller()

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any:
        return self._clients.client(service, credentials or self.credentials)


@dataclass(frozen=True)
class Deployment:
    """The stack deployed in this process's moto, with IAM enforced."""

    stack: Stack
    resources: AwsResources
    roles: dict[str, dict[str, str]]
    """Each function's (logical id) role's STS credentials, as Lambda gives them to the function."""
    environments: dict[str, dict[str, str]]
    """Each function's environment, as deployed."""
    operator: dict[str, str]
    """Credentials with the stack's OperatorPolicy: the test's own view of the queues."""
    denied: list[str] = field(default_factory=list)
    """Every AccessDenied, as "caller may not action on resource"."""


@contextmanager
def deployed_aws(parameters: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> Iterator[Deployment]:
    """``mock_aws()`` with template.yaml deployed as the runner deploys it (SAM's transform, a
    CloudFormation stack), then IAM enforced: each caller has only its credentials' rights. Each
    AccessDenied is recorded and printed (the mutation run, ``make permissions``, reads it there);
    ``PERMISSIONS_WITHOUT`` (``POLICY SID:ACTION,...``) deploys without those actions. ``secrets``: kept
    before the deploy where the functions read them (``secretsmanager:<name>`` or an SSM name)."""
    with mock_aws():
        clear_aws_clients()
        iam.install()
        if without := os.environ.get("PERMISSIONS_WITHOUT"):
            deploy_without(*without.split(" ", 1))
        local = InProcessAws()
        for name, value in (secrets or {}).items():
            store_secret(local, name, value)
        stack = deploy(local, load_sam_file(TEMPLATE), REQUIRED_PARAMETERS | dict(parameters))
        configurations = {
            function.logical_id: function_configuration(local, stack, function.logical_id)
            for function in stack.of_type("AWS::Lambda::Function")
        }
        roles = {name: role_credentials(local, deployed["Role"], name) for name, deployed in configurations.items()}
        environments = {
            name: {variable: str(value) for variable, value in deployed["Environment"]["Variables"].items()}
            for name, deployed in configurations.items()
        }
        (source,) = queue_sources(local, stack)
        operations_url = queue_url(stack, source.queue)
        resources = AwsResources(
            operations_url,
            source.queue,
            queue_url(stack, dead_letter_queue_arn(local, operations_url)),
            int(stack.parameters.get("MaxReceiveCount", parameter_default("MaxReceiveCount"))),
            stack.resources["RecoveryKey"].physical_id,
            idempotency_table=stack.resources["IdempotencyTable"].physical_id,
            sessions_table=stack.resources["VisitorSessionsTable"].physical_id,
        )
        deployment = Deployment(stack, resources, roles, environments, operator_credentials(local, stack))

        def denied(caller: str, action: str, resource: str) -> None:
            deployment.denied.append(f"{caller} may not {action} on {resource}")
            print(f"AccessDenied: {deployment.denied[-1]}", file=sys.stderr)

        iam.report_denied(denied)
        try:
            with enable_iam_authentication():
                yield deployment
        finally:
            clear_aws_clients()
