"""AWS clients from boto3's default session: one session per container, however many services.

Each boto3 session loads botocore's endpoint and service data for itself: in a cold start a client of a
second session costs 120-270 ms, another client of the same session a few (docs/performance.md).
Powertools' idempotency layer and parameter providers make a session of their own unless given a
client, so the layer gives them these (the queue, the visitor sessions and the recovery key already
use ``boto3.client``, the default session's).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
    from mypy_boto3_dynamodb import DynamoDBClient


def dynamodb_client() -> DynamoDBClient:
    """A DynamoDB client of the default session (made per caller: same session, a few ms)."""
    import boto3

    return boto3.client("dynamodb")


@cache
def ssm_provider() -> SSMProvider:
    """Powertools' SSM parameters, cached in memory per container, through the default session."""
    import boto3
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=boto3.client("ssm"))


@cache
def secrets_provider() -> SecretsProvider:
    """Powertools' Secrets Manager secrets, cached in memory per container, through the default session."""
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=boto3.client("secretsmanager"))
