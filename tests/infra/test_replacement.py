"""No change replaces what holds data: the templates against the previous release's stateful resources."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.replacement import BASELINE, released_templates, replacements, stateful_resources

RECORD = "python -m tests.infra.replacement record"


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        return released_templates()


@pytest.fixture(scope="module")
def baseline() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(BASELINE.read_text())
    return loaded


def test_no_stateful_resource_of_the_previous_release_is_replaced(
    templates: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> None:
    assert set(baseline) == set(templates)
    for path, template in templates.items():
        found = replacements(baseline[path], template)
        assert not found, (
            f"{path}: deploying this replaces data-holding resources (a new, empty one each): {found}. "
            f"Keep the property, or migrate the data and then record the new baseline ({RECORD})."
        )


def test_every_stateful_resource_is_in_the_baseline(
    templates: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> None:
    """A stateful resource missing from the baseline would go unguarded from its first release on."""
    for path, template in templates.items():
        unrecorded = set(stateful_resources(template)) - set(baseline[path])
        assert not unrecorded, f"{path}: {sorted(unrecorded)} not in {BASELINE.name}: {RECORD}"


def _set(logical_id: str, name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda resources: resources[logical_id]["Properties"].__setitem__(name, value)


def _rename(logical_id: str) -> Callable[[dict[str, Any]], None]:
    return lambda resources: resources.__setitem__(f"{logical_id}V2", resources.pop(logical_id))


def _retype(logical_id: str, resource_type: str) -> Callable[[dict[str, Any]], None]:
    return lambda resources: resources[logical_id].__setitem__("Type", resource_type)


HASH_ON_PHONE = [{"AttributeName": "phone", "KeyType": "HASH"}]


@pytest.mark.parametrize(
    ("path", "change", "named"),
    [
        ("template.yaml", _set("OperationsQueue", "QueueName", "crm-operations"), "OperationsQueue.QueueName"),
        ("template.yaml", _set("DeadLetterQueue", "FifoQueue", True), "DeadLetterQueue.FifoQueue"),
        ("template.yaml", _set("IdempotencyTable", "KeySchema", HASH_ON_PHONE), "IdempotencyTable.KeySchema"),
        ("template.yaml", _set("VisitorSessionsTable", "TableName", "sessions"), "VisitorSessionsTable.TableName"),
        ("template.yaml", _set("RecoveryKey", "KeySpec", "RSA_2048"), "RecoveryKey.KeySpec"),
        ("template.yaml", _set("RecoveryKey", "MultiRegion", True), "RecoveryKey.MultiRegion"),
        ("template.yaml", _set("WorkerLogGroup", "LogGroupName", "/crm-bridge/worker"), "WorkerLogGroup.LogGroupName"),
        ("template.yaml", _rename("IdempotencyTable"), "IdempotencyTable (AWS::DynamoDB::Table): removed"),
        ("template.yaml", _retype("RecoveryKey", "AWS::KMS::ReplicaKey"), "RecoveryKey: type AWS::KMS::Key"),
        ("infra/ecs/espocrm.yaml", _set("FileSystem", "PerformanceMode", "maxIO"), "FileSystem.PerformanceMode"),
    ],
)
def test_the_guard_names_a_planted_replacement(
    templates: dict[str, dict[str, Any]], path: str, change: Callable[[dict[str, Any]], None], named: str
) -> None:
    planted = copy.deepcopy(templates[path])
    change(planted["Resources"])
    (finding,) = replacements(stateful_resources(templates[path]), planted)
    assert finding.startswith(named)


def test_the_guard_lets_in_place_updates_through(templates: dict[str, dict[str, Any]]) -> None:
    """Only what replaces is reported: retention, timeouts, billing and TTL change in place."""
    updated = copy.deepcopy(templates["template.yaml"])
    resources = updated["Resources"]
    resources["OperationsQueue"]["Properties"]["VisibilityTimeout"] = 900
    resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] = 604800
    resources["IdempotencyTable"]["Properties"]["BillingMode"] = "PROVISIONED"
    resources["VisitorSessionsTable"]["Properties"]["TimeToLiveSpecification"]["Enabled"] = False
    resources["RecoveryKey"]["Properties"]["EnableKeyRotation"] = False
    assert replacements(stateful_resources(templates["template.yaml"]), updated) == []
