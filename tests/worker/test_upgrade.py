"""An upgrade keeps what waits: the previous release's stack, with an operation waiting in the queue
and one in the dead-letter queue, updated to this template as CloudFormation updates a stack (in the
local moto, the way the runner deploys); both are still there and the worker delivers the waiting one.

The previous release is tests/infra/previous_release.yaml, recorded with the replacement guard's
baseline when a release ships (tests/infra/replacement.py). What this shows is the update itself (it
completes, the stack keeps its queues, tables and key) and that this release's worker delivers what
the previous one queued. moto updates a queue or table in place even where AWS would replace it (a
new name, a key schema): that case is the replacement guard's (tests/infra/test_replacement.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from crm_bridge.delivery import queue as queue_module
from infra.cloudformation_yaml import load_sam_file
from infra.local.aws import CREDENTIALS, LocalAws, store_secret
from infra.local.stack import Stack, dead_letter_queue_arn, deploy, function_configuration, queue_sources, update
from infra.local.stack import queue_url as stack_queue_url
from tests.aws_setup import clear_aws_clients
from tests.infra.replacement import PREVIOUS_RELEASE
from tests.infra.sam import REQUIRED_PARAMETERS, TEMPLATE
from tests.simulators.espocrm import SimulatedEspoCrm
from tests.worker.conftest import ESPOCRM_KEY, Aws, EventSourceMapping, application, cold_start_worker

SECRET = "/crm-bridge/upgrade/espocrm-api-key"
STATEFUL = ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::KMS::Key")


@pytest.fixture
def local_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    """moto's server, which the test's and the worker's AWS clients reach (no IAM: tests/local and
    the end-to-end runs check the roles)."""
    aws = LocalAws()
    aws.start()
    for name, value in aws.environment(CREDENTIALS).items():
        monkeypatch.setenv(name, value)
    clear_aws_clients()
    yield aws
    clear_aws_clients()
    aws.stop()


def stateful(stack: Stack) -> dict[str, str]:
    return {
        resource.logical_id: resource.physical_id
        for resource in stack.resources.values()
        if resource.resource_type in STATEFUL
    }


def queues(local_aws: LocalAws, stack: Stack) -> Aws:
    (source,) = queue_sources(local_aws, stack)
    url = stack_queue_url(stack, source.queue)
    dead_letters = stack_queue_url(stack, dead_letter_queue_arn(local_aws, url))
    return Aws(url, source.queue, dead_letters, int(stack.template["Parameters"]["MaxReceiveCount"]["Default"]))


def test_an_update_from_the_previous_release_keeps_what_waits_and_the_worker_delivers_it(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimulatedEspoCrm(api_key=ESPOCRM_KEY) as espocrm:
        store_secret(local_aws, SECRET, ESPOCRM_KEY)
        parameters = REQUIRED_PARAMETERS | {
            "CrmProvider": "espocrm",
            "EspoCrmUrl": espocrm.base_url,
            "EspoCrmApiKeyName": SECRET,
        }
        name = f"upgrade-{uuid.uuid4().hex[:8]}"
        previous = deploy(local_aws, load_sam_file(PREVIOUS_RELEASE), parameters, name)
        before = queues(local_aws, previous)
        waiting, dead = application(1), application(2)
        queue_module.OperationQueue(before.queue_url, before.dlq_url).enqueue(waiting)
        queue_module.OperationQueue(before.dlq_url, before.dlq_url).enqueue(dead)  # a dead letter, as redrive sees it

        current = update(local_aws, load_sam_file(TEMPLATE), parameters, name)

        assert current.status == "UPDATE_COMPLETE"
        assert stateful(current) == stateful(previous), "no queue, table or key replaced"
        after = queues(local_aws, current)
        assert (after.queue_url, after.dlq_url) == (before.queue_url, before.dlq_url)
        assert after.waiting() == 1
        variables = function_configuration(local_aws, current, "WorkerFunction")["Environment"]["Variables"]
        for variable, value in variables.items():
            monkeypatch.setenv(variable, str(value))
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "crm-bridge-worker")
        EventSourceMapping(after, cold_start_worker(after)).run()

        assert after.waiting() == 0
        (lead,) = espocrm.leads()
        assert espocrm.lead_phones(lead["id"]) == [waiting.payload.phone]
        (dead_letter,) = after.dead_lettered()
        assert str(dead.operation_id) in dead_letter["Body"], "the dead letter is still there, for its redrive"
