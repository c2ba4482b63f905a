"""Handler tests: real HTTP API v2 events into the real handlers, moto for AWS, simulators for CRMs."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from crm_bridge.api import settings as api_settings
from crm_bridge.delivery import queue as queue_module
from crm_bridge.delivery import recovery
from infra.local.http_events import LambdaContext, http_api_event
from tests.simulators.espocrm import SimulatedEspoCrm

FUNCTIONS = Path(__file__).parents[2] / "functions"
for function_dir in sorted(FUNCTIONS.iterdir()):
    if function_dir.is_dir() and str(function_dir) not in sys.path:
        sys.path.insert(0, str(function_dir))

ESPOCRM_KEY = "api-tests-espo-key-0042"


@dataclass
class Aws:
    queue_url: str
    dlq_url: str
    idempotency_table: str
    kms_key_id: str

    def messages(self, url: str) -> list[dict[str, Any]]:
        """Everything waiting on a queue (received and left invisible: read once per test)."""
        sqs = boto3.client("sqs")
        found: list[Any] = []
        while batch := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", []):
            found.extend(batch)
        return found

    def queued(self) -> list[dict[str, Any]]:
        return self.messages(self.queue_url)

    def dead_lettered(self) -> list[dict[str, Any]]:
        return self.messages(self.dlq_url)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        queue_module._sqs_client.cache_clear()
        recovery._kms_client.cache_clear()
        sqs = boto3.client("sqs")
        dlq_url = sqs.create_queue(QueueName="crm-operations-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="crm-operations",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"})},
        )["QueueUrl"]
        boto3.client("dynamodb").create_table(
            TableName="crm-idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("dynamodb").create_table(
            TableName="crm-visitor-sessions",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        kms_key_id = boto3.client("kms").create_key(Description="crm-bridge recovery")["KeyMetadata"]["KeyId"]
        environment = {
            "CRM_QUEUE_URL": queue_url,
            "CRM_DLQ_URL": dlq_url,
            "IDEMPOTENCY_TABLE": "crm-idempotency",
            "SESSIONS_TABLE": "crm-visitor-sessions",
            "RECOVERY_KMS_KEY_ID": kms_key_id,
            "SITE_ORIGINS": "https://agency.example",
            "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
            "REDIRECT_WHATSAPP_NUMBER": "905321112233",
            "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield Aws(queue_url, dlq_url, "crm-idempotency", kms_key_id)
        queue_module._sqs_client.cache_clear()
        recovery._kms_client.cache_clear()


@pytest.fixture
def espocrm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedEspoCrm]:
    with SimulatedEspoCrm(api_key=ESPOCRM_KEY) as sim:
        monkeypatch.setenv("CRM_PROVIDER", "espocrm")
        monkeypatch.setenv("ESPOCRM_URL", sim.base_url)
        monkeypatch.setenv("ESPOCRM_API_KEY", ESPOCRM_KEY)
        yield sim


@pytest.fixture
def load_handler(aws: Aws) -> Callable[[str], ModuleType]:
    """Import a handler module afresh, as a cold start would, under the test's environment."""

    def load(module_name: str) -> ModuleType:
        api_settings.get_api_settings.cache_clear()
        sys.modules.pop(module_name, None)
        return importlib.import_module(module_name)

    return load


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: Any


def invoke(handler: ModuleType, event: dict[str, Any]) -> Answer:
    raw = handler.lambda_handler(event, LambdaContext())
    body = raw.get("body") or ""
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = body
    headers = {name.lower(): value for name, value in (raw.get("headers") or {}).items()}
    return Answer(raw["statusCode"], headers, list(raw.get("cookies") or []), parsed)


def post(handler: ModuleType, path: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    event = http_api_event(
        "POST",
        path,
        route_key=f"POST {path}",
        headers={"content-type": "application/json", **(headers or {})},
        body=raw,
        **kwargs,
    )
    return invoke(handler, event)
