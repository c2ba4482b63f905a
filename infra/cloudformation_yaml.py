"""CloudFormation and SAM templates in YAML, short-form tags included (``!Ref X`` -> ``{"Ref": X}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


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


def load_sam(text: str) -> Any:
    """The document of a SAM/CloudFormation template in YAML."""
    return yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506  # nosec B506  # a SafeLoader subclass


def load_sam_file(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = load_sam(path.read_text(encoding="utf-8"))
    return document
