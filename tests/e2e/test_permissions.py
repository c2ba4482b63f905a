"""Every action the template grants is needed: taken away, a named test fails, refused that very action.

``NEEDS`` says, for each action of each statement of the *transformed* template's roles and managed
policies, which end-to-end test needs it, or why it cannot be shown locally. ``make test`` checks the
list is complete (an action added to the template without a row fails it) and runs each named test
with the real policies (there, an AccessDenied fails it). ``make permissions`` is the mutation run: for
each row, ``make run`` deployed without that action, the named test run against it, and the test must
fail with an AccessDenied naming the action; it writes the table into docs/reliability.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.cloudformation_yaml import load_sam_file
from infra.espocrm.local import free_port
from infra.local.aws import REGION
from infra.local.stack import OPERATOR
from infra.local.template import load_template, parameter_values
from infra.sam import transform
from tests.e2e import test_local_run, test_stub_crm
from tests.e2e.conftest import ROOT, start_runner
from tests.e2e.permissions import Permission, arguments, aws_managed_policies, encoded, permissions
from tests.e2e.stub_crm import StubEspoCrm

REPORT = os.environ.get("PERMISSIONS_REPORT")
NOT_SHOWN = "not shown yet"
NOT_CHECKABLE = "not checkable locally"


@dataclass(frozen=True)
class Need:
    test: Callable[..., None] | str
    """The end-to-end test that fails without the action (its fixtures built here: a sandbox run, or a
    run configured for a stub EspoCRM that is down, as ``tests/e2e/test_stub_crm.py`` has them), or
    the node id of a test of the in-process deployment (the fault runs), run on its own."""
    caller: str
    """Who is refused: the function (its role's session), or the operator."""
    also: tuple[str, ...] = ()
    """``Sid:action`` taken away with it, to reach the code that needs it (when SQS refuses an
    application, it is sealed for recovery and its idempotency record deleted for the client's retry)."""

    @property
    def name(self) -> str:
        if isinstance(self.test, str):
            return self.test.rsplit("/", 1)[-1].replace(".py::", "::")
        return f"{self.test.__module__.rsplit('.', 1)[1]}::{self.test.__name__}"


CLICK = test_local_run.test_a_click_goes_through_the_queue_and_the_worker_to_the_sandbox
POISON = test_local_run.test_poison_ends_in_the_dead_letter_queue
APPLICATION = test_local_run.test_an_application_becomes_a_lead_in_the_sandbox
APPLIES = test_local_run.test_an_application_completes_the_lead_of_the_visitors_earlier_click
TAPS = test_local_run.test_an_application_brings_the_click_of_its_visitors_partner_link_tap
REDIRECT = test_local_run.test_the_redirect_answers_302_with_the_code_and_cookies
INSPECT = test_local_run.test_the_operator_inspects_the_dead_letter_queue_of_the_stack
CRM_DOWN = test_stub_crm.test_an_application_queued_while_the_crm_is_down_is_delivered_once_when_it_is_up
SEAL = "SealForRecovery"
SECRET_STORE = "tests/faults/test_crm_secret_store.py::test_the_functions_read_the_crm_key_from_secrets_manager"
"""The stack with ``CrmSecretStore=secretsmanager``: the functions read the CRM's key there."""
OUTAGE = "tests/faults/test_queue_outage.py::test_with_neither_crm_nor_queue_nothing_is_lost_and_nothing_doubles"
"""The operator recovers what was sealed into the log (make the recovery)."""
REHEARSAL = "tests/migration/test_rollback_rehearsal.py::test_a_rollback_rehearsal_loses_nothing_and_doubles_nothing"
"""The operator redrives the DLQ: moto has no move task, so messages are moved (received, sent, deleted)."""

NEEDS: dict[tuple[str, str, str], Need | str] = {
    ("ApplicationsFunctionRole", "QueueOrParkOperations", "sqs:SendMessage"): Need(CRM_DOWN, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", "IdempotencyKeys", "dynamodb:PutItem"): Need(APPLICATION, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", "IdempotencyKeys", "dynamodb:UpdateItem"): Need(APPLICATION, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", "IdempotencyKeys", "dynamodb:DeleteItem"): Need(
        CRM_DOWN, "ApplicationsFunction", also=("QueueOrParkOperations:sqs:SendMessage",)
    ),
    ("ApplicationsFunctionRole", "ApplicantSessions", "dynamodb:GetItem"): Need(APPLIES, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", "ApplicantSessions", "dynamodb:UpdateItem"): Need(APPLIES, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", "ApplicantSessions", "dynamodb:DeleteItem"): Need(TAPS, "ApplicationsFunction"),
    ("ApplicationsFunctionRole", SEAL, "kms:Encrypt"): Need(
        CRM_DOWN, "ApplicationsFunction", also=("QueueOrParkOperations:sqs:SendMessage",)
    ),
    ("MessengerEventsFunctionRole", "QueueOperations", "sqs:SendMessage"): Need(CLICK, "MessengerEventsFunction"),
    ("MessengerEventsFunctionRole", SEAL, "kms:Encrypt"): Need(
        CLICK, "MessengerEventsFunction", also=("QueueOperations:sqs:SendMessage",)
    ),
    ("RedirectFunctionRole", "QueueOperations", "sqs:SendMessage"): Need(REDIRECT, "RedirectFunction"),
    ("RedirectFunctionRole", SEAL, "kms:Encrypt"): Need(
        REDIRECT, "RedirectFunction", also=("QueueOperations:sqs:SendMessage",)
    ),
    ("WorkerRole", "ConsumeAndBackOff", "sqs:ReceiveMessage"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "ConsumeAndBackOff", "sqs:DeleteMessage"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "ConsumeAndBackOff", "sqs:ChangeMessageVisibility"): Need(CRM_DOWN, "WorkerFunction"),
    ("WorkerRole", "ConsumeAndBackOff", "sqs:GetQueueAttributes"): (
        f"{NOT_CHECKABLE}: Lambda's event source mapping reads the queue's attributes with the role; the"
        " runner's poller does not"
    ),
    ("WorkerRole", "ParkRefusedOperations", "sqs:SendMessage"): Need(POISON, "WorkerFunction"),
    ("WorkerRole", "DeliveredOperations", "dynamodb:PutItem"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "DeliveredOperations", "dynamodb:UpdateItem"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "DeliveredOperations", "dynamodb:DeleteItem"): Need(POISON, "WorkerFunction"),
    ("WorkerRole", "VisitorSessions", "dynamodb:GetItem"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "VisitorSessions", "dynamodb:PutItem"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "VisitorSessions", "dynamodb:UpdateItem"): Need(CLICK, "WorkerFunction"),
    ("WorkerRole", "VisitorSessions", "dynamodb:DeleteItem"): Need(POISON, "WorkerFunction"),
    ("CrmSecretsReadPolicy", "CrmParameters", "ssm:GetParameter"): Need(CRM_DOWN, "ApplicationsFunction"),
    ("CrmSecretsReadPolicy", "CrmSecrets", "secretsmanager:GetSecretValue"): Need(SECRET_STORE, "ApplicationsFunction"),
    ("OperatorPolicy", "ReadTheStackOutputs", "cloudformation:DescribeStacks"): Need(INSPECT, OPERATOR),
    ("OperatorPolicy", "InspectAndRedriveTheDeadLetterQueue", "sqs:GetQueueAttributes"): Need(INSPECT, OPERATOR),
    ("OperatorPolicy", "InspectAndRedriveTheDeadLetterQueue", "sqs:ReceiveMessage"): Need(POISON, OPERATOR),
    ("OperatorPolicy", "InspectAndRedriveTheDeadLetterQueue", "sqs:ChangeMessageVisibility"): Need(INSPECT, OPERATOR),
    ("OperatorPolicy", "InspectAndRedriveTheDeadLetterQueue", "sqs:DeleteMessage"): Need(REHEARSAL, OPERATOR),
    ("OperatorPolicy", "InspectAndRedriveTheDeadLetterQueue", "sqs:StartMessageMoveTask"): (
        f"{NOT_CHECKABLE}: moto 5.2.6 has no StartMessageMoveTask (make dlq-redrive)"
    ),
    ("OperatorPolicy", "PutOperationsBack", "sqs:GetQueueAttributes"): Need(INSPECT, OPERATOR),
    ("OperatorPolicy", "PutOperationsBack", "sqs:SendMessage"): Need(POISON, OPERATOR),
    ("OperatorPolicy", "UnsealRecoveredOperations", "kms:Decrypt"): Need(OUTAGE, OPERATOR),
    ("OperatorPolicy", "HealthCheckDetails", "execute-api:Invoke"): (
        f"{NOT_CHECKABLE}: moto's CloudFormation creates no HTTP API; the runner's gateway checks no SigV4"
    ),
}
MANAGED = f"{NOT_CHECKABLE}: moto does not load AWS managed policies; local functions log to the console"


def transformed() -> dict[str, Any]:
    """The template as the runner deploys it for a stub EspoCRM whose key is in SSM (every condition
    of the policies that applies locally is true; Secrets Manager's is not, and says so)."""
    template = load_template(ROOT / "template.yaml")
    parameters = parameter_values(template, {"EspoCrmApiKeyName": "/crm-bridge/local/espocrm-api-key"})
    return transform(load_sam_file(ROOT / "template.yaml"), dict(parameters), REGION)


def test_every_action_of_the_template_has_the_test_that_needs_it() -> None:
    template = transformed()
    granted = {(item.policy, item.sid, item.action) for item in permissions(template)}
    assert granted == set(NEEDS), "each action the template grants has its row in NEEDS, and only those"
    assert {role for role, _ in aws_managed_policies(template)} == {
        "ApplicationsFunctionRole",
        "CrmHealthFunctionRole",
        "MessengerEventsFunctionRole",
        "RedirectFunctionRole",
        "WorkerRole",
    }, "AWSLambdaBasicExecutionRole, for the logs: the rows of MANAGED"


@dataclass
class Outcome:
    permission: Permission
    need: Need | str
    result: str
    seconds: float = 0.0


OUTCOMES: list[Outcome] = []
CHECKED = [
    pytest.param(Permission(*key), need, id=f"{key[0]}:{key[1]}:{key[2]}")
    for key, need in NEEDS.items()
    if isinstance(need, Need)
]


@pytest.fixture(scope="module")
def report() -> Iterator[list[Outcome]]:
    yield OUTCOMES
    if REPORT and OUTCOMES:
        write_report(Path(REPORT), OUTCOMES)


def run_without(tmp: Path, permission: Permission, need: Need) -> tuple[BaseException | None, str]:
    """The named test against ``make run`` deployed without the action: how it failed, and the console."""
    removed = {(permission.sid, permission.action), *(_sid_action(item) for item in need.also)}
    if isinstance(need.test, str):
        return run_in_process_without(need.test, permission.policy, removed)
    crm = StubEspoCrm(free_port(), test_stub_crm.API_KEY) if need.test is CRM_DOWN else None
    settings = (
        {"CRM_PROVIDER": "espocrm", "ESPOCRM_URL": crm.base_url, "ESPOCRM_API_KEY": test_stub_crm.API_KEY}
        if crm
        else {}
    )
    run = start_runner(tmp, settings, module=arguments(permission.policy, removed))
    failure: BaseException | None = None
    try:
        need.test(run, *([crm] if crm else []))
    except BaseException as exc:  # pytest.fail raises a BaseException: how the test failed is the result
        failure = exc
    finally:
        if crm:
            crm.stop()
    try:
        run.stop()
    except BaseException as exc:  # the AccessDenied the run logged fails the test here
        failure = failure or exc
    return failure, run.console


def _sid_action(item: str) -> tuple[str, str]:
    sid, _, action = item.partition(":")
    return sid, action


def run_in_process_without(node: str, policy: str, removed: set[tuple[str, str]]) -> tuple[BaseException | None, str]:
    """The named test of the in-process deployment, on its own, deployed without the action."""
    environment = os.environ | {"PERMISSIONS_WITHOUT": " ".join(encoded(policy, removed))}
    environment.pop("PERMISSIONS_REPORT", None)
    ran = subprocess.run(  # noqa: S603 - this interpreter running pytest on a test of this repository
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    output = ran.stdout + ran.stderr
    return (AssertionError(f"{node} failed") if ran.returncode else None), output


def refusal(console: str, caller: str, action: str) -> str | None:
    pattern = re.compile(rf"AccessDenied: \S*[:/]{re.escape(caller)} may not {re.escape(action)} on \S+")
    found = pattern.search(console)
    return found.group(0) if found else None


@pytest.mark.skipif(not REPORT, reason="the mutation run: make permissions (a runner per action, minutes)")
@pytest.mark.parametrize(("permission", "need"), CHECKED)
def test_without_the_action_its_test_fails_refused_it(
    permission: Permission, need: Need, tmp_path: Path, report: list[Outcome]
) -> None:
    started = time.monotonic()
    failure, console = run_without(tmp_path, permission, need)
    refused = refusal(console, need.caller, permission.action)
    outcome = Outcome(permission, need, "needed" if failure and refused else "NOT NEEDED", time.monotonic() - started)
    report.append(outcome)
    assert failure is not None, f"{need.name} passes without {permission.action}"
    assert refused, f"{need.name} failed without {permission.action}, but not refused it:\n{failure}"


def write_report(path: Path, outcomes: list[Outcome]) -> None:
    """The figures and table of the last mutation run, in place of the previous ones."""
    done = {outcome.permission: outcome for outcome in outcomes}
    rows: list[str] = []
    counts: dict[str, Counter[str]] = {}
    for key, need in NEEDS.items():
        outcome = done.get(Permission(*key))
        if isinstance(need, Need):
            kind = outcome.result if outcome else "not run"
            also = f" (with {', '.join(need.also)} also taken away)" if need.also else ""
            result = f"{kind}, {outcome.seconds:.0f} s" if outcome else kind
            rows.append(f"| {key[0]} | {key[1]} | `{key[2]}` | `{need.name}`{also} | {result} |")
        else:
            kind = need.split(":")[0]
            rows.append(f"| {key[0]} | {key[1]} | `{key[2]}` | | {need} |")
        counts.setdefault(key[0], Counter())[kind] += 1
    for role, arn in aws_managed_policies(transformed()):
        rows.append(f"| {role} | | `{arn.rsplit('/', 1)[1]}` (AWS managed) | | {MANAGED} |")
    figures = [
        f"- {policy}: {sum(kinds.values())} actions: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        for policy, kinds in counts.items()
    ]
    header = ["| policy | statement | action | the test that needs it | result |", "| --- | --- | --- | --- | --- |"]
    table = "\n".join([*figures, "", *header, *rows])
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- permissions: make permissions writes this table -->", "<!-- /permissions -->"
    before, rest = text.split(start)
    path.write_text(f"{before}{start}\n{table}\n{end}{rest.split(end)[1]}", encoding="utf-8")
