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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

from crm_bridge import aws
from crm_bridge.delivery import queue as queue_module
from crm_bridge.delivery import recovery
from crm_bridge.delivery import sessions as sessions_module
from tests.infra.sam import parameter_default, sam_template

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

    def environment(self) -> dict[str, str]:
        """The queue and table variables every function gets from the template, pointing here.

        ``RECOVERY_KMS_KEY_ID`` and ``RETRY_MAX_RECEIVES`` are left to the caller: only some functions
        read them, and a test that sets one chooses that function's behaviour."""
        return {
            "CRM_QUEUE_URL": self.queue_url,
            "CRM_DLQ_URL": self.dlq_url,
            "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
            "SESSIONS_TABLE": SESSIONS_TABLE,
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
