"""AWS on loopback: moto's server, and the template's queues, tables and keys created in it.

The functions find it through the standard ``AWS_ENDPOINT_URL`` setting (boto3 >= 1.28 reads it
for every service), so the layer has no local code path: what it sends to SQS here is what it
sends to SQS in AWS. Resources are created from their template properties, in dependency order
(a queue's redrive policy needs its dead-letter queue's ARN first).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from infra.local.template import (
    DYNAMODB_TABLE,
    KMS_ALIAS,
    KMS_KEY,
    SQS_QUEUE,
    LocalResource,
    Resolver,
    TemplateError,
    Unresolved,
)

LOOPBACK = "127.0.0.1"
REGION = "eu-central-1"
# moto accepts any credentials; these keep a developer's real ones out of every local process.
CREDENTIALS = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "local")
# SQS attributes that are CloudFormation properties of the same name.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
)


class LocalAws:
    """moto's server on a free loopback port, for every service at one endpoint."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.endpoint = ""
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def environment(self) -> dict[str, str]:
        """What every local process needs to reach this server and nothing else."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, **CREDENTIALS}

    def client(self, service: str) -> Any:
        """A client of this server (made once per service: boto3 clients are thread-safe, making
        them is not)."""
        with self._lock:
            if service not in self._clients:
                session = boto3.session.Session(
                    aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
                    region_name=REGION,
                )
                self._clients[service] = session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]
            return self._clients[service]


@dataclass(frozen=True)
class Provisioned:
    logical_id: str
    resource_type: str
    name: str


def provision(aws: LocalAws, resolver: Resolver) -> list[Provisioned]:
    """Create the template's queues, tables, KMS keys and aliases; fill ``resolver.resources``."""
    creators: dict[str, Callable[[str, dict[str, Any]], LocalResource]] = {
        SQS_QUEUE: lambda logical_id, properties: _queue(aws, resolver, logical_id, properties),
        DYNAMODB_TABLE: lambda logical_id, properties: _table(aws, resolver, logical_id, properties),
        KMS_KEY: lambda logical_id, properties: _key(aws, resolver, properties),
        KMS_ALIAS: lambda logical_id, properties: _alias(aws, resolver, properties),
    }
    pending = [
        (logical_id, resource_type, properties)
        for resource_type in creators
        for logical_id, properties in resolver.template.of_type(resource_type).items()
    ]
    created: list[Provisioned] = []
    while pending:
        waiting = []
        for logical_id, resource_type, properties in pending:
            try:
                local = creators[resource_type](logical_id, properties)
            except Unresolved:
                waiting.append((logical_id, resource_type, properties))
                continue
            resolver.resources[logical_id] = local
            created.append(Provisioned(logical_id, resource_type, local.attributes.get("Name", local.ref)))
        if len(waiting) == len(pending):
            names = ", ".join(logical_id for logical_id, _, _ in waiting)
            raise TemplateError(f"cannot create {names} locally: they refer to resources the runner does not create")
        pending = waiting
    return created


def _physical_name(resolver: Resolver, logical_id: str, explicit: Any) -> str:
    """The name CloudFormation would give: the template's own, or one derived from the stack."""
    return str(explicit) if explicit else f"{resolver.pseudo['AWS::StackName']}-{logical_id}"


def _queue(aws: LocalAws, resolver: Resolver, logical_id: str, properties: Mapping[str, Any]) -> LocalResource:
    resolved = resolver.resolve(dict(properties))
    name = _physical_name(resolver, logical_id, resolved.get("QueueName"))
    attributes = {
        key: json.dumps(value)
        if isinstance(value, dict)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in resolved.items()
        if key in _QUEUE_ATTRIBUTES
    }
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return LocalResource(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url, "Name": name})


def _table(aws: LocalAws, resolver: Resolver, logical_id: str, properties: Mapping[str, Any]) -> LocalResource:
    resolved = resolver.resolve(dict(properties))
    name = _physical_name(resolver, logical_id, resolved.get("TableName"))
    arguments: dict[str, Any] = {
        "TableName": name,
        "KeySchema": resolved["KeySchema"],
        "AttributeDefinitions": resolved["AttributeDefinitions"],
        "BillingMode": resolved.get("BillingMode", "PROVISIONED"),
    }
    for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if key in resolved:
            arguments[key] = resolved[key]
    if "SSESpecification" in resolved:
        arguments["SSESpecification"] = {"Enabled": bool(resolved["SSESpecification"].get("SSEEnabled"))}
    dynamodb = aws.client("dynamodb")
    description = dynamodb.create_table(**arguments)["TableDescription"]
    ttl = resolved.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    return LocalResource(ref=name, attributes={"Arn": description["TableArn"], "Name": name})


def _key(aws: LocalAws, resolver: Resolver, properties: Mapping[str, Any]) -> LocalResource:
    resolved = resolver.resolve(dict(properties))
    arguments: dict[str, Any] = {
        "Description": resolved.get("Description", ""),
        "KeyUsage": resolved.get("KeyUsage", "ENCRYPT_DECRYPT"),
        "KeySpec": resolved.get("KeySpec", "SYMMETRIC_DEFAULT"),
    }
    if "KeyPolicy" in resolved:
        arguments["Policy"] = json.dumps(resolved["KeyPolicy"])
    metadata = aws.client("kms").create_key(**arguments)["KeyMetadata"]
    return LocalResource(ref=metadata["KeyId"], attributes={"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})


def _alias(aws: LocalAws, resolver: Resolver, properties: Mapping[str, Any]) -> LocalResource:
    resolved = resolver.resolve(dict(properties))
    aws.client("kms").create_alias(AliasName=resolved["AliasName"], TargetKeyId=resolved["TargetKeyId"])
    return LocalResource(ref=resolved["AliasName"], attributes={"Name": resolved["AliasName"]})


def store_secret(aws: LocalAws, name: str, value: str) -> None:
    """Keep a secret where the functions read it in AWS: an SSM SecureString, or Secrets Manager
    for ``secretsmanager:<name>`` (the prefix the layer's settings understand)."""
    if name.startswith("secretsmanager:"):
        aws.client("secretsmanager").create_secret(Name=name.removeprefix("secretsmanager:"), SecretString=value)
    else:
        aws.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def queue_depths(aws: LocalAws, url: str) -> dict[str, int]:
    """Messages waiting, in flight (or backing off) and delayed on a queue."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }
