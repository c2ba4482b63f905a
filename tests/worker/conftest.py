"""The worker under test: moto's SQS and DynamoDB built from template.yaml, Lambda's SQS poller
imitated (:class:`EventSourceMapping`), the CRM simulators behind respx, and no real waiting."""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from crm_bridge.delivery import queue as queue_module
from crm_bridge.models import (
    Application,
    MessengerActivity,
    MessengerClickOperation,
    Operation,
    Origin,
    UpsertLeadOperation,
)
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.worker import Worker, get_worker
from crm_bridge.worker.settings import get_worker_settings
from infra.local.http_events import LambdaContext
from tests.aws_setup import clear_aws_clients, template_aws
from tests.simulators.bitrix24 import SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

WORKER_DIR = Path(__file__).parents[2] / "functions" / "worker"
ESPOCRM_KEY = "worker-tests-espo-key-0042"
BITRIX24_TOKEN = "worker0tests0token0x42"
JITTER = 0.5
"""What the worker's random source returns in these tests: delays are exactly predictable."""


@dataclass
class Aws:
    queue_url: str
    queue_arn: str
    dlq_url: str
    max_receive_count: int

    @property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    def dead_lettered(self) -> list[dict[str, Any]]:
        """Everything in the DLQ, released again afterwards (so tests can look twice)."""
        return _drain(self.sqs, self.dlq_url)

    def waiting(self) -> int:
        """Messages still on the operations queue, visible or not."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", []):
        found.extend(batch)
    for message in found:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return found


def attributes_of(message: dict[str, Any]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The queue, its DLQ and the two tables, with the template's settings (retention, visibility,
    maxReceiveCount), and the worker's environment pointing at them."""
    with template_aws() as resources:
        _clear_caches()
        for name, value in {
            **resources.environment(),
            "RETRY_MAX_RECEIVES": str(resources.max_receive_count),
            "AWS_LAMBDA_FUNCTION_NAME": "crm-bridge-worker",
        }.items():
            monkeypatch.setenv(name, value)
        yield Aws(resources.queue_url, resources.queue_arn, resources.dlq_url, resources.max_receive_count)
        _clear_caches()


def _clear_caches() -> None:
    clear_aws_clients()
    get_worker.cache_clear()
    get_worker_settings.cache_clear()


@pytest.fixture(autouse=True)
def _no_metrics_left_over() -> Iterator[None]:
    """Metrics Powertools buffers for the next flush must not leak into another test."""
    yield
    get_metrics().clear_metrics()


@pytest.fixture
def espocrm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedEspoCrm]:
    with SimulatedEspoCrm(api_key=ESPOCRM_KEY) as sim:
        monkeypatch.setenv("CRM_PROVIDER", "espocrm")
        monkeypatch.setenv("ESPOCRM_URL", sim.base_url)
        monkeypatch.setenv("ESPOCRM_API_KEY", ESPOCRM_KEY)
        yield sim


@pytest.fixture
def bitrix24(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedBitrix24]:
    with SimulatedBitrix24(token=BITRIX24_TOKEN) as sim:
        monkeypatch.setenv("CRM_PROVIDER", "bitrix24")
        monkeypatch.setenv("BITRIX24_WEBHOOK_URL", sim.webhook_url)
        yield sim


class RecordingSqs:
    """The worker's SQS client, noting each backoff it asks for (and otherwise just SQS)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.postponed: list[int] = []

    def change_message_visibility(self, **kwargs: Any) -> Any:
        self.postponed.append(kwargs["VisibilityTimeout"])
        return self._client.change_message_visibility(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class Lambda:
    """The deployed worker: the real handler module, its worker's jitter pinned, its SQS calls recorded."""

    module: ModuleType
    sqs: RecordingSqs

    @property
    def worker(self) -> Worker:
        worker: Worker = self.module.worker
        return worker

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.lambda_handler(
            event, LambdaContext(function_name="crm-bridge-worker", timeout_seconds=60)
        )
        return response


def cold_start_worker(aws: Aws) -> Lambda:
    """The worker's handler, cold-started under the environment as it is now (as a deployment does)."""
    _clear_caches()
    from crm_bridge import settings as settings_module
    from crm_bridge.providers import factory

    settings_module.get_settings.cache_clear()
    factory.get_provider.cache_clear()
    if str(WORKER_DIR) not in sys.path:
        sys.path.insert(0, str(WORKER_DIR))
    sys.modules.pop("crm_worker", None)
    module = importlib.import_module("crm_worker")
    recording = RecordingSqs(boto3.client("sqs"))
    worker: Worker = module.worker
    worker.queue = queue_module.OperationQueue(aws.queue_url, aws.dlq_url, client=recording)
    worker.random = lambda: JITTER
    return Lambda(module, recording)


@pytest.fixture
def worker_lambda(aws: Aws) -> Callable[[], Lambda]:
    """Cold-start the worker's handler under the test's environment (call again after a change of
    configuration, as a deployment would)."""
    return partial(cold_start_worker, aws)


@dataclass
class Poll:
    received: list[str]
    failed: list[str]


@dataclass
class EventSourceMapping:
    """What Lambda's SQS poller does: receive a batch, invoke, delete what did not fail.

    Time never passes by itself: :meth:`backoff_elapses` makes the messages the worker postponed
    visible again, as if their visibility timeout had run out.
    """

    aws: Aws
    function: Lambda
    batch_size: int = 5
    receives: Counter[str] = field(default_factory=Counter)
    _postponed: list[str] = field(default_factory=list)

    def receive_batch(self) -> list[Any]:
        """One batch as the event source mapping receives it (attributes and receive counts included)."""
        return list(
            self.aws.sqs.receive_message(
                QueueUrl=self.aws.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
        )

    def poll(self) -> Poll:
        messages = self.receive_batch()
        if not messages:
            return Poll([], [])
        self.receives.update(message["MessageId"] for message in messages)
        response = self.function.invoke(self.event(messages))
        failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
        for message in messages:
            if message["MessageId"] in failed:
                self._postponed.append(message["ReceiptHandle"])
            else:
                self.aws.sqs.delete_message(QueueUrl=self.aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return Poll([message["MessageId"] for message in messages], failed)

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS event Lambda builds from received messages."""
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message["Attributes"],
                    "messageAttributes": {
                        name: {
                            "stringValue": value.get("StringValue"),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": value["DataType"],
                        }
                        for name, value in message.get("MessageAttributes", {}).items()
                    },
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.aws.queue_arn,
                    "awsRegion": "eu-central-1",
                }
                for message in messages
            ]
        }

    def backoff_elapses(self) -> None:
        for receipt in self._postponed:
            self.aws.sqs.change_message_visibility(
                QueueUrl=self.aws.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        self._postponed.clear()

    def run(self, rounds: int = 50) -> int:
        """Poll and let backoffs elapse until the queue is empty; returns the rounds it took."""
        for round_number in range(1, rounds + 1):
            while self.poll().received:
                pass
            if not self._postponed:
                return round_number
            self.backoff_elapses()
        raise AssertionError(f"the queue still holds operations after {rounds} rounds")


@pytest.fixture
def poller(aws: Aws, worker_lambda: Callable[[], Lambda]) -> EventSourceMapping:
    return EventSourceMapping(aws, worker_lambda())


def application(number: int, **changes: Any) -> UpsertLeadOperation:
    """A distinct applicant per number (phones are E.164 after parsing; names are made up)."""
    fields: dict[str, Any] = {
        "name": f"Applicant Number{number}",
        "phone": f"+90532100{number:04d}",
        "consent": True,
        "attribution": {"referral_code": "PARTNER-42"},
    } | changes
    return UpsertLeadOperation(origin=Origin.APPLICATIONS_API, payload=Application.model_validate(fields))


def click(session_id: str, channel: str = "telegram") -> MessengerClickOperation:
    return MessengerClickOperation(
        origin=Origin.MESSENGER_API,
        payload=MessengerActivity.model_validate({"channel": channel, "session_id": session_id}),
    )


def enqueue(aws: Aws, *operations: Operation) -> None:
    """What the API does when the CRM cannot take an operation now."""
    queue = queue_module.OperationQueue(aws.queue_url, aws.dlq_url)
    for operation in operations:
        queue.enqueue(operation)


def emitted_metrics(output: str) -> Counter[str]:
    """Sum of each EMF metric printed (Powertools writes one JSON document per flush)."""
    totals: Counter[str] = Counter()
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] += int(sum(value) if isinstance(value, list) else value)
    return totals
