"""The SAM template as CloudFormation sees it, for the template tests (:mod:`infra.sam` does the work)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from infra.cloudformation_yaml import load_sam_file
from infra.sam import transform

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "eu-central-1"

# Parameters without a default: what samconfig.toml gives per environment.
REQUIRED_PARAMETERS: dict[str, Any] = {
    "SiteOrigins": ["https://www.agency.example", "https://agency.example"],
    "RedirectTelegramUrl": "https://t.me/agency_bot",
    "RedirectWhatsAppNumber": "905321112233",
    "RedirectInstagramUrl": "https://www.instagram.com/agency",
}


def load_cloudformation(path: Path) -> dict[str, Any]:
    return load_sam_file(path)


@cache
def sam_template() -> dict[str, Any]:
    return load_sam_file(TEMPLATE)


def transformed_template(parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template CloudFormation deploys, both transforms done, from a fresh parse (the transforms
    mutate their input)."""
    return transform(load_sam_file(TEMPLATE), REQUIRED_PARAMETERS | (parameters or {}), REGION)


def parameter_default(name: str) -> Any:
    return sam_template()["Parameters"][name]["Default"]
