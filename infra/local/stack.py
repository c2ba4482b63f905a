"""The local system is a deployment: template.yaml, through SAM's transform, as a CloudFormation stack
in the local moto server, with the local parameters.

Everything the runner needs is then read from the stack: the queues, tables and key (its resources and
outputs), each function's environment, timeout and role (Lambda's configuration of the deployed
function), and the worker's batching (the deployed event source mapping). What moto's CloudFormation
does not create (the HTTP API and its stage, the alarms, the e-mail subscription) is listed in
:attr:`Stack.skipped`; the runner emulates the API from the transformed template.

The functions' code is not in the stack: moto's Lambda runs no code here, so the stack's code objects
are empty archives, and each local function process runs the working tree's code.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from moto.awslambda import models as lambda_models
from moto.cloudformation import parsing as cloudformation_parsing

from infra.local.aws import REGION, AwsClients
from infra.local.template import QueueSource, TemplateError
from infra.sam import ARTIFACTS_BUCKET, code_objects, transform

STACK_NAME = "crm-bridge-local"
OPERATOR = "local-operator"


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    resource_type: str
    physical_id: str


@dataclass(frozen=True)
class Stack:
    name: str
    status: str
    template: dict[str, Any]
    """The transformed template, as deployed."""
    parameters: dict[str, str]
    resources: dict[str, StackResource]
    outputs: dict[str, str]

    @property
    def skipped(self) -> dict[str, str]:
        """Resources of the template the stack does not have (moto's CloudFormation skips their type)."""
        return {
            logical_id: resource["Type"]
            for logical_id, resource in self.template["Resources"].items()
            if logical_id not in self.resources and "Condition" not in resource
        }

    def of_type(self, resource_type: str) -> list[StackResource]:
        return [resource for resource in self.resources.values() if resource.resource_type == resource_type]


def deploy(aws: AwsClients, sam: dict[str, Any], parameters: Mapping[str, Any], name: str = STACK_NAME) -> Stack:
    """``sam deploy`` into moto: transform, upload the code objects, create the stack, read it back.

    The stack's SQS event source mappings are then disabled in moto: moto's own would invoke the
    function (in Docker) on every SendMessage; the runner's poller plays them (:func:`queue_sources`)."""
    return _submit(aws, sam, parameters, name, update=False)


def update(aws: AwsClients, sam: dict[str, Any], parameters: Mapping[str, Any], name: str = STACK_NAME) -> Stack:
    """``sam deploy`` of another release onto the deployed stack ``name``: CloudFormation's update.

    A change that AWS would *replace* a stateful resource for is refused before it ships
    (tests/infra/test_replacement.py); everything else is updated in place, as in AWS
    (:func:`_moto_as_cloudformation`)."""
    return _submit(aws, sam, parameters, name, update=True)


def _submit(aws: AwsClients, sam: dict[str, Any], parameters: Mapping[str, Any], name: str, *, update: bool) -> Stack:
    _moto_as_cloudformation()
    transformed = transform(sam, dict(parameters), REGION)
    s3 = aws.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # moto's state is its process's: stacks share it
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    for key in code_objects(transformed):
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=empty.getvalue())
    cloudformation = aws.client("cloudformation")
    values = {key: ",".join(value) if isinstance(value, list) else str(value) for key, value in parameters.items()}
    submit = cloudformation.update_stack if update else cloudformation.create_stack
    with warnings.catch_warnings():  # moto warns of each type it skips as it reads: Stack.skipped lists them
        warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto")
        submit(
            StackName=name,
            TemplateBody=json.dumps(transformed),
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        description = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        listed = cloudformation.describe_stack_resources(StackName=name)["StackResources"]
    if description["StackStatus"] != ("UPDATE_COMPLETE" if update else "CREATE_COMPLETE"):
        reason = description.get("StackStatusReason", "")
        raise TemplateError(f"stack {name}: {description['StackStatus']} {reason}".strip())
    resources = {
        item["LogicalResourceId"]: StackResource(
            item["LogicalResourceId"], item["ResourceType"], item.get("PhysicalResourceId", "")
        )
        for item in listed
        if "LogicalResourceId" in item  # moto lists what it skipped without one
    }
    stack = Stack(
        name=name,
        status=description["StackStatus"],
        template=transformed,
        parameters=values,
        resources=resources,
        outputs={output["OutputKey"]: output["OutputValue"] for output in description.get("Outputs", [])},
    )
    lambda_ = aws.client("lambda")
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping"):
        lambda_.update_event_source_mapping(UUID=mapping.physical_id, Enabled=False)
    return stack


@cache
def _moto_as_cloudformation() -> None:
    """Where moto's CloudFormation differs from AWS's in what this stack needs (moto runs in this process):

    * ``!Ref`` to an ``AWS::Lambda::LayerVersion`` is the layer version's ARN (moto gives its object,
      which a function's update then fails on);
    * an update sets a changed resource to what its type's update returns in moto, and to None for a
      type without one (DynamoDB tables, KMS keys): the table or key is still there, but the stack
      no longer knows it and the next ``!GetAtt`` to it fails. AWS updates it in place: it stays."""
    lambda_models.LayerVersion.physical_resource_id = property(lambda layer: layer.arn)  # type: ignore[attr-defined]
    update_resource = cloudformation_parsing.parse_and_update_resource

    def updated_in_place(
        logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        original = resources_map[logical_id]
        return update_resource(logical_id, resource_json, resources_map, account_id, region_name) or original

    cloudformation_parsing.parse_and_update_resource = updated_in_place


def function_configuration(aws: AwsClients, stack: Stack, logical_id: str) -> dict[str, Any]:
    """Lambda's configuration of a deployed function (environment, timeout, memory, role)."""
    configuration: dict[str, Any] = aws.client("lambda").get_function_configuration(
        FunctionName=stack.resources[logical_id].physical_id
    )
    return configuration


def queue_sources(aws: AwsClients, stack: Stack) -> list[QueueSource]:
    """The stack's SQS event source mappings, as deployed."""
    lambda_ = aws.client("lambda")
    by_name = {resource.physical_id: resource.logical_id for resource in stack.of_type("AWS::Lambda::Function")}
    sources = []
    for resource in stack.of_type("AWS::Lambda::EventSourceMapping"):
        mapping = lambda_.get_event_source_mapping(UUID=resource.physical_id)
        if ":sqs:" not in mapping["EventSourceArn"]:
            continue
        sources.append(
            QueueSource(
                function=by_name[mapping["FunctionArn"].rsplit(":", 1)[1]],
                queue=mapping["EventSourceArn"],
                batch_size=int(mapping.get("BatchSize", 10)),
                batching_window_seconds=int(mapping.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []),
                maximum_concurrency=(mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"),
            )
        )
    return sources


def queue_url(stack: Stack, arn: str) -> str:
    """The URL of the stack's queue of this ARN (as its functions' variables have it)."""
    name = arn.rsplit(":", 1)[1]
    for queue in stack.of_type("AWS::SQS::Queue"):
        if queue.physical_id.rsplit("/", 1)[1] == name:
            return queue.physical_id
    raise TemplateError(f"{arn} is no queue of the stack")


def dead_letter_queue_arn(aws: AwsClients, url: str) -> str:
    """The queue a queue's redrive policy dead-letters to."""
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    if "RedrivePolicy" not in attributes:
        raise TemplateError("the worker's queue has no RedrivePolicy: the runner needs the queue and its DLQ")
    arn: str = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    return arn


def role_credentials(aws: AwsClients, role_arn: str, session_name: str) -> dict[str, str]:
    """STS credentials of a role, as Lambda gives its function's execution role to the function."""
    credentials = aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


def operator_credentials(aws: AwsClients, stack: Stack) -> dict[str, str]:
    """An IAM user with the stack's OperatorPolicy (what an operator attaches to their role): the
    runner's own view of the queues, make dlq-inspect and the tests' checks act with its rights."""
    iam = aws.client("iam")
    iam.create_user(UserName=OPERATOR)
    iam.attach_user_policy(UserName=OPERATOR, PolicyArn=stack.outputs["OperatorPolicyArn"])
    key = iam.create_access_key(UserName=OPERATOR)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
