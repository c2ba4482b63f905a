"""template.yaml as CloudFormation sees it: packaged and transformed offline by SAM's own translator.
The local runner deploys what this gives; the template tests read it. (Parsing is
:mod:`infra.cloudformation_yaml`'s, which the function processes load without SAM's translator.)"""

from __future__ import annotations

from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.transform import undo_mark_unicode_str_in_template
from samtranslator.translator.translator import Translator

ARTIFACTS_BUCKET = "artifacts"
_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"


def language_extensions_applied(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's AWS::LanguageExtensions transform does here, before SAM's: a
    DeletionPolicy or UpdateReplacePolicy that is ``!Ref Parameter`` becomes the parameter's value.
    samtranslator passes such a Ref through untouched, and moto's CloudFormation runs no
    LanguageExtensions: both need the literal (the only use of the transform this template makes)."""
    values = {name: declared.get("Default") for name, declared in template["Parameters"].items()} | parameters
    for logical_id, resource in template["Resources"].items():
        for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
            policy = resource.get(attribute)
            if isinstance(policy, dict):
                if list(policy) != ["Ref"] or policy["Ref"] not in values:
                    raise ValueError(
                        f"{logical_id}.{attribute}: only !Ref to a parameter is resolved here, not {policy}"
                    )
                resource[attribute] = values[policy["Ref"]]
    template["Transform"] = [name for name in template["Transform"] if name != LANGUAGE_EXTENSIONS]
    return template


class _NoManagedPolicies:
    """Stands in for SAM's ManagedPolicyLoader: the template names no AWS managed policy by name,
    so nothing needs IAM (or a network)."""

    def load(self) -> dict[str, str]:
        return {}


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What ``sam package`` does before the transform: local code directories become S3 objects."""
    for resource in template["Resources"].values():
        code_property = _CODE_PROPERTIES.get(resource["Type"])
        if code_property:
            local = resource["Properties"][code_property]
            resource["Properties"][code_property] = f"s3://{ARTIFACTS_BUCKET}/{local.strip('/')}.zip"
    return template


def code_objects(transformed: dict[str, Any]) -> list[str]:
    """The S3 keys of the code the transformed template's functions and layers are deployed from."""
    keys = []
    for resource in transformed["Resources"].values():
        properties = resource.get("Properties") or {}
        code = properties.get("Code") or properties.get("Content")
        if isinstance(code, dict) and code.get("S3Bucket") == ARTIFACTS_BUCKET:
            keys.append(str(code["S3Key"]))
    return keys


def transform(sam: dict[str, Any], parameters: dict[str, Any], region: str) -> dict[str, Any]:
    """The template CloudFormation deploys, both transforms done (``sam`` is consumed: they mutate it)."""
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    source = packaged(language_extensions_applied(sam, dict(parameters)))
    transformed = translator.translate(
        source, parameter_values=dict(parameters), get_managed_policy_map=_NoManagedPolicies().load
    )
    result: dict[str, Any] = undo_mark_unicode_str_in_template(transformed)
    return result
