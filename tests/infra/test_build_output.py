"""``infra.build_output``, the step after ``sam build``: bytecode for every module Lambda loads, nothing
the runtime ships, and the SnapStart switch for the API functions."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.build_output import (
    LAYER,
    SOURCES_KEPT,
    enable_snapstart,
    finish,
    invalidation_mode_of,
)
from infra.sam import transform
from tests.infra.sam import REGION, REQUIRED_PARAMETERS, ROOT, sam_template

BUILD = ROOT / ".aws-sam" / "build"
LAYER_BUDGET_BYTES = 15_000_000
API_FUNCTIONS = {"ApplicationsFunction", "MessengerEventsFunction", "RedirectFunction", "CrmHealthFunction"}


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return make_build(tmp_path)


def make_build(tmp_path: Path) -> Path:
    site = tmp_path / LAYER / "python"
    write(site / "crm_bridge" / "__init__.py", "OURS = True\n")
    write(site / "thirdparty" / "__init__.py", "")
    write(site / "thirdparty" / "inner.py", "def fail():\n    raise ValueError('from inner')\n")
    write(site / "single_module.py", "VALUE = 42\n")
    write(site / "anyio" / "__init__.py", "import inspect, sys\nSOURCE = inspect.getsource(sys.modules[__name__])\n")
    write(site / "jmespath" / "__init__.py", "")
    write(site / "jmespath-1.1.0.dist-info" / "METADATA", "Name: jmespath\n")
    write(site / "thirdparty-1.0.dist-info" / "METADATA", "Name: thirdparty\n")
    write(site / "aws_lambda_powertools" / "event_handler" / "openapi" / "swagger_ui" / "swagger-ui-bundle.min.js", "x")
    write(site / "aws_lambda_powertools" / "event_handler" / "openapi" / "swagger_ui" / "__init__.py", "")
    write(site / "thirdparty" / "stubs.pyi", "def fail() -> None: ...\n")
    write(tmp_path / "RedirectFunction" / "redirect_api.py", "def lambda_handler(event, context):\n    return {}\n")
    write(tmp_path / "template.yaml", "Resources: {}\n")
    return tmp_path


def test_third_party_code_ships_as_bytecode_ours_keeps_its_sources(build: Path) -> None:
    finish(build)
    site = build / LAYER / "python"

    assert not list((site / "thirdparty").rglob("*.py"))
    assert (site / "thirdparty" / "inner.pyc").is_file()
    assert (site / "single_module.pyc").is_file()
    assert not (site / "single_module.py").exists()
    for kept in ("crm_bridge", "anyio"):
        assert (site / kept / "__init__.py").is_file(), kept
        (pyc,) = (site / kept / "__pycache__").glob("__init__.cpython-313.pyc")
        assert invalidation_mode_of(pyc).name == "UNCHECKED_HASH", kept
    (handler_pyc,) = (build / "RedirectFunction" / "__pycache__").glob("redirect_api.cpython-313.pyc")
    assert invalidation_mode_of(handler_pyc).name == "UNCHECKED_HASH"
    assert (site / "thirdparty-1.0.dist-info" / "METADATA").is_file()


def test_the_same_sources_give_the_same_bytes_at_every_build(tmp_path: Path) -> None:
    """Or every deploy would publish a new layer version and update every function."""
    contents = []
    for stamp in (1_000_000_000, 1_700_000_000):
        root = make_build(tmp_path / "build")
        for path in root.rglob("*"):
            os.utime(path, (stamp, stamp))
        finish(root)
        contents.append({path.relative_to(root): path.read_bytes() for path in root.rglob("*") if path.is_file()})
        shutil.rmtree(root)
    assert contents[0] == contents[1]


def test_what_lambda_never_reads_is_removed(build: Path) -> None:
    finish(build)
    site = build / LAYER / "python"
    assert not (site / "jmespath").exists()
    assert not (site / "jmespath-1.1.0.dist-info").exists()
    swagger = site / "aws_lambda_powertools" / "event_handler" / "openapi" / "swagger_ui"
    assert not (swagger / "swagger-ui-bundle.min.js").exists()
    assert (swagger / "__init__.pyc").is_file()
    assert not list(site.rglob("*.pyi"))


def test_the_finished_layer_imports_without_sources_and_names_files_as_on_lambda(build: Path) -> None:
    finish(build)
    probe = (
        "import sys, traceback; sys.path.insert(0, sys.argv[1]); import single_module, anyio, crm_bridge; "
        "from thirdparty import inner\n"
        "assert single_module.VALUE == 42 and crm_bridge.OURS and 'SOURCE' in anyio.SOURCE\n"
        "try:\n    inner.fail()\nexcept ValueError as error:\n"
        "    print(traceback.extract_tb(error.__traceback__)[-1].filename)"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-I", "-B", "-c", probe, str(build / LAYER / "python")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == "/opt/python/thirdparty/inner.py"


def transformed(document: dict[str, Any]) -> dict[str, Any]:
    return transform(copy.deepcopy(document), dict(REQUIRED_PARAMETERS), REGION)


def snapstarted(tmp_path: Path, stamp: str) -> tuple[list[str], dict[str, Any]]:
    template = tmp_path / f"template-{stamp}.yaml"
    template.write_text(yaml.safe_dump(copy.deepcopy(sam_template()), sort_keys=False))
    enabled = enable_snapstart(template, stamp)
    return enabled, yaml.safe_load(template.read_text())


def test_snapstart_is_off_unless_built_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    resources = transformed(sam_template())["Resources"]
    assert not [name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Alias"]
    assert all("SnapStart" not in resource.get("Properties", {}) for resource in resources.values())


def test_snapstart_build_publishes_every_api_function_behind_an_alias_at_every_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    enabled, first = snapstarted(tmp_path, "aaaaaaaaaa-1")
    assert set(enabled) == API_FUNCTIONS
    _, second = snapstarted(tmp_path, "bbbbbbbbbb-2")
    versions = []
    for document in (first, second):
        resources = transformed(document)["Resources"]
        for name in API_FUNCTIONS:
            assert resources[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
            assert resources[f"{name}Aliaslive"]["Type"] == "AWS::Lambda::Alias"
        assert "SnapStart" not in resources["WorkerFunction"]["Properties"]
        versions.append({name for name, resource in resources.items() if resource["Type"] == "AWS::Lambda::Version"})
        for name in versions[-1]:
            assert resources[name]["DeletionPolicy"] == "Delete", name
    # A new version at every build: a parameter-only change (switching the CRM) reaches the alias too.
    assert versions[0].isdisjoint(versions[1])


@pytest.mark.skipif(not (BUILD / "template.yaml").is_file(), reason="no SAM build here: `make validate` makes one")
def test_the_real_build_ships_bytecode_within_the_layer_budget() -> None:
    site = BUILD / LAYER / "python"
    sources = {path.relative_to(site).parts[0] for path in site.rglob("*.py")}
    assert sources <= SOURCES_KEPT
    for pyc in site.rglob("__pycache__/*.pyc"):
        assert pyc.name.endswith(".cpython-313.pyc"), pyc
        assert invalidation_mode_of(pyc).name == "UNCHECKED_HASH", pyc
    for function in (path for path in BUILD.iterdir() if path.is_dir() and path.name != LAYER):
        assert list(function.glob("__pycache__/*.cpython-313.pyc")), function.name
    assert not list(site.glob("jmespath*")), "the Lambda runtime ships jmespath (boto3 depends on it)"
    assert sum(path.stat().st_size for path in site.rglob("*") if path.is_file()) < LAYER_BUDGET_BYTES


def test_no_function_serves_swagger_ui_whose_assets_the_build_removes() -> None:
    code = [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers" / "shared" / "crm_bridge").rglob("*.py")]
    assert not [path for path in code if "enable_swagger" in path.read_text()]
