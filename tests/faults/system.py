"""The whole system in one process, for fault injection: moto as AWS, the real handlers, one clock.

* AWS is moto (``mock_aws``): the queue, its dead-letter queue, the tables and the recovery key,
  with the template's settings (visibility timeout, ``maxReceiveCount``, keys).
* The handlers are the real modules in ``functions/``, cold-started under the template's
  environment and invoked with genuine HTTP API v2 events (``infra.local.http_events``).
* The worker is driven as Lambda's SQS poller drives it (:class:`Poller`).
* Time is :class:`Clock`: real time plus an offset the test advances, read by SQS and by the
  idempotency store. A message the worker postpones for its backoff (ChangeMessageVisibility), or
  that a dead worker leaves in flight for the queue's visibility timeout, becomes visible when the
  clock passes that point, exactly as in SQS, but without waiting for it.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import io
import logging
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import moto.core.responses
import moto.core.utils
import moto.sqs.models
import pytest
from aws_lambda_powertools.utilities.idempotency.persistence import base as idempotency_base
from aws_lambda_powertools.utilities.idempotency.persistence import datarecord as idempotency_record
from aws_lambda_powertools.utilities.idempotency.persistence import dynamodb as idempotency_dynamodb
from moto.core.utils import unix_time

from crm_bridge import settings as settings_module
from crm_bridge.api import settings as api_settings
from crm_bridge.delivery import queue as queue_module
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.providers import factory
from crm_bridge.worker import get_worker
from crm_bridge.worker.settings import get_worker_settings
from infra.local.http_events import http_api_event
from tests.api.conftest import Answer, invoke, post
from tests.aws_setup import clear_aws_clients, template_aws
from tests.conftest import _CONFIG_VARIABLES
from tests.user_agents import BROWSER
from tests.worker.conftest import Aws, EventSourceMapping, Lambda, Poll, RecordingSqs

FUNCTIONS = Path(__file__).parents[2] / "functions"
REDIRECTS = {
    "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
    "REDIRECT_WHATSAPP_NUMBER": "905321112233",
    "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
}


class Clock:
    """The simulated world's clock: real time plus :attr:`offset` seconds, which the test advances.

    SQS (moto: visibility timeouts, delays) and the idempotency store (Powertools: the expiry of a
    dead invocation's in-progress record) both read it, so a message that comes back after its
    visibility timeout also finds the dead worker's claim on it expired, as it would in AWS.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def unix_time(self, dt: Any = None) -> float:
        return unix_time(dt) if dt is not None else time.time() + self.offset

    def unix_time_millis(self, dt: Any = None) -> float:
        return self.unix_time(dt) * 1000.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def install(self, env: pytest.MonkeyPatch) -> None:
        env.setattr(moto.sqs.models, "unix_time", self.unix_time)
        env.setattr(moto.sqs.models, "unix_time_millis", self.unix_time_millis)
        clock = self

        class ShiftedDatetime(datetime.datetime):
            @classmethod
            def now(cls, tz: datetime.tzinfo | None = None) -> ShiftedDatetime:
                return cls.fromtimestamp(time.time() + clock.offset, tz)

        shifted = SimpleNamespace(
            datetime=ShiftedDatetime, timedelta=datetime.timedelta, date=datetime.date, time=datetime.time
        )
        for module in (idempotency_base, idempotency_dynamodb, idempotency_record):
            env.setattr(module, "dt", shifted)


def speed_up_moto(env: pytest.MonkeyPatch) -> None:
    """moto re-derives a handler class's method names (``inspect.getmembers``) and re-converts the
    same CamelCase names on every request: pure functions, cached here for the run's 11,000 calls."""
    env.setattr(moto.core.responses, "method_names_from_class", cache(moto.core.utils.method_names_from_class))
    converted = cache(moto.core.utils.camelcase_to_underscores)
    env.setattr(moto.core.responses, "camelcase_to_underscores", converted)
    env.setattr(moto.sqs.models, "camelcase_to_underscores", converted)


@dataclass
class _Aws(Aws):
    """The worker tests' view of the queues, with one SQS client rather than one per call."""

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")


class Poller(EventSourceMapping):
    """Lambda's SQS poller, deleting what the worker did not report failed in one batch, as Lambda does.
    Postponed messages come back by the :class:`Clock`, not by :meth:`backoff_elapses`."""

    def poll(self) -> Poll:
        sqs = self.aws.sqs
        messages = self.receive_batch()
        if not messages:
            return Poll([], [])
        self.receives.update(message["MessageId"] for message in messages)
        response = self.function.invoke(self.event(messages))  # a dead worker raises: nothing is deleted
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        done = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
            if message["MessageId"] not in failed
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=self.aws.queue_url, Entries=done)
        return Poll([message["MessageId"] for message in messages], sorted(failed))


def _clear_caches() -> None:
    clear_aws_clients()
    for cached in (
        settings_module.get_settings,
        settings_module.default_phone_region,
        factory.get_provider,
        api_settings.get_api_settings,
        get_worker,
        get_worker_settings,
    ):
        cached.cache_clear()


def cold_start(module_name: str) -> ModuleType:
    """Import a handler module afresh, as a new Lambda container would."""
    for function_dir in sorted(FUNCTIONS.iterdir()):
        if function_dir.is_dir() and str(function_dir) not in sys.path:
            sys.path.insert(0, str(function_dir))
    api_settings.get_api_settings.cache_clear()
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


@dataclass
class System:
    aws: Aws
    kms_key_id: str
    clock: Clock
    applications: ModuleType
    messenger: ModuleType
    redirect: ModuleType
    worker: Lambda
    poller: Poller

    @property
    def sqs(self) -> Any:
        return self.aws.sqs

    def submit_application(self, body: dict[str, Any], idempotency_key: str | None = None) -> Answer:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        return post(self.applications, "/api/v1/applications", body, headers=headers)

    def click(self, body: dict[str, Any], idempotency_key: str | None = None) -> Answer:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        return post(self.messenger, "/api/v1/messenger-events", body, headers=headers)

    def go(self, channel: str, *, session_id: str, query: str = "") -> Answer:
        event = http_api_event(
            "GET",
            f"/go/{channel}",
            route_key="GET /go/{channel}",
            path_parameters={"channel": channel},
            query=query,
            headers={"host": "api.agency.example", "cookie": f"visitor_session={session_id}", "user-agent": BROWSER},
        )
        return invoke(self.redirect, event)

    def work(self) -> int:
        """Poll until no message is visible now; the number of messages received."""
        received = 0
        while batch := self.poller.poll().received:
            received += len(batch)
        return received

    def waiting(self) -> int:
        """Messages on the operations queue, visible, in flight or delayed."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.aws.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the dead-letter queue, released again afterwards."""
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.aws.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", []):
            found.extend(batch)
        for message in found:
            self.sqs.change_message_visibility(
                QueueUrl=self.aws.dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return found

    def dead_letter_queue_depth(self) -> int:
        """What CloudWatch reports as the DLQ's ``ApproximateNumberOfMessagesVisible``."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.aws.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


@contextlib.contextmanager
def running_system(env: pytest.MonkeyPatch, crm_environment: dict[str, str], *, seed: int) -> Iterator[System]:
    """Start everything under moto with the CRM settings given; ``seed`` pins the worker's jitter."""
    for name in _CONFIG_VARIABLES:
        env.delenv(name, raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "POWERTOOLS_DEV": "false",
    }.items():
        env.setenv(name, value)
    clock = Clock()
    clock.install(env)
    speed_up_moto(env)
    _clear_caches()
    try:
        with template_aws() as resources:
            aws = _Aws(resources.queue_url, resources.queue_arn, resources.dlq_url, resources.max_receive_count)
            key_id = resources.kms_key_id
            environment = {
                **resources.environment(),
                "RECOVERY_KMS_KEY_ID": key_id,
                "RETRY_MAX_RECEIVES": str(aws.max_receive_count),
                "SITE_ORIGINS": "https://agency.example",
                "AWS_LAMBDA_FUNCTION_NAME": "crm-bridge",
                **REDIRECTS,
                **crm_environment,
            }
            for name, value in environment.items():
                env.setenv(name, value)
            yield _started(aws, key_id, clock, seed)
    finally:
        if factory.get_provider.cache_info().currsize:  # close the CRM connections the run left open
            factory.get_provider().close()
        get_metrics().clear_metrics()
        _clear_caches()


def _started(aws: _Aws, key_id: str, clock: Clock, seed: int) -> System:
    """Every function cold-started under the environment as it is now."""
    applications, messenger, redirect = (
        cold_start(name) for name in ("applications_api", "messenger_events_api", "redirect_api")
    )
    worker_module = cold_start("crm_worker")
    recording = RecordingSqs(boto3.client("sqs"))
    worker = Lambda(worker_module, recording)
    worker.worker.queue = queue_module.OperationQueue(aws.queue_url, aws.dlq_url, client=recording)
    worker.worker.random = random.Random(seed).random  # noqa: S311 - reproducible jitter
    return System(aws, key_id, clock, applications, messenger, redirect, worker, Poller(aws, worker))


def redeploy(system: System, env: pytest.MonkeyPatch, *, seed: int, **parameters: str) -> System:
    """``sam deploy`` with other parameters (``CRM_PROVIDER="espocrm"``; "" unsets one): the same queues
    and tables, every function in a new container under the new environment."""
    for name, value in parameters.items():
        if value:
            env.setenv(name, value)
        else:
            env.delenv(name, raising=False)
    if factory.get_provider.cache_info().currsize:
        factory.get_provider().close()
    _clear_caches()
    assert isinstance(system.aws, _Aws)
    return _started(system.aws, system.kms_key_id, system.clock, seed)


@dataclass
class Captured:
    logs: io.StringIO
    """Every line of the service logger (and the third-party loggers it configures)."""
    stdout: io.StringIO
    """stdout and stderr: the EMF metrics, and anything else printed."""


@contextlib.contextmanager
def captured_output(env: pytest.MonkeyPatch) -> Iterator[Captured]:
    """Capture what a run logs and prints, to scan it for secrets and personal data."""
    handler = get_logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    captured = Captured(io.StringIO(), io.StringIO())
    # Our handler gets every line; pytest's own copy of thousands of records would only cost time.
    env.setattr(logging.getLogger(get_logger().name), "propagate", False)
    previous = handler.setStream(captured.logs)
    try:
        with contextlib.redirect_stdout(captured.stdout), contextlib.redirect_stderr(captured.stdout):
            yield captured
    finally:
        handler.setStream(previous)
