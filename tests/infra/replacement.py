"""The replacement guard: would deploying this template replace something that holds data?

CloudFormation replaces a resource whose logical id or type changes, or a property of which changes
that its type cannot update in place: a replaced queue, table or key is a new, empty one, and the old
one is deleted (or, retained, orphaned with its data out of the stack's reach).

*Stateful* is cfn-lint's list of such types (``StatefulResources.json``); which properties force a
replacement comes from each type's CloudFormation registry schema as cfn-lint ships it
(``createOnlyProperties``, and ``conditionalCreateOnlyProperties``: DynamoDB's ``KeySchema`` is one).
The previous release's stateful resources are kept in ``stateful_baseline.json``, and its template in
``previous_release.yaml`` (which tests/worker/test_upgrade.py deploys, then updates to this one):
reviewed like code, and recorded again, deliberately, when a release ships or a stateful resource is
added::

    .venv/bin/python -m tests.infra.replacement record
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from tests.infra.sam import ROOT, load_cloudformation, transformed_template

BASELINE = Path(__file__).with_name("stateful_baseline.json")
PREVIOUS_RELEASE = Path(__file__).with_name("previous_release.yaml")
REGION = "eu-central-1"
# The KMS key's schema marks none of these create-only: its handler fails the update instead ("the
# update request fails, regardless of the value of the UpdateReplacePolicy attribute", their
# descriptions say), so such a change cannot be deployed either.
_IMMUTABLE: dict[str, tuple[str, ...]] = {
    "AWS::KMS::Key": ("/properties/KeySpec", "/properties/KeyUsage", "/properties/MultiRegion", "/properties/Origin"),
}


@cache
def stateful_types() -> frozenset[str]:
    spec = json.loads(resources.files("cfnlint.data.AdditionalSpecs").joinpath("StatefulResources.json").read_text())
    return frozenset(spec["ResourceTypes"])


@cache
def replacing_properties(resource_type: str) -> tuple[tuple[str, ...], ...]:
    """Paths into Properties (``("KeySchema",)``) whose change replaces a resource of this type."""
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource_type).schema
    pointers = [
        *schema.get("createOnlyProperties", []),
        *schema.get("conditionalCreateOnlyProperties", []),
        *_IMMUTABLE.get(resource_type, ()),
    ]
    return tuple(tuple(pointer.removeprefix("/properties/").split("/")) for pointer in pointers)


def _value_at(properties: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value a schema pointer names; a ``*`` (any list item) compares the whole list."""
    value: Any = properties
    for part in path:
        if part == "*" or not isinstance(value, dict):
            break
        value = value.get(part)
    return value


def stateful_resources(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: {"Type": resource["Type"], "Properties": resource.get("Properties", {})}
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in stateful_types()
    }


def replacements(previous: dict[str, dict[str, Any]], template: dict[str, Any]) -> list[str]:
    """What deploying ``template`` over the ``previous`` stateful resources would replace, one line
    per resource and property."""
    found = []
    for logical_id, before in previous.items():
        after = template["Resources"].get(logical_id)
        if after is None:
            found.append(f"{logical_id} ({before['Type']}): removed, or its logical id changed")
        elif after["Type"] != before["Type"]:
            found.append(f"{logical_id}: type {before['Type']} -> {after['Type']}")
        else:
            for path in replacing_properties(before["Type"]):
                old, new = _value_at(before["Properties"], path), _value_at(after.get("Properties", {}), path)
                if old != new:
                    found.append(f"{logical_id}.{'.'.join(path)}: {old!r} -> {new!r} replaces the {before['Type']}")
    return found


def released_templates() -> dict[str, dict[str, Any]]:
    """Each template as CloudFormation receives it (template.yaml after the SAM transform, whose
    logical ids are the stack's), by path."""
    return {
        "template.yaml": transformed_template(),
        "infra/ecs/espocrm.yaml": load_cloudformation(ROOT / "infra/ecs/espocrm.yaml"),
    }


def record() -> None:
    snapshot = {path: stateful_resources(template) for path, template in released_templates().items()}
    BASELINE.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    PREVIOUS_RELEASE.write_text((ROOT / "template.yaml").read_text())


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tests.infra.replacement record")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    record()
