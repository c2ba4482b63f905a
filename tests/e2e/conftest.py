"""End-to-end: ``python -m infra.local`` (what ``make run`` starts) as a subprocess, over real HTTP.

Each runner gets free loopback ports, its own data directory and ``.env``, and a minimal process
environment (nothing of the developer's AWS or CRM settings). It is stopped with SIGINT, as Ctrl-C
stops it, and must then exit cleanly; ``--watch-stdin`` makes it stop by itself should the tests
die first. Waiting is bounded polling, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
import httpx
import pytest

from infra.espocrm.local import free_port
from tests.real_crm.espocrm import EspoCrmAdminClient
from tests.real_crm.fixtures import RealEspoCrm

ROOT = Path(__file__).parents[2]
START_TIMEOUT_SECONDS = 45.0
DEFAULT_MAPPING = ROOT / "layers/shared/crm_bridge/field_mapping/default_mapping.json"


def wait_for[T](probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    url: str
    state: dict[str, str]
    data_dir: Path
    console_file: Path

    @property
    def console(self) -> str:
        return self.console_file.read_text(encoding="utf-8", errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15, follow_redirects=False)

    def aws(self, service: str) -> Any:
        """A client with the run's operator rights (the stack's OperatorPolicy: IAM is enforced)."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.state["AWS_ENDPOINT_URL"],
            region_name=self.state["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.state["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.state["AWS_SECRET_ACCESS_KEY"],
        )

    def dead_letters(
        self,
        wait_for_at_least: int = 1,
        timeout: float = 20,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """The DLQ's messages, once there are at least ``wait_for_at_least`` and ``until`` holds for them
        (read with a short visibility)."""
        sqs = self.aws("sqs")
        found: dict[str, dict[str, Any]] = {}

        def probe() -> bool:
            for message in sqs.receive_message(
                QueueUrl=self.state["CRM_DLQ_URL"],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=1,
                WaitTimeSeconds=0,
            ).get("Messages", []):
                found[message["MessageId"]] = message
            messages = list(found.values())
            return len(messages) >= wait_for_at_least and (until is None or until(messages))

        wait_for(probe, timeout, f"{wait_for_at_least} message(s) in the dead-letter queue")
        return list(found.values())

    def status(self) -> dict[str, Any]:
        with self.client() as client:
            return dict(client.get("/_local/status").json())

    def queue_is_empty(self) -> bool:
        queue = self.status()["queues"]["queue"]
        return bool(queue["waiting"] + queue["in_flight"] + queue["delayed"] == 0)

    def stop(self) -> int:
        """Ctrl-C, as a person stops ``make run``; the exit code (0 when it stopped cleanly). A request
        IAM refused during the run fails the test that ran it: a role lacks a right the code uses."""
        try:
            return self._stop()
        finally:
            refused = [line for line in self.console.splitlines() if "AccessDenied" in line]
            if refused:
                pytest.fail("IAM refused requests during the run:\n" + "\n".join(refused))

    def _stop(self) -> int:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    return self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
                    return -9
            return self.process.returncode
        finally:
            if self.process.stdin is not None:
                self.process.stdin.close()


def start_runner(
    tmp: Path, settings: dict[str, str], port: int | None = None, module: tuple[str, ...] = ("infra.local",)
) -> LocalRun:
    """A runner with these ``.env`` settings on ``port`` (a free one by default); ``module``: the runner's
    module and its first arguments (the mutation run's starts it with a policy's actions taken away)."""
    data_dir = tmp / "data"
    env_file = tmp / "local.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()), encoding="utf-8")
    port = port or free_port()
    console_file = tmp / "console.txt"
    environment = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    with console_file.open("wb") as console:
        process = subprocess.Popen(  # noqa: S603 - our own runner, fixed arguments
            [
                sys.executable,
                "-m",
                *module,
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--env-file",
                str(env_file),
                "--watch-stdin",
            ],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=console,
            stderr=subprocess.STDOUT,
        )
    state_file = data_dir / "runner.env"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the runner exited ({process.returncode}):\n{console_file.read_text()}")
        return state_file.is_file() and "ready" in console_file.read_text(encoding="utf-8", errors="replace")

    wait_for(ready, START_TIMEOUT_SECONDS, "the runner to start")
    state = dict(line.split("=", 1) for line in state_file.read_text(encoding="utf-8").splitlines() if "=" in line)
    return LocalRun(process, state["LOCAL_API_URL"], state, data_dir, console_file)


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One runner with no CRM configured: the sandbox, as on a fresh clone."""
    run = start_runner(tmp_path_factory.mktemp("sandbox-run"), {})
    yield run
    assert run.stop() == 0, f"the runner did not stop cleanly:\n{run.console}"


def sandbox_leads(run: LocalRun) -> list[dict[str, Any]]:
    from infra.local.sandbox import SandboxStore

    return SandboxStore(run.data_dir / "sandbox.sqlite3").leads()


def espocrm_settings(real_espocrm: RealEspoCrm) -> dict[str, str]:
    """The real EspoCRM, as a developer's ``.env`` would configure it."""
    return {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": real_espocrm.site.url, "ESPOCRM_API_KEY": real_espocrm.api_key}


@pytest.fixture(scope="module")
def espocrm_run(real_espocrm: RealEspoCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """One runner configured for the real EspoCRM, as a developer's ``.env`` would configure it."""
    run = start_runner(tmp_path_factory.mktemp("espocrm-run"), espocrm_settings(real_espocrm))
    yield run
    assert run.stop() == 0, f"the runner did not stop cleanly:\n{run.console}"


@dataclass(frozen=True)
class SeenLead:
    """A lead as the end-to-end tests check it, whichever CRM holds it."""

    id: str
    phones: list[str]
    referral_code: str | None
    utm_source: str | None
    session_id: str | None


class CrmView(Protocol):
    """What the end-to-end tests read from the CRM behind a run."""

    provider: str

    def lead(self, lead_id: str) -> SeenLead: ...

    def notes(self, lead_id: str) -> list[str]: ...

    def lead_of_session(self, session_id: str) -> SeenLead | None: ...

    def leads_of_session(self, session_id: str) -> list[SeenLead]: ...

    def leads_with_email(self, email: str) -> list[SeenLead]: ...

    def lead_count(self) -> int:
        """Every lead the CRM holds (other tests' too, on a shared EspoCRM: compare before and after)."""
        ...

    def fields(self, lead_id: str) -> dict[str, Any]:
        """The lead's mapped fields by their domain names (``first_referral_code``, ``consent_version``...,
        the default mapping's) and its ``description``; the fields it has no value in left out."""
        ...


class SandboxView:
    provider = "sandbox"

    def __init__(self, run: LocalRun) -> None:
        from infra.local.sandbox import SandboxStore

        self._store = SandboxStore(run.data_dir / "sandbox.sqlite3")

    def lead(self, lead_id: str) -> SeenLead:
        return next(self._seen(lead) for lead in self._store.leads() if lead["id"] == lead_id)

    def notes(self, lead_id: str) -> list[str]:
        return list(self._store.notes(lead_id))

    def lead_of_session(self, session_id: str) -> SeenLead | None:
        found = self.leads_of_session(session_id)
        return found[0] if found else None

    def leads_of_session(self, session_id: str) -> list[SeenLead]:
        return [self._seen(lead) for lead in self._store.leads() if lead.get("visitor_session_id") == session_id]

    def leads_with_email(self, email: str) -> list[SeenLead]:
        return [self._seen(lead) for lead in self._store.leads() if email in (lead.get("emails") or [])]

    def lead_count(self) -> int:
        return len(self._store.leads())

    def fields(self, lead_id: str) -> dict[str, Any]:
        lead = self._store.lead(lead_id)
        names = {*json.loads(DEFAULT_MAPPING.read_text(encoding="utf-8"))["sandbox"]["lead_fields"], "description"}
        return {name: value for name, value in lead.items() if name in names and value not in (None, "")}

    @staticmethod
    def _seen(lead: dict[str, Any]) -> SeenLead:
        return SeenLead(
            lead["id"],
            lead.get("phones") or [],  # none on an anonymous lead (a messenger click's)
            lead.get("referral_code"),
            lead.get("utm_source"),
            lead.get("visitor_session_id"),
        )


class EspoCrmView:
    """The real EspoCRM, read as its administrator through the REST API."""

    provider = "espocrm"

    def __init__(self, admin: EspoCrmAdminClient) -> None:
        self._admin = admin

    def lead(self, lead_id: str) -> SeenLead:
        return self._seen(self._admin.lead(lead_id))

    def notes(self, lead_id: str) -> list[str]:
        return self._admin.posts(lead_id)

    def lead_of_session(self, session_id: str) -> SeenLead | None:
        found = self.leads_of_session(session_id)
        return found[0] if found else None

    def leads_of_session(self, session_id: str) -> list[SeenLead]:
        return self._where("cVisitorSessionId", session_id)

    def leads_with_email(self, email: str) -> list[SeenLead]:
        return self._where("emailAddress", email)

    def lead_count(self) -> int:
        return int(self._admin.request("GET", "Lead", params={"maxSize": 1, "select": "id"})["total"])

    def fields(self, lead_id: str) -> dict[str, Any]:
        lead = self._admin.lead(lead_id)
        attributes = json.loads(DEFAULT_MAPPING.read_text(encoding="utf-8"))["espocrm"]["lead_fields"]
        found = {name: lead.get(attribute) for name, attribute in attributes.items()}
        found["description"] = lead.get("description")
        return {name: value for name, value in found.items() if value not in (None, "")}

    def _where(self, attribute: str, value: str) -> list[SeenLead]:
        found = self._admin.request(
            "GET",
            "Lead",
            params={
                "orderBy": "createdAt",
                "order": "asc",
                "where[0][type]": "equals",
                "where[0][attribute]": attribute,
                "where[0][value]": value,
            },
        )["list"]
        return [self.lead(item["id"]) for item in found]

    @staticmethod
    def _seen(lead: dict[str, Any]) -> SeenLead:
        return SeenLead(
            lead["id"],
            [item["phoneNumber"] for item in lead.get("phoneNumberData") or []],
            lead.get("cReferralCode"),
            lead.get("cUtmSource"),
            lead.get("cVisitorSessionId"),
        )


@pytest.fixture(scope="module", params=["sandbox", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)])
def crm_run(request: pytest.FixtureRequest) -> Iterator[tuple[LocalRun, CrmView]]:
    """The same end-to-end behaviour over the sandbox and over the real EspoCRM."""
    if request.param == "sandbox":
        run: LocalRun = request.getfixturevalue("sandbox_run")
        yield run, SandboxView(run)
        return
    real: RealEspoCrm = request.getfixturevalue("real_espocrm")
    admin = real.admin()
    try:
        yield request.getfixturevalue("espocrm_run"), EspoCrmView(admin)
    finally:
        admin.close()


def unique_phone(operator: str = "535") -> str:
    """A Turkish mobile number of this test run alone: the real EspoCRM keeps other runs' leads, and a
    phone it knows makes an application a repeat, which never changes that lead's contacts."""
    return f"+90{operator}{uuid.uuid4().int % 10_000_000:07d}"


def person_user_agent(browser_version: str) -> str:
    """The User-Agent of the same Chromium with a window: a person's browser, not ``HeadlessChrome``
    (which /go takes for a script, whose clicks it does not record)."""
    return (
        f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{browser_version} Safari/537.36"
    )


SITE_HOST = "www.agency.test"
API_HOST = "go.agency.test"
SHARED_COOKIE_DOMAIN = ".agency.test"
SEPARATE_API_HOST = "localhost"
"""The API's host where it shares no cookie domain with the site (an ``execute-api`` host). Chromium keeps
the Secure cookies /go sets over plain http only on localhost, which it treats as a secure context."""


@dataclass(frozen=True)
class TwoHostRun:
    """A run whose demo page (the site) and API answer on two hosts, as deployed."""

    run: LocalRun
    crm: CrmView
    site: str
    """``http://www.agency.test:<port>``: the demo page, calling the API cross-origin."""
    api: str
    """``http://go.agency.test:<port>`` (cookies shared on ``.agency.test``), or ``http://localhost:<port>``
    (none shared): the same gateway, under the API's name."""


def start_two_host_runner(
    tmp: Path, crm_settings: dict[str, str], *, shared_cookies: bool
) -> tuple[LocalRun, str, str]:
    port = free_port()
    site = f"http://{SITE_HOST}:{port}"
    api = f"http://{API_HOST if shared_cookies else SEPARATE_API_HOST}:{port}"
    settings = {"SITE_ORIGINS": site, "DEMO_API_ORIGIN": api}
    if shared_cookies:
        settings["COOKIE_DOMAIN"] = SHARED_COOKIE_DOMAIN
    return start_runner(tmp, settings | crm_settings, port), site, api


@contextmanager
def running_two_hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, *, shared_cookies: bool
) -> Iterator[TwoHostRun]:
    """The site on www.agency.test and the API on another host name of the one gateway on 127.0.0.1 (for a
    browser told to resolve them there), over the sandbox or the real EspoCRM (``request.param``)."""
    tmp = tmp_path_factory.mktemp(f"two-host-{request.param}")
    admin: EspoCrmAdminClient | None = None
    crm: CrmView
    if request.param == "sandbox":
        run, site, api = start_two_host_runner(tmp, {}, shared_cookies=shared_cookies)
        crm = SandboxView(run)
    else:
        real: RealEspoCrm = request.getfixturevalue("real_espocrm")
        run, site, api = start_two_host_runner(tmp, espocrm_settings(real), shared_cookies=shared_cookies)
        admin = real.admin()
        crm = EspoCrmView(admin)
    try:
        yield TwoHostRun(run, crm, site, api)
    finally:
        code = run.stop()
        if admin is not None:
            admin.close()
    assert code == 0, f"the runner did not stop cleanly:\n{run.console}"


CRMS = ["sandbox", pytest.param("real-espocrm", marks=pytest.mark.real_espocrm)]


@pytest.fixture(scope="module", params=CRMS)
def two_host_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHostRun]:
    """The API on go.agency.test, cookies shared on .agency.test."""
    with running_two_hosts(request, tmp_path_factory, shared_cookies=True) as run:
        yield run


@pytest.fixture(scope="module", params=CRMS)
def separate_hosts_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoHostRun]:
    """The API on localhost, no cookie shared with the site (no ``CookieDomain``)."""
    with running_two_hosts(request, tmp_path_factory, shared_cookies=False) as run:
        yield run


def json_body(response: httpx.Response) -> dict[str, Any]:
    data = json.loads(response.content)
    assert isinstance(data, dict)
    return data
