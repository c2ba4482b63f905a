"""The SAM template as CloudFormation sees it: parsed (short-form tags included) and transformed offline."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from samtranslator.translator.transform import transform

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "template.yaml"

# Parameters without a default: what samconfig.toml gives per environment.
REQUIRED_PARAMETERS: dict[str, Any] = {
    "SiteOrigins": ["https://www.agency.example", "https://agency.example"],
    "RedirectTelegramUrl": "https://t.me/agency_bot",
    "RedirectWhatsAppNumber": "905321112233",
    "RedirectInstagramUrl": "https://www.instagram.com/agency",
}


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref X`` -> ``{"Ref": X}``, ``!Sub`` -> ``Fn::Sub``..."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_cloudformation(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


@cache
def sam_template() -> dict[str, Any]:
    return load_cloudformation(TEMPLATE)


class _NoManagedPolicies:
    """Stands in for SAM's ManagedPolicyLoader: the template names no AWS managed policy by name,
    so nothing needs IAM (or a network)."""

    def load(self) -> dict[str, str]:
        return {}


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


_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What ``sam package`` does before the transform: local code directories become S3 objects."""
    for resource in template["Resources"].values():
        code_property = _CODE_PROPERTIES.get(resource["Type"])
        if code_property:
            local = resource["Properties"][code_property]
            resource["Properties"][code_property] = f"s3://artifacts/{local.strip('/')}.zip"
    return template


def transformed_template(parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template CloudFormation deploys, both transforms done, from a fresh parse (the transforms
    mutate their input)."""
    sam_template.cache_clear()
    values = REQUIRED_PARAMETERS | (parameters or {})
    source = language_extensions_applied(sam_template(), values)
    result: dict[str, Any] = transform(packaged(source), values, _NoManagedPolicies())
    sam_template.cache_clear()
    return result


def parameter_default(name: str) -> Any:
    return sam_template()["Parameters"][name]["Default"]
