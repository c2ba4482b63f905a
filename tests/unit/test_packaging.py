"""What SAM bundles into the layer is what the tests ran against."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
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


def test_the_layer_holds_no_sandbox_and_needs_nothing_of_the_local_runner(tmp_path: Path) -> None:
    """The sandbox is the local runner's (infra/local/sandbox.py): not a module of the layer, and the layer
    alone (no repository on its path, as in Lambda) refuses CRM_PROVIDER=sandbox rather than importing it."""
    layer = ROOT / "layers/shared/crm_bridge"
    assert importlib.util.find_spec("crm_bridge.providers.sandbox") is None
    assert not list(layer.rglob("sandbox*"))
    for path in layer.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(?:from|import)\s+(?:infra|tests)\b|\bsqlite3\b", text, re.MULTILINE), path
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(layer.parent)!r})\n"
        "from crm_bridge.errors import SettingsError\n"
        "from crm_bridge.field_mapping import load_field_mapping\n"
        "from crm_bridge.providers import build_provider\n"
        "from crm_bridge.settings import load_settings\n"
        f"settings = load_settings({{'CRM_PROVIDER': 'sandbox', 'SANDBOX_DB_PATH': {str(tmp_path / 'crm.sqlite3')!r}}})\n"
        "try:\n    build_provider(settings, load_field_mapping())\n"
        "except SettingsError as error:\n    print(error)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('infra', 'tests', 'sqlite3')))\n"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    refusal, imported = completed.stdout.splitlines()
    assert "CRM_PROVIDER=sandbox is not available here" in refusal
    assert imported == "[]"
    assert not (tmp_path / "crm.sqlite3").exists()
