"""Schemathesis against the generated OpenAPI document, on the local runner: no 5xx, every answer as documented."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from tests.e2e.conftest import LocalRun, start_runner

ROOT = Path(__file__).parents[2]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
"""Per operation and phase; CI keeps it small, ``FUZZ_EXAMPLES=1000`` digs deeper."""
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": int(os.environ.get("FUZZ_SEED", "8")),
        # Methods the document does not list never reach a function: API Gateway answers them itself
        # (and the local gateway imitates it), so they say nothing about this code.
        "phases": {"coverage": {"unexpected-methods": []}},
        # Hostile data is refused with one of the documented 4xx: 413 for a body past MAX_BODY_BYTES.
        "checks": {"negative_data_rejection": {"expected-statuses": ["400", "413", "415", "422"]}},
    }
)
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json", config=CONFIG)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.missing_required_header,
]
"""Not ``positive_data_acceptance``: a body the schema allows may still be refused (a phone number that
is no phone number is a 422), which the document says."""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    # The functions' answers, not API Gateway's: without the routes' throttles (a 429 from the gateway).
    run = start_runner(tmp_path_factory.mktemp("fuzzed-run"), {"LOCAL_THROTTLING": "off"})
    yield run
    assert run.stop() == 0, f"the runner did not stop cleanly:\n{run.console}"


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_as_documented(case: schemathesis.Case[Any], api: LocalRun) -> None:
    case.call_and_validate(base_url=api.url, checks=CHECKS, allow_redirects=False, timeout=15)
