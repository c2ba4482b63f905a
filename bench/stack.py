"""The stack on loopback for the benchmark: moto with the template's resources, and a stub CRM.

Reuses the local runner's pieces (``infra.local``): moto's server with ``template.yaml`` deployed into
it as a stack, each function's environment that of the deployed function, and the CRM key kept in
(local) SSM as a deployed stack keeps it, so a cold start reads it from there. IAM is not enforced
here: the benchmark measures the functions, not moto's policy checks. The CRM is
the recorded-fixture simulator behind a real loopback HTTP server (``tests/e2e/stub_crm.py``), with
an optional fixed latency per request and, for Bitrix24, the portal's leaky-bucket rate limit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx

from infra.cloudformation_yaml import load_sam_file
from infra.espocrm.local import free_port
from infra.local.aws import REGION, LocalAws, store_secret
from infra.local.functions import lambda_environment
from infra.local.stack import Stack, deploy, function_configuration, queue_sources
from infra.local.template import FunctionSpec, QueueSource, Template, load_template, parameter_values
from tests.e2e.stub_crm import StubEspoCrm
from tests.simulators.base import Failure
from tests.simulators.bitrix24 import LeakyBucket, SimulatedBitrix24

ROOT = Path(__file__).parents[1]
STACK_NAME = "crm-bridge-bench"
ESPOCRM_API_KEY = "bench-espocrm-api-key-0001"
ESPOCRM_KEY_PARAMETER = "/crm-bridge/bench/espocrm-api-key"
BITRIX24_TOKEN = "benchw3bh00kt0k3n"  # noqa: S105 - the stub portal's, nothing real
BITRIX24_WEBHOOK_PARAMETER = "/crm-bridge/bench/bitrix24-webhook"
# Parameters without defaults (what samconfig.toml gives per environment).
REQUIRED_PARAMETERS = {
    "SiteOrigins": "https://www.agency.example",
    "RedirectTelegramUrl": "https://t.me/agency_bot",
    "RedirectWhatsAppNumber": "905321112233",
    "RedirectInstagramUrl": "https://www.instagram.com/agency",
}


class StubCrm(StubEspoCrm):
    """The EspoCRM (or Bitrix24) simulator on a loopback port, counting requests, with a fixed
    latency per request and an optional Bitrix24 rate limit."""

    def __init__(
        self, provider: str = "espocrm", *, latency_seconds: float = 0.0, limit: LeakyBucket | None = None
    ) -> None:
        super().__init__(free_port(), ESPOCRM_API_KEY)
        self.provider = provider
        self.latency_seconds = latency_seconds
        self.limit = limit
        self.requests = 0
        self.refused = 0
        self._counter_lock = threading.Lock()
        if provider == "bitrix24":
            # The limit is ``limit``'s, counted here for every request: the simulator's own is off.
            self.sim = SimulatedBitrix24(  # type: ignore[assignment]
                portal=self.base_url, token=BITRIX24_TOKEN, rate_per_second=None
            )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler_class()
        # The handler writes headers and body separately: with Nagle's algorithm on, the body waits
        # for the client's delayed ACK (~40 ms a request on Linux), which no real CRM server adds.
        handler.disable_nagle_algorithm = True
        return handler

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/1/{BITRIX24_TOKEN}/"

    def answer(self, request: httpx.Request) -> httpx.Response:
        """The simulator's answer, sent ``latency_seconds`` after the request arrived (the simulator's
        own work, which grows with the leads it holds, is part of that latency, not added to it)."""
        arrived = time.monotonic()
        admitted = self.limit is None or self.limit.admit()
        with self._counter_lock:
            self.requests += 1
            self.refused += not admitted
        if admitted:
            response = super().answer(request)
        else:
            with self._lock:  # the simulator's own QUERY_LIMIT_EXCEEDED answer
                self.sim.fail_next(Failure.RATE_LIMITED)
                response = self.sim.router.handler(request)
        remaining = self.latency_seconds - (time.monotonic() - arrived)
        if remaining > 0:
            time.sleep(remaining)  # outside the simulator's lock: the CRM answers requests in parallel
        return response


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str


@dataclass
class LoopbackStack:
    """moto with the template deployed into it and a started stub CRM; each function's Lambda environment."""

    crm: StubCrm
    template: Template = field(default_factory=lambda: load_template(ROOT / "template.yaml"))
    aws: LocalAws = field(default_factory=LocalAws)
    deployed: Stack | None = None
    table_keys: dict[str, str] = field(default_factory=dict)

    def start(self) -> LoopbackStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.crm.start()
        self.aws.start()
        overrides = dict(REQUIRED_PARAMETERS)
        if self.crm.provider == "bitrix24":
            overrides |= {"CrmProvider": "bitrix24", "Bitrix24WebhookUrlName": BITRIX24_WEBHOOK_PARAMETER}
            store_secret(self.aws, BITRIX24_WEBHOOK_PARAMETER, self.crm.webhook_url)
        else:
            overrides["EspoCrmApiKeyName"] = ESPOCRM_KEY_PARAMETER
            store_secret(self.aws, ESPOCRM_KEY_PARAMETER, ESPOCRM_API_KEY)
        # moto keeps its state per process, across servers: each stack names its resources afresh.
        stack_name = f"{STACK_NAME}-{uuid.uuid4().hex[:6]}"
        self.deployed = deploy(
            self.aws, load_sam_file(ROOT / "template.yaml"), parameter_values(self.template, overrides), stack_name
        )
        dynamodb = self.aws.client("dynamodb")
        for table in self.deployed.of_type("AWS::DynamoDB::Table"):
            name = table.physical_id
            schema = dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]
            self.table_keys[name] = next(key["AttributeName"] for key in schema if key["KeyType"] == "HASH")
        return self

    def stop(self) -> None:
        if self.aws.endpoint:
            httpx.post(f"{self.aws.endpoint}/moto-api/reset", timeout=10)  # free what this stack made
        self.aws.stop()
        self.crm.stop()

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        return self.template.functions()

    def queue(self, logical_id: str) -> Queue:
        if self.deployed is None:
            raise RuntimeError("the stack is not started")
        url = self.deployed.resources[logical_id].physical_id
        arn = self.aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Queue(url, arn["Attributes"]["QueueArn"])

    def queue_sources(self) -> list[QueueSource]:
        if self.deployed is None:
            raise RuntimeError("the stack is not started")
        return queue_sources(self.aws, self.deployed)

    def environment(self, function: str, task_root: Path) -> dict[str, str]:
        """What Lambda sets for ``function``: the deployed function's variables, pointing at this stack."""
        if self.deployed is None:
            raise RuntimeError("the stack is not started")
        spec = self.functions[function]
        variables = function_configuration(self.aws, self.deployed, function)["Environment"]["Variables"]
        declared = {name: str(value) for name, value in variables.items()}
        if self.crm.provider == "espocrm":
            # The template only takes https:// sites (the EspoCrmUrl parameter); the stub is plain http.
            declared["ESPOCRM_URL"] = self.crm.base_url
        environment = lambda_environment(spec, declared | self.aws.environment(), REGION)
        return environment | {"LAMBDA_TASK_ROOT": str(task_root), "LANG": "C.UTF-8"}
