"""The whole system in one process, for fault injection: moto as AWS, the real handlers, one clock.

* AWS is moto (``mock_aws``) with template.yaml deployed into it as the runner deploys it (SAM's
  transform, a CloudFormation stack: the queue, its dead-letter queue, the tables and the recovery
  key), then IAM enforced (``tests.aws_setup.deployed_aws``). An AccessDenied fails the run.
* The handlers are the real modules in ``functions/``, cold-started under the template's
  environment and invoked with genuine HTTP API v2 events (``infra.local.http_events``). Each runs
  in a :class:`Container` of its own: its role's credentials, its own AWS clients.
* The worker is driven as Lambda's SQS poller drives it (:class:`Poller`), with the worker role's rights.
  The test itself looks at the queues with the operators' policy.
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
import os
import random
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
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

from crm_bridge import aws as aws_module
from crm_bridge import settings as settings_module
from crm_bridge.api import settings as api_settings
from crm_bridge.delivery import queue as queue_module
from crm_bridge.delivery import recovery
from crm_bridge.delivery import sessions as sessions_module
from crm_bridge.observability import get_logger
from crm_bridge.observability.metrics import get_metrics
from crm_bridge.providers import factory
from crm_bridge.worker import get_worker
from crm_bridge.worker.settings import get_worker_settings
from infra.local.aws import session_of
from infra.local.http_events import http_api_event
from tests.api.conftest import Answer, invoke, post
from tests.aws_setup import clear_aws_clients, deployed_aws
from tests.conftest import _CONFIG_VARIABLES
from tests.infra.sam import REQUIRED_PARAMETERS
from tests.user_agents import BROWSER
from tests.worker.conftest import Aws, EventSourceMapping, Lambda, Poll, RecordingSqs

FUNCTIONS = Path(__file__).parents[2] / "functions"


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
    """A view of the queues with one caller's rights (the worker role's, the operators'), with one SQS
    client rather than one per call."""

    credentials: dict[str, str] = field(default_factory=dict)

    @cached_property
    def sqs(self) -> Any:
        return session_of(self.credentials).client("sqs")


LAYER_CLIENTS = (
    (queue_module, "_sqs_client"),
    (sessions_module, "_dynamodb_client"),
    (recovery, "_kms_client"),
    (aws_module, "ssm_provider"),
    (aws_module, "secrets_provider"),
)
"""The layer's module-level AWS clients: in Lambda each container has its own."""
_ORIGINAL_CLIENTS = {(module, name): getattr(module, name) for module, name in LAYER_CLIENTS}
_running: ContextVar[Container | None] = ContextVar("running_container", default=None)
"""The container whose code runs: its invocation's thread, and every thread that work started
(the layer starts them in the caller's context), so that work outliving a call stays its own."""


class _ClientOfTheRunningContainer:
    """In place of a layer's cached client: the running container's, else the process's."""

    def __init__(self, key: tuple[ModuleType, str]) -> None:
        self.key = key

    def __call__(self) -> Any:
        container = _running.get()
        return container.client(self.key) if container else _ORIGINAL_CLIENTS[self.key]()

    def cache_clear(self) -> None:
        _ORIGINAL_CLIENTS[self.key].cache_clear()


def install_containers(env: pytest.MonkeyPatch) -> None:
    """boto3's default session and the layer's clients follow the running container."""
    default_session = boto3._get_default_session
    env.setattr(boto3, "_get_default_session", lambda: c.session if (c := _running.get()) else default_session())
    for key in LAYER_CLIENTS:
        env.setattr(*key, _ClientOfTheRunningContainer(key))


class Container:
    """One function's Lambda container in this process: its role's credentials as boto3's default
    session, its own layer clients and its own environment (as deployed, with the test's CRM), in
    place while it runs (its cold start, each invocation, the threads these start). ``others``:
    variables of the other functions, which this one does not have."""

    def __init__(
        self, credentials: dict[str, str], environment: dict[str, str], others: frozenset[str] = frozenset()
    ) -> None:
        self.credentials = credentials
        self.environment = environment
        self.others = others - environment.keys()
        self.session = session_of(credentials)
        self._clients = {key: cache(original.__wrapped__) for key, original in _ORIGINAL_CLIENTS.items()}

    def client(self, key: tuple[ModuleType, str]) -> Any:
        return self._clients[key]()

    def renewed(self, changes: dict[str, str]) -> Container:
        """The same function in a new container (a deployment's cold start), its environment changed."""
        return Container(self.credentials, self.environment | changes, self.others)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        token = _running.set(self)
        environment = os.environ.copy()
        for name in self.others:
            os.environ.pop(name, None)
        os.environ.update(self.environment)
        try:
            yield
        finally:
            _running.reset(token)
            os.environ.clear()
            os.environ.update(environment)


@dataclass
class ContainedLambda(Lambda):
    """The worker in its container."""

    container: Container | None = None

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.container is not None
        with self.container.running():
            return super().invoke(event)


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


def cold_start(module_name: str, container: Container) -> ModuleType:
    """Import a handler module afresh in its container, as a new Lambda container would."""
    for function_dir in sorted(FUNCTIONS.iterdir()):
        if function_dir.is_dir() and str(function_dir) not in sys.path:
            sys.path.insert(0, str(function_dir))
    api_settings.get_api_settings.cache_clear()
    sys.modules.pop(module_name, None)
    with container.running():
        return importlib.import_module(module_name)


HANDLERS = {
    "applications_api": "ApplicationsFunction",
    "messenger_events_api": "MessengerEventsFunction",
    "redirect_api": "RedirectFunction",
    "crm_worker": "WorkerFunction",
}
"""Each handler module and its function in the template (whose role it runs with)."""


@dataclass
class System:
    aws: Aws
    """The queues as the test sees them: with the operators' policy."""
    kms_key_id: str
    clock: Clock
    applications: ModuleType
    messenger: ModuleType
    redirect: ModuleType
    worker: Lambda
    poller: Poller
    containers: dict[str, Container]
    operator: Container
    """An operator's shell: the stack's OperatorPolicy (``make dlq-inspect``, the log recovery)."""

    @property
    def sqs(self) -> Any:
        return self.aws.sqs

    def submit_application(self, body: dict[str, Any], idempotency_key: str | None = None) -> Answer:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        with self.containers["applications_api"].running():
            return post(self.applications, "/api/v1/applications", body, headers=headers)

    def click(self, body: dict[str, Any], idempotency_key: str | None = None) -> Answer:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        with self.containers["messenger_events_api"].running():
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
        with self.containers["redirect_api"].running():
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
def running_system(
    env: pytest.MonkeyPatch,
    crm_environment: dict[str, str],
    *,
    seed: int,
    parameters: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
) -> Iterator[System]:
    """Start everything under moto with the CRM settings given; ``seed`` pins the worker's jitter.
    ``parameters``: the stack's (beyond those it requires); ``secrets``: kept where they name."""
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
    install_containers(env)
    _clear_caches()
    try:
        with deployed_aws(REQUIRED_PARAMETERS | (parameters or {}), secrets) as deployment:
            resources = deployment.resources
            operator = _Aws(
                resources.queue_url,
                resources.queue_arn,
                resources.dlq_url,
                resources.max_receive_count,
                credentials=deployment.operator,
            )
            key_id = resources.kms_key_id
            ours = {"AWS_LAMBDA_FUNCTION_NAME": "crm-bridge", **crm_environment}
            every = frozenset(name for variables in deployment.environments.values() for name in variables)
            containers = {
                module: Container(deployment.roles[function], deployment.environments[function] | ours, every)
                for module, function in HANDLERS.items()
            }
            containers["operator"] = Container(deployment.operator, {"CRM_QUEUE_URL": resources.queue_url})
            yield _started(operator, key_id, clock, seed, containers)
            assert not deployment.denied, "AccessDenied: " + "; ".join(deployment.denied)
    finally:
        if factory.get_provider.cache_info().currsize:  # close the CRM connections the run left open
            factory.get_provider().close()
        get_metrics().clear_metrics()
        _clear_caches()


def _started(aws: _Aws, key_id: str, clock: Clock, seed: int, containers: dict[str, Container]) -> System:
    """Every function cold-started in a new container under the environment as it is now."""
    applications, messenger, redirect, worker_module = (
        cold_start(name, containers[name])
        for name in ("applications_api", "messenger_events_api", "redirect_api", "crm_worker")
    )
    worker_container = containers["crm_worker"]
    recording = RecordingSqs(worker_container.session.client("sqs"))
    worker = ContainedLambda(worker_module, recording, worker_container)
    worker.worker.queue = queue_module.OperationQueue(aws.queue_url, aws.dlq_url, client=recording)
    worker.worker.random = random.Random(seed).random  # noqa: S311 - reproducible jitter
    mapping = replace(aws, credentials=dict(worker_container.credentials))  # Lambda's poller: the worker role
    poller = Poller(mapping, worker)
    return System(
        aws, key_id, clock, applications, messenger, redirect, worker, poller, containers, containers["operator"]
    )


def redeploy(system: System, *, seed: int, **parameters: str) -> System:
    """``sam deploy`` with other parameters (``CRM_PROVIDER="espocrm"``; "" unsets one, as an empty
    parameter does): the same queues and tables, every function in a new container under the new
    environment."""
    if factory.get_provider.cache_info().currsize:
        factory.get_provider().close()
    _clear_caches()
    assert isinstance(system.aws, _Aws)
    fresh = {module: container.renewed(parameters) for module, container in system.containers.items()}
    return _started(system.aws, system.kms_key_id, system.clock, seed, fresh)


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
