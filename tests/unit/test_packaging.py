"""What SAM bundles into the layer is what the tests ran against."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]


def layer_pins() -> dict[str, str]:
    pins = {}
    for raw_line in (ROOT / "layers/shared/requirements.txt").read_text().splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line}: the layer pins exact versions"
            pins[requirement.name] = specifier.version
    return pins


def test_the_layer_pins_every_runtime_dependency_within_the_project_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {Requirement(dep).name: Requirement(dep) for dep in project["dependencies"]}
    pins = layer_pins()
    assert pins.keys() == runtime.keys()
    for name, requirement in runtime.items():
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement.specifier}"


def test_the_tests_run_against_the_pinned_versions() -> None:
    for name, pinned in layer_pins().items():
        assert version(name) == pinned, f"installed {name} {version(name)} differs from the layer's {pinned}"
