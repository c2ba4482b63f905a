"""``make run``: the whole of crm-bridge on loopback, deployed from template.yaml, without AWS or Docker.

Starts moto's server and deploys the stack into it (SAM's transform, then CloudFormation); starts every
deployed function in a process of its own with its deployed environment and its own role's credentials,
with IAM enforced from then on; serves the API that moto's CloudFormation does not create (routes,
CORS, throttles of the transformed template) on 127.0.0.1 with the demo page and Swagger UI beside
them; feeds the queue to the worker as Lambda's event source mapping does, with the worker role's
rights. Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from crm_bridge.settings import CrmProviderName
from infra.cloudformation_yaml import load_sam_file
from infra.local.aws import REGION, LocalAws, queue_depths, store_secret
from infra.local.config import (
    DEFAULT_PORT,
    ConfigError,
    CrmChoice,
    Placement,
    choose_crm,
    function_settings,
    known_settings,
    load_config,
    local_secret_name,
    place_settings,
)
from infra.local.console import Console
from infra.local.functions import Invocation, LocalFunction, lambda_environment
from infra.local.gateway import Cors, Gateway, route_throttle
from infra.local.pages import DemoSettings, LocalPages
from infra.local.poller import BatchOutcome, QueuePoller
from infra.local.sandbox import SandboxStore
from infra.local.stack import (
    Stack,
    dead_letter_queue_arn,
    deploy,
    function_configuration,
    operator_credentials,
    queue_sources,
    queue_url,
    role_credentials,
)
from infra.local.template import (
    QueueSource,
    Template,
    TemplateError,
    api_cors,
    api_routes,
    api_throttles,
    load_template,
    parameter_values,
)

ROOT = Path(__file__).parents[2]
STATE_FILE = "runner.env"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help=f"gateway port on 127.0.0.1 (LOCAL_PORT; default {DEFAULT_PORT})")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="settings (default: .env)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local", help="sandbox file and run state")
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--watch-stdin", action="store_true", help="also stop when stdin closes (for supervisors)")
    return parser.parse_args(argv)


class Runner:
    def __init__(self, arguments: argparse.Namespace, console: Console) -> None:
        self.arguments = arguments
        self.console = console
        self.data_dir: Path = arguments.data_dir.resolve()
        self.aws = LocalAws()
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[QueuePoller] = []
        self.gateway: Gateway | None = None
        self.queue_url = ""
        self.dead_letter_url = ""
        self._dead_letters = 0
        self._dead_letter_lock = threading.Lock()
        self._settings: dict[str, dict[str, str]] = {}
        """Each function's variables (the deployed function's, with the local values)."""

    def start(self) -> None:
        started = time.perf_counter()
        template = load_template(self.arguments.template)
        config = load_config(self.arguments.env_file, known_settings(template))
        crm = choose_crm(config, self.data_dir)
        placement = place_settings(config, template)
        # SITE_ORIGINS is the SiteOrigins list joined: its local value is the parameter's too, so that
        # the API's CORS origins (!Ref SiteOrigins) are the ones the functions get.
        joined = {
            parameter: placement.overrides[name]
            for name, parameter in template.list_parameter_for_variable().items()
            if name in placement.overrides
        }
        parameters = parameter_values(template, joined | placement.parameters | crm.stack_parameters())
        port = self.arguments.port if self.arguments.port is not None else config.port
        demo_api_origin = config.demo_api_origin

        sandbox = SandboxStore(Path(crm.settings["SANDBOX_DB_PATH"])) if crm.is_sandbox else None
        pages = LocalPages(ROOT / "docs" / "openapi.json", lambda: self._status(crm.describe(), sandbox), sandbox)
        try:  # the port first: if it is taken, nothing else needs starting
            self.gateway = Gateway([], self._invoke, self.console, port=port, pages=pages)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): try make run PORT=<another>"
            ) from None

        self.console.banner("crm-bridge", "local run (make run): everything on 127.0.0.1, nothing in AWS")
        self.console.banner("CRM", crm.describe())
        for name in sorted(placement.ignored):
            self.console.banner("ignored", f"{name}: no function in {self.arguments.template.name} reads it")
        for name in sorted(placement.wired):
            self.console.banner("ignored", f"{name}: {self.arguments.template.name} sets it to its own resource")

        stack = self._deploy(parameters, crm)
        cors = Cors.from_template(api_cors(stack.template))
        self.gateway.routes = api_routes(stack.template)
        self.gateway.cors = cors
        if config.throttling:
            self.gateway.throttles = {
                route: throttle
                for route, settings in api_throttles(stack.template, stack.parameters).items()
                if (throttle := route_throttle(settings)) is not None
            }
        configurations, credentials, sources = self._enforce_iam(stack)
        self._start_functions(template, configurations, placement, crm, credentials)
        self._start_pollers(stack, sources, credentials)
        pages.demo = DemoSettings(demo_api_origin, self._function_setting("COOKIE_DOMAIN"))
        self.gateway.start()
        self._write_state()
        for route in self.gateway.routes:
            self.console.banner("route", f"{route.route_key:<32} -> {route.function}")
        self.console.banner("demo", f"{self.gateway.url}/   (Swagger UI: {self.gateway.url}/docs)")
        if demo_api_origin:
            self.console.banner("", f"its snippet calls the API at {demo_api_origin} (DEMO_API_ORIGIN)")
        self.console.banner("CORS", self._cors_text(cors))
        self.console.banner(
            "throttles",
            "each route's own, from the stage of the transformed template (429 beyond them)"
            if config.throttling
            else "off (LOCAL_THROTTLING=off): every request reaches its function",
        )
        self.console.banner(
            "DLQ", f"set -a; . {self._state_path()}; make dlq-inspect   (in another terminal, while this runs)"
        )
        self.console.banner("ready", f"in {time.perf_counter() - started:.1f} s; Ctrl-C stops everything")

    def _deploy(self, parameters: Mapping[str, object], crm: CrmChoice) -> Stack:
        """moto, the CRM's secrets where the functions read them, and the stack deployed into it."""
        self.aws.start()
        for name, value in crm.secrets.items():
            store_secret(self.aws, local_secret_name(name), value)
            self.console.banner("secret", f"{name} kept in the local SSM as {local_secret_name(name)}")
        stack = deploy(self.aws, load_sam_file(self.arguments.template), parameters)
        self.console.banner("AWS", f"moto on {self.aws.endpoint}: stack {stack.name} {stack.status}")
        for resource in sorted(stack.resources.values(), key=lambda item: item.resource_type):
            self.console.banner("", f"{resource.resource_type:<34} {resource.logical_id:<36} {resource.physical_id}")
        for logical_id, resource_type in sorted(stack.skipped.items(), key=lambda item: item[1]):
            emulated = "emulated by the runner" if resource_type.startswith("AWS::ApiGatewayV2") else "not emulated"
            self.console.banner("", f"{resource_type:<34} {logical_id:<36} not created by moto: {emulated}")
        return stack

    def _enforce_iam(
        self, stack: Stack
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]], list[QueueSource]]:
        """Read what the runner needs of the stack, then enforce IAM: the runner's own rights are then
        the operator's, who may look at the queues and no more. Each function's deployed configuration,
        the credentials of its role, and the queue sources."""
        configurations = {
            resource.logical_id: function_configuration(self.aws, stack, resource.logical_id)
            for resource in stack.of_type("AWS::Lambda::Function")
        }
        credentials = {
            name: role_credentials(self.aws, configuration["Role"], name)
            for name, configuration in configurations.items()
        }
        sources = queue_sources(self.aws, stack)
        self.queue_url = queue_url(stack, sources[0].queue) if sources else ""
        self.dead_letter_url = queue_url(stack, dead_letter_queue_arn(self.aws, self.queue_url))
        self.aws.enforce_iam(operator_credentials(self.aws, stack), self._access_denied)
        self.console.banner("IAM", "enforced: each function acts with its own role's rights, the runner as operator")
        return configurations, credentials, sources

    def _access_denied(self, caller: str, action: str, resource: str) -> None:
        self.console.line("IAM", f"AccessDenied: {caller} may not {action} on {resource}", level="ERROR")

    def _start_functions(
        self,
        template: Template,
        configurations: Mapping[str, dict[str, Any]],
        placement: Placement,
        crm: CrmChoice,
        credentials: dict[str, dict[str, str]],
    ) -> None:
        """Every function's process, started together; each cold start is over when this returns."""
        for source in template.functions().values():
            deployed = configurations[source.logical_id]
            spec = replace(source, timeout_seconds=deployed["Timeout"], memory_mb=deployed["MemorySize"])
            variables = {name: str(value) for name, value in deployed["Environment"]["Variables"].items()}
            declared = function_settings(variables, placement, crm)
            self._settings[spec.logical_id] = declared
            environment = lambda_environment(
                spec, declared | self.aws.environment(credentials[spec.logical_id]), REGION
            )
            # The sandbox is not in the layer: a function that may build it gets it registered first.
            preload = (SandboxStore.__module__,) if declared.get("CRM_PROVIDER") == CrmProviderName.SANDBOX else ()
            self.functions[spec.logical_id] = LocalFunction(
                spec, environment, self.console.function_output, preload=preload
            )
        with ThreadPoolExecutor(max_workers=len(self.functions) or 1) as pool:
            loaded = dict(zip(self.functions, pool.map(LocalFunction.start, self.functions.values()), strict=True))
        for name, ok in loaded.items():
            if not ok:
                error = self.functions[name].init_error or {}
                self.console.line(name, f"init failed: {error.get('errorMessage')}", level="ERROR")

    def _start_pollers(self, stack: Stack, sources: list[QueueSource], credentials: dict[str, dict[str, str]]) -> None:
        """Lambda's event source mappings, as deployed, each with its function's role's rights."""
        for source in sources:
            function = self.functions[source.function]
            poller = QueuePoller(
                self.aws.client("sqs", credentials[source.function]),
                queue_url=queue_url(stack, source.queue),
                queue_arn=source.queue,
                region=REGION,
                source=source,
                invoke=function.invoke,
                on_receive=partial(self.console.batch_received, source.function),
                on_batch=partial(self._batch, source.function),
                on_idle=self._watch_dead_letters,
            )
            poller.start()
            self.pollers.append(poller)
        self.console.banner(
            "worker", "fed by the runner's poller (moto's event source mapping disabled: it would run Docker)"
        )

    def _function_setting(self, name: str) -> str:
        """A variable as the functions that declare it got it ("" when none does)."""
        return next((settings[name] for settings in self._settings.values() if settings.get(name)), "")

    @staticmethod
    def _cors_text(cors: Cors | None) -> str:
        if cors is None:
            return "none: the HttpApi has no CorsConfiguration"
        if not cors.allow_origins:
            return "no origin allowed (SITE_ORIGINS is empty): only the demo page, same-origin, calls the API"
        return f"{', '.join(cors.allow_origins)} may call the API from a browser (SITE_ORIGINS)"

    def _invoke(self, function: str, event: dict[str, Any]) -> Invocation:
        invocation = self.functions[function].invoke(event)
        if not invocation.ok:
            error = invocation.payload or {}
            self.console.line(function, f"{error.get('errorType')}: {error.get('errorMessage')}", level="ERROR")
        return invocation

    def _batch(self, function: str, outcome: BatchOutcome) -> None:
        self.console.batch(function, outcome)
        self._watch_dead_letters()

    def _watch_dead_letters(self) -> None:
        with self._dead_letter_lock:
            depth = queue_depths(self.aws, self.dead_letter_url)
            current = depth["waiting"] + depth["in_flight"]
            self.console.dead_letter_depth(self._dead_letters, current)
            self._dead_letters = current

    def _status(self, crm: str, sandbox: SandboxStore | None) -> dict[str, Any]:
        return {
            "crm": crm,
            "sandbox": sandbox is not None,
            "queues": {
                "queue": queue_depths(self.aws, self.queue_url),
                "dead_letter": queue_depths(self.aws, self.dead_letter_url),
            },
        }

    def _state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _write_state(self) -> None:
        """Where this run's pieces are, as a sourceable file (``make dlq-inspect`` needs only this)."""
        if self.gateway is None:  # pragma: no cover - start() made it
            return
        state = {
            "LOCAL_API_URL": self.gateway.url,
            "CRM_QUEUE_URL": self.queue_url,
            "CRM_DLQ_URL": self.dead_letter_url,
            **self.aws.environment(),
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._state_path().write_text("".join(f"{name}={value}\n" for name, value in state.items()), encoding="utf-8")

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for poller in self.pollers:
            poller.stop(wait=False)
        for poller in self.pollers:
            poller.stop()
        with ThreadPoolExecutor(max_workers=len(self.functions) or 1) as pool:
            list(pool.map(LocalFunction.stop, self.functions.values()))
        if self.aws.endpoint:
            self.aws.stop()
        self._state_path().unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):  # a developer's real AWS stays out of this
        os.environ.pop(name, None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server would log every AWS call
    logging.getLogger("moto").setLevel(logging.ERROR)  # its warnings of each type it skips: listed once, here
    console = Console()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if arguments.watch_stdin:

        def stop_at_end_of_input() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    runner = Runner(arguments, console)
    try:
        runner.start()
        while not stop.wait(0.5):
            pass
        console.banner("stopping", "gateway, worker, functions, moto")
    except (ConfigError, TemplateError) as exc:
        console.banner("error", str(exc))
        return 2
    finally:
        runner.stop()
    console.banner("stopped", "")
    return 0
