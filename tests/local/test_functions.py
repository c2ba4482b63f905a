"""A function process: its own environment, a cold start, Lambda's timeout, its output forwarded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.functions import LocalFunction, lambda_environment
from infra.local.template import FunctionSpec

HANDLER = """
import os
import sys
import time

LOADED_WITH = os.environ.get("ONLY_MINE")


def lambda_handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    print('{"level": "INFO", "message": "handled", "operation_id": "0123456789"}')
    print("plain words", file=sys.stderr)
    return {
        "loaded_with": LOADED_WITH,
        "leaked": os.environ.get("RUNNER_ONLY"),
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "cwd": os.getcwd(),
    }
"""


SANDBOX_MODULE = "infra.local.sandbox"
CRM_HANDLER = """
from crm_bridge.providers import get_provider


def lambda_handler(event, context):
    try:
        return {"provider": get_provider().name}
    except Exception as error:
        return {"refused": str(error)}
"""


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "demo_api.py").write_text(HANDLER, encoding="utf-8")
    (tmp_path / "crm_api.py").write_text(CRM_HANDLER, encoding="utf-8")
    (tmp_path / "broken_api.py").write_text("raise RuntimeError('CRM_PROVIDER is not set')\n", encoding="utf-8")
    return tmp_path


def spec(code_dir: Path, handler: str = "demo_api.lambda_handler") -> FunctionSpec:
    return FunctionSpec("DemoFunction", code_dir, handler, timeout_seconds=1, memory_mb=128, runtime="python3.13")


@pytest.fixture
def output() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
def demo(
    code_dir: Path, output: list[tuple[str, str, str]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalFunction]:
    monkeypatch.setenv("RUNNER_ONLY", "the runner's own setting")
    environment = lambda_environment(spec(code_dir), {"ONLY_MINE": "declared"}, "eu-central-1")
    function = LocalFunction(spec(code_dir), environment, lambda *line: output.append(line))
    assert function.start()
    yield function
    function.stop()


def test_the_handler_runs_with_its_own_environment_only(demo: LocalFunction, code_dir: Path) -> None:
    invocation = demo.invoke({})

    assert invocation.ok
    assert invocation.payload["loaded_with"] == "declared"
    assert invocation.payload["leaked"] is None
    assert 0 < invocation.payload["remaining_ms"] <= 1000
    assert invocation.payload["cwd"] == str(code_dir)
    assert "RUNNER_ONLY" in os.environ


def test_output_comes_back_line_by_line(demo: LocalFunction, output: list[tuple[str, str, str]]) -> None:
    demo.invoke({})
    demo.stop()  # the output thread has delivered every line once the process is gone

    assert ("DemoFunction", "stdout", '{"level": "INFO", "message": "handled", "operation_id": "0123456789"}') in output
    assert ("DemoFunction", "stderr", "plain words") in output


def test_a_timeout_ends_the_process_and_the_next_invocation_starts_a_fresh_one(demo: LocalFunction) -> None:
    timed_out = demo.invoke({"sleep": 5})
    again = demo.invoke({})

    assert not timed_out.ok
    assert timed_out.payload == {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 1.00 seconds"}
    assert timed_out.duration_ms < 3000
    assert again.ok


def test_a_handler_that_cannot_load_is_an_init_error(code_dir: Path) -> None:
    broken = LocalFunction(spec(code_dir, "broken_api.lambda_handler"), {"PATH": os.environ["PATH"]}, lambda *_: None)

    assert not broken.start()
    assert broken.init_error == {"errorType": "RuntimeError", "errorMessage": "CRM_PROVIDER is not set"}
    invocation = broken.invoke({})
    assert (invocation.ok, invocation.payload["errorType"]) == (False, "RuntimeError")
    broken.stop()


def test_the_sandbox_is_a_crm_only_where_the_runner_preloads_it(code_dir: Path, tmp_path: Path) -> None:
    """The layer has no sandbox: a function process selects it only with infra.local.sandbox preloaded."""
    crm_spec = FunctionSpec(
        "CrmFunction", code_dir, "crm_api.lambda_handler", timeout_seconds=30, memory_mb=128, runtime="python3.13"
    )
    declared = {"CRM_PROVIDER": "sandbox", "SANDBOX_DB_PATH": str(tmp_path / "crm.sqlite3")}
    environment = lambda_environment(crm_spec, declared, "eu-central-1")
    answers: dict[tuple[str, ...], Any] = {}
    for preload in ((), (SANDBOX_MODULE,)):
        function = LocalFunction(crm_spec, environment, lambda *_: None, preload=preload)
        assert function.start()
        answers[preload] = function.invoke({}).payload
        function.stop()

    assert "CRM_PROVIDER=sandbox is not available here" in answers[()]["refused"]
    assert answers[(SANDBOX_MODULE,)] == {"provider": "sandbox"}
    assert (tmp_path / "crm.sqlite3").is_file()
