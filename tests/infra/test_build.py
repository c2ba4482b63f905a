"""What ``sam build`` (run by ``make validate``, so by ``make test`` and CI) produced is what Lambda
runs on python3.13/arm64: compiled dependencies are cp313 manylinux aarch64 builds, although this
machine is x86_64 and has no Docker."""

from __future__ import annotations

import email
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.sam import ROOT

BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "SharedLayer" / "python"
ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183

pytestmark = pytest.mark.skipif(
    not (BUILD / "template.yaml").is_file(), reason="no SAM build here: `make validate` makes one"
)


def wheel_metadata(dist_info: Path) -> email.message.Message:
    return email.message_from_string((dist_info / "WHEEL").read_text())


def test_compiled_dependencies_are_cp313_manylinux_aarch64_wheels() -> None:
    compiled = {
        dist_info.name.split("-")[0]: wheel_metadata(dist_info).get_all("Tag") or []
        for dist_info in LAYER.glob("*.dist-info")
        if (dist_info / "WHEEL").is_file() and wheel_metadata(dist_info)["Root-Is-Purelib"] == "false"
    }
    assert "pydantic_core" in compiled
    for name, tags in compiled.items():
        assert tags, name
        for tag in tags:
            python, abi, platform = tag.split("-")
            assert (python, abi) == ("cp313", "cp313"), (name, tag)
            assert platform.startswith("manylinux"), (name, tag)
            assert platform.endswith("_aarch64"), (name, tag)


def test_every_shared_object_in_the_layer_is_an_aarch64_elf() -> None:
    shared_objects = sorted(LAYER.rglob("*.so"))
    assert any("pydantic_core" in str(path) for path in shared_objects)
    for path in shared_objects:
        header = path.read_bytes()[:20]
        assert header[:4] == ELF_MAGIC, path
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64, path
        assert "x86_64" not in path.name, path


def test_the_layer_bundles_the_pinned_versions_and_the_crm_bridge_package() -> None:
    bundled = dict(dist_info.name.removesuffix(".dist-info").rsplit("-", 1) for dist_info in LAYER.glob("*.dist-info"))
    bundled = {canonicalize_name(name): version for name, version in bundled.items()}
    for raw_line in (ROOT / "layers/shared/requirements.txt").read_text().splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            assert bundled.get(canonicalize_name(requirement.name)) == pin.version, requirement.name
    assert "boto3" not in bundled  # the runtime's own
    for module in ("crm_bridge/__init__.py", "crm_bridge/worker/processor.py", "crm_bridge/delivery/execute.py"):
        assert (LAYER / module).is_file(), module
    assert (LAYER / "crm_bridge/field_mapping/default_mapping.json").is_file()


def test_the_layer_ships_no_sandbox() -> None:
    """The sandbox CRM is the local runner's (infra/local/sandbox.py): no Lambda gets it, nor SQLite code."""
    package = LAYER / "crm_bridge"
    assert (package / "providers" / "factory.py").is_file()
    assert not list(package.rglob("sandbox*"))
    assert not [path for path in package.rglob("*.py") if "sqlite3" in path.read_text(encoding="utf-8")]
    for function in (path for path in BUILD.iterdir() if path.is_dir() and path != LAYER.parent):
        assert not list(function.rglob("sandbox*")), function.name


def test_each_function_artifact_holds_its_handler_and_nothing_to_compile() -> None:
    for name, module in {
        "ApplicationsFunction": "applications_api.py",
        "MessengerEventsFunction": "messenger_events_api.py",
        "RedirectFunction": "redirect_api.py",
        "CrmHealthFunction": "crm_health_api.py",
        "WorkerFunction": "crm_worker.py",
    }.items():
        assert (BUILD / name / module).is_file(), name
        assert not list((BUILD / name).rglob("*.so")), name
