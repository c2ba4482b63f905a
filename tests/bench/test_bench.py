"""``make bench`` in a tiny configuration, so that the benchmark cannot rot: it runs every section
against the real build (cold starts, warm invocations, a drain, sizes) and renders its table. No
assertion here is about time: the benchmark measures, ``make test`` only checks that it still can."""

from __future__ import annotations

import pytest

from bench.__main__ import TINY, run
from bench.artifact import BUILD, LAYER
from bench.report import render

pytestmark = pytest.mark.skipif(
    not (BUILD / "template.yaml").is_file(), reason="no SAM build here: `make validate` makes one"
)


def test_the_benchmark_runs_every_section_in_a_tiny_configuration() -> None:
    report = run(TINY, progress=lambda message: None)

    assert {result.case.label for result in report.cold} == {
        "redirect",
        "messenger",
        "applications",
        "health",
        "worker",
    }
    for result in report.cold:
        assert len(result.function) == len(result.floor) == TINY.cold_rounds
        assert result.calls, f"{result.case.label}: the traced run made no AWS or CRM call for the floor to replay"
    assert {warm.case.label for warm in report.warm} == {result.case.label for result in report.cold}
    assert all(len(warm.p99) == TINY.warm_runs for warm in report.warm)

    espocrm, bitrix24 = report.drains
    assert (espocrm.delivered, espocrm.dead_lettered) == (TINY.drain_operations, 0)
    assert (bitrix24.provider, bitrix24.delivered, bitrix24.dead_lettered) == (
        "bitrix24",
        TINY.bitrix_operations,
        0,
    )

    assert LAYER in {size.name for size in report.sizes}
    assert report.runtime_bundled == []
    table = render(report)
    for measure in ("cold start redirect", "warm applications p99", "drain", f"size {LAYER}"):
        assert measure in table
