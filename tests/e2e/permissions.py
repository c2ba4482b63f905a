"""Every action of every policy of the *transformed* template, and ``make run`` with some taken away.

``python -m tests.e2e.permissions POLICY SID:ACTION[,SID:ACTION...] [runner arguments]`` is ``make run``
whose stack lacks those actions in those statements of POLICY (a role, for its inline policies, or a
managed policy, by logical id): the runner's own deploy, with the transformed template changed before
``create_stack``. The in-process deployment of the fault runs (``tests.aws_setup.deployed_aws``) takes
the same change from ``PERMISSIONS_WITHOUT`` (:func:`encoded`). The mutation run
(``tests/e2e/test_permissions.py``) starts one or the other for each action.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Permission:
    policy: str
    """Logical id of the role (its inline policies) or of the managed policy."""
    sid: str
    action: str


def _statements(document: Any) -> Iterator[dict[str, Any]]:
    """The statements of a policy document, both branches of an ``Fn::If`` included."""
    if isinstance(document, list):
        for item in document:
            yield from _statements(item)
    elif isinstance(document, dict):
        if "Effect" in document:
            yield document
        else:
            for value in document.values():
                yield from _statements(value)


def _documents(resource: dict[str, Any]) -> list[Any]:
    properties = resource.get("Properties") or {}
    if resource["Type"] == "AWS::IAM::Role":
        return [policy["PolicyDocument"] for policy in properties.get("Policies") or []]
    if resource["Type"] == "AWS::IAM::ManagedPolicy":
        return [properties["PolicyDocument"]]
    return []


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def permissions(template: dict[str, Any]) -> list[Permission]:
    """Each allowed action of each statement of the template's roles and managed policies."""
    return sorted(
        Permission(logical_id, statement.get("Sid", ""), action)
        for logical_id, resource in template["Resources"].items()
        for document in _documents(resource)
        for statement in _statements(document)
        if statement["Effect"] == "Allow"
        for action in _actions(statement)
    )


def aws_managed_policies(template: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, ARN) of each AWS managed policy a role attaches: moto does not load them."""
    return sorted(
        (logical_id, arn if isinstance(arn, str) else arn["Fn::Sub"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
        for arn in resource["Properties"].get("ManagedPolicyArns") or []
        if ":iam::aws:policy/" in str(arn)
    )


def without(template: dict[str, Any], policy: str, removed: set[tuple[str, str]]) -> dict[str, Any]:
    """The template with each removed ``(sid, action)`` taken out of ``policy``'s statement of that Sid.

    A statement left with no action denies the removed ones on its resources instead: IAM (and moto)
    refuse a policy with no statement, and no other statement grants them there (each action is
    listed once per resource), so the caller is refused as if the statement had never allowed them."""

    def prune(node: Any) -> Any:
        if isinstance(node, list):
            return [prune(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "Effect" in node:
            left = [action for action in _actions(node) if (node.get("Sid", ""), action) not in removed]
            return {**node, "Action": left} if left else {**node, "Effect": "Deny"}
        return {key: prune(value) for key, value in node.items()}

    resource = template["Resources"][policy]
    properties = resource["Properties"]
    if resource["Type"] == "AWS::IAM::Role":
        properties["Policies"] = [
            {**item, "PolicyDocument": prune(item["PolicyDocument"])} for item in properties["Policies"]
        ]
    else:
        properties["PolicyDocument"] = prune(properties["PolicyDocument"])
    return template


def arguments(policy: str, removed: set[tuple[str, str]]) -> tuple[str, ...]:
    """This module's first arguments, for ``python -m``: ``policy`` without the ``removed`` actions."""
    return (__name__, *encoded(policy, removed))


def encoded(policy: str, removed: set[tuple[str, str]]) -> tuple[str, str]:
    return policy, ",".join(f"{sid}:{action}" for sid, action in sorted(removed))


def deploy_without(policy: str, removed: str) -> None:
    """From now on, the deploy (:mod:`infra.local.stack`) takes the ``removed`` actions (``encoded``)
    out of ``policy`` in the transformed template, before ``create_stack``."""
    from infra.local import stack
    from infra.sam import transform

    taken = {(sid, action) for sid, _, action in (item.partition(":") for item in removed.split(","))}
    stack.transform = lambda *given: without(transform(*given), policy, taken)  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    from infra.local import runner

    deploy_without(argv[0], argv[1])
    return runner.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
