"""IAM in the local moto server as AWS evaluates it, where moto (5.x) evaluates it differently.

With IAM enforced, moto checks each request's action against the caller's policies, but:

* only SQS (and S3) requests name their resource: a DynamoDB, KMS, SSM, Secrets Manager or
  CloudFormation request is checked against ``*``, which no statement scoped to a table, key,
  parameter, secret or stack matches, so every least-privilege policy would be refused. Here they name
  the table, key, parameter, secret and stack ARN, as AWS does;
* its CloudFormation leaves ``AWS::NoValue`` in a policy's lists as a null (which fails the check
  of every request that reaches it): here it is dropped, as CloudFormation drops it;
* a role its CloudFormation creates keeps its inline policies as objects where the IAM checks expect
  JSON text (every request of the role then fails with a server error), and never gets its
  ``ManagedPolicyArns``. Here they are text and attached; AWS's own managed policies, which moto
  does not load (AWSLambdaBasicExecutionRole: the logs Lambda writes, not the function), are left out;
* its policy matching reads a resource pattern as a regular expression with ``*`` widened: a ``.`` of an
  ARN matches any character and the ``?`` of a Secrets Manager ARN (``secret:name-??????``, the random
  suffix) breaks it. Here ``*`` and ``?`` are IAM's wildcards and everything else is literal;
* a DLQ redrive (``StartMessageMoveTask``) is checked against ``*``: here against its source queue,
  as AWS checks it;
* the SQS batch actions are checked as ``sqs:SendMessageBatch`` etc., actions IAM does not have:
  AWS authorises them as the single action (``sqs:SendMessage``, ``sqs:DeleteMessage``,
  ``sqs:ChangeMessageVisibility``).

:func:`install` applies these corrections to the moto server of this process (the runner's own);
:func:`report_denied` names every refusal (who, which action, on what) before moto answers it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from moto.cloudformation.responses import CloudFormationResponse
from moto.core.exceptions import AccessDeniedError
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMPolicyStatement, IAMRequest
from moto.iam.models import ManagedPolicy, Role, iam_backends
from moto.kms.models import kms_backends
from moto.kms.responses import KmsResponse
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sqs.responses import SQSResponse
from moto.ssm.responses import SimpleSystemManagerResponse

_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


class _SqsRequest(IAMRequest):
    def __init__(self, *, action: str, **arguments: Any) -> None:
        super().__init__(action=_BATCH_ACTIONS.get(action, action), **arguments)


def _sqs_authorize(response: Any, resource: str = "*") -> None:
    if resource == "*" and response._get_param("SourceArn"):  # a move task: AWS checks its source queue
        resource = response._get_param("SourceArn")
    response._authenticate_and_authorize_action(_SqsRequest, resource)


def _table(response: Any) -> str:
    name = response._get_param("TableName")
    return f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{name}" if name else "*"


def _looked_up(response: Any, parameter: str, arn_of: Callable[[str], object]) -> str:
    """The ARN of the resource the request's ``parameter`` names; ``*`` when it names none or none
    exists (the action itself then answers NotFound to whoever may call it)."""
    name = response._get_param(parameter)
    if not name:
        return "*"
    try:
        return str(arn_of(name))
    except Exception:
        return "*"


def _key(response: Any) -> str:
    keys = kms_backends[response.current_account][response.region]
    return _looked_up(response, "KeyId", lambda key_id: keys.describe_key(key_id).arn)


def _parameter(response: Any) -> str:
    name = str(response._get_param("Name") or "")
    if not name:
        return "*"
    return f"arn:aws:ssm:{response.region}:{response.current_account}:parameter/{name.lstrip('/')}"


def _secret(response: Any) -> str:
    return _looked_up(response, "SecretId", lambda secret_id: response.backend.describe_secret(secret_id).arn)


def _stack(response: Any) -> str:
    return _looked_up(response, "StackName", lambda name: response.cloudformation_backend.get_stack(name).stack_id)


Denied = Callable[[str, str, str], None]
"""``(caller ARN, action, resource)``"""


_moto_check = IAMRequest.check_action_permitted
_moto_create_role = Role.create_from_cloudformation_json
_moto_create_policy = ManagedPolicy.create_from_cloudformation_json
_on_denied: list[Denied] = []


def _wildcard_match(pattern: str, string: str) -> re.Match[str] | None:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; everything else literal."""
    expression = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.match(f"^{expression}$", string)


def _check_action_permitted(request: IAMRequest, resource: str) -> None:
    try:
        _moto_check(request, resource)
    except AccessDeniedError:
        for report in _on_denied:
            report(request._access_key.arn, request._action, resource)
        raise


def _without_no_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_no_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_no_value(item) for item in value if item is not None]
    return value


def _create_policy(
    cls: type[ManagedPolicy], resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kwargs: Any
) -> ManagedPolicy:
    return _moto_create_policy(resource_name, _without_no_value(cloudformation_json), *args, **kwargs)


def _create_role(
    cls: type[Role], resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kwargs: Any
) -> Role:
    cloudformation_json = _without_no_value(cloudformation_json)
    role = _moto_create_role(resource_name, cloudformation_json, *args, **kwargs)
    role.policies = {
        name: document if isinstance(document, str) else json.dumps(document)
        for name, document in role.policies.items()
    }
    backend = iam_backends[role.account_id][role.partition]
    existing = {policy.arn for policy in backend.managed_policies.values()}
    for arn in cloudformation_json["Properties"].get("ManagedPolicyArns") or []:
        if arn in existing:
            backend.attach_role_policy(arn, role.name)
    return role


def install() -> None:
    """Call before the deploy: roles are corrected as the stack creates them."""
    ManagedPolicy.create_from_cloudformation_json = classmethod(_create_policy)  # type: ignore[method-assign,assignment]
    Role.create_from_cloudformation_json = classmethod(_create_role)  # type: ignore[method-assign,assignment]
    IAMRequest.check_action_permitted = _check_action_permitted  # type: ignore[method-assign,assignment]
    SQSResponse._authenticate_and_authorize_normal_action = _sqs_authorize  # type: ignore[method-assign,assignment]
    DynamoHandler._determine_resource = _table  # type: ignore[attr-defined]
    KmsResponse._determine_resource = _key  # type: ignore[attr-defined]
    SimpleSystemManagerResponse._determine_resource = _parameter  # type: ignore[attr-defined]
    CloudFormationResponse._determine_resource = _stack  # type: ignore[attr-defined]
    IAMPolicyStatement._match = staticmethod(_wildcard_match)  # type: ignore[method-assign]
    SecretsManagerResponse._determine_resource = _secret  # type: ignore[attr-defined]


def report_denied(on_denied: Denied) -> None:
    _on_denied[:] = [on_denied]
