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

from crm_bridge.api import settings as api_settings
from infra.local.http_events import LambdaContext, http_api_event
from tests.aws_setup import IDEMPOTENCY_TABLE, template_aws
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
    with template_aws() as resources:
        environment = {
            **resources.environment(),
            "RECOVERY_KMS_KEY_ID": resources.kms_key_id,
            "SITE_ORIGINS": "https://agency.example",
            "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
            "REDIRECT_WHATSAPP_NUMBER": "905321112233",
            "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield Aws(resources.queue_url, resources.dlq_url, IDEMPOTENCY_TABLE, resources.kms_key_id)


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


@pytest.fixture
def redirect(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("redirect_api")


@pytest.fixture
def messenger(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("messenger_events_api")


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
