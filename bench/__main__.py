"""``make bench``: cold starts, warm overhead, an application against a real EspoCRM, CRM requests per
operation, backlog drains, the migrations from Bitrix24 and artifact sizes, in one table; then what
it costs as deployed.

Every figure is a median over repeated runs with its min and max, and every ratio compares with a
floor measured in the same run (this machine is noisy; absolute times alone mean little). Reads
the SAM build in ``.aws-sam/build`` (``make bench`` builds it first; the requests, backfill and move
sections need none). Not part of ``make test``: nothing here asserts a time. ``--quick`` takes a few
minutes; the full run about 25 plus the move's, most of it the 1,000-operation Bitrix24 drain and the
full-size portal's move at 2 requests/s (``--bitrix-operations`` and ``--move-scale`` size them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.artifact import (
    BUILD,
    Twin,
    artifact_sizes,
    build_twin,
    bundled_runtime_distributions,
    bytecode_files,
    snippet_size,
)
from bench.backfill import measure_backfill
from bench.cold import CASES, ColdCase, ColdStarts
from bench.cost import measure_usage
from bench.drain import drain
from bench.move import measure_move
from bench.real_espocrm import measure_real_espocrm
from bench.report import Report, machine, render
from bench.requests import measure_requests
from bench.stack import LoopbackStack, StubCrm
from bench.warm import measure_warm
from infra.espocrm.local import EspoCrmUnavailable

SECTIONS = ("cold", "warm", "espocrm", "requests", "drain", "backfill", "move", "size", "cost")
ON_THE_BUILD = frozenset({"cold", "warm", "espocrm", "drain", "cost"})
"""The sections that run the build's functions (its x86_64 twin); the others need no SAM build."""


@dataclass(frozen=True)
class Config:
    cold_rounds: int
    warm_runs: int
    warm_invocations: dict[str, int]
    drain_operations: int
    drain_latency_ms: float
    bitrix_operations: int
    espocrm_applicants: int
    """New applicants through the handler against the real EspoCRM, and as many through its floor."""
    backfill_leads: int
    move_scale: float
    """The agency's portal the move measures, as a fraction of its full size (1: 2,000 leads, 5,000 activities)."""
    cost_processes: int
    """Fresh processes per function for the cost's usage, each a cold invocation and warm ones."""
    cost_invocations: int
    """Warm invocations in each of them."""
    sections: tuple[str, ...] = SECTIONS
    cases: tuple[ColdCase, ...] = field(default=CASES)


FULL = Config(
    cold_rounds=9,
    warm_runs=3,
    warm_invocations={
        "RedirectFunction": 2000,
        "MessengerEventsFunction": 2000,
        "ApplicationsFunction": 1500,
        "CrmHealthFunction": 600,
        "WorkerFunction": 200,
    },
    drain_operations=1000,
    drain_latency_ms=100.0,
    bitrix_operations=1000,
    espocrm_applicants=200,
    backfill_leads=1000,
    move_scale=1.0,
    cost_processes=5,
    cost_invocations=20,
)
QUICK = Config(
    cold_rounds=3,
    warm_runs=2,
    warm_invocations={name: max(50, count // 4) for name, count in FULL.warm_invocations.items()},
    drain_operations=200,
    drain_latency_ms=100.0,
    bitrix_operations=50,
    espocrm_applicants=40,
    backfill_leads=200,
    move_scale=0.05,
    cost_processes=3,
    cost_invocations=10,
)
TINY = Config(
    cold_rounds=1,
    warm_runs=1,
    warm_invocations=dict.fromkeys(FULL.warm_invocations, 5),
    drain_operations=10,
    drain_latency_ms=5.0,
    bitrix_operations=5,
    espocrm_applicants=3,
    backfill_leads=60,
    move_scale=0.01,
    cost_processes=1,
    cost_invocations=2,
)
"""Seconds, not minutes: what the unit test runs so that the benchmark cannot rot."""


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _on_the_stack(config: Config, twin: Twin, report: Report, log: Callable[[str], None]) -> None:
    """The sections that run functions against moto and the stub CRM on loopback, on one stack."""
    stack = LoopbackStack(StubCrm()).start()
    try:
        if "cold" in config.sections:
            report.cold = ColdStarts(twin, stack).measure(config.cases, config.cold_rounds, log)
        if "warm" in config.sections:
            report.warm = measure_warm(twin, stack, config.warm_invocations, config.warm_runs, log, cases=config.cases)
        if "espocrm" in config.sections:
            try:
                report.espocrm = measure_real_espocrm(twin, stack, config.espocrm_applicants, log)
            except EspoCrmUnavailable as exc:
                report.espocrm_skipped = str(exc)
                log(f"espocrm: skipped, a real EspoCRM cannot run here: {exc}")
        if "cost" in config.sections:
            report.usage = measure_usage(twin, stack, config.cases, config.cost_processes, config.cost_invocations, log)
    finally:
        stack.stop()


def run(config: Config, build: Path = BUILD, progress: object = _progress) -> Report:
    log = progress if callable(progress) else _progress
    twin = build_twin(build) if ON_THE_BUILD & set(config.sections) else None
    report = Report(machine())
    if twin is not None and {"cold", "warm", "espocrm", "cost"} & set(config.sections):
        _on_the_stack(config, twin, report, log)
    if "requests" in config.sections:
        log("requests: each operation kind against the EspoCRM and Bitrix24 simulators")
        report.requests = measure_requests()
    if twin is not None and "drain" in config.sections:
        if config.drain_operations:
            log(f"drain: {config.drain_operations} operations, {config.drain_latency_ms:.0f} ms per CRM request")
            report.drains.append(drain(twin, config.drain_operations, latency_ms=config.drain_latency_ms))
        if config.bitrix_operations:
            log(
                f"drain: {config.bitrix_operations} operations into a Bitrix24-like portal at 2 requests/s"
                f" (about {config.bitrix_operations * 2 / 1.8 / 60:.0f} min)"
            )
            report.drains.append(
                drain(twin, config.bitrix_operations, provider="bitrix24", latency_ms=config.drain_latency_ms)
            )
    if "backfill" in config.sections and config.backfill_leads:
        log(f"backfill: {config.backfill_leads} Bitrix24 leads at 2 requests/s into EspoCRM")
        report.backfill = measure_backfill(config.backfill_leads)
    if "move" in config.sections and config.move_scale:
        log(f"move: the agency's portal at scale {config.move_scale:g} at 2 requests/s into EspoCRM, planned first")
        report.move = measure_move(config.move_scale)
    if "size" in config.sections:
        report.sizes = artifact_sizes(build)
        report.snippet = snippet_size()
        report.runtime_bundled = bundled_runtime_distributions(build)
        report.bytecode_files = bytecode_files(build)
    report.machine["load"] += f" -> {machine()['load']}"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller backlogs (a few minutes)")
    parser.add_argument("--only", help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--rounds", type=int, help="cold-start rounds (default 9, quick 3)")
    parser.add_argument(
        "--applicants", type=int, help="new applicants against the real EspoCRM, each side (default 200, quick 40)"
    )
    parser.add_argument(
        "--bitrix-operations",
        type=int,
        help="backlog drained into the Bitrix24-like portal at 2 requests/s, 0 for none (default 1000, quick 50)",
    )
    parser.add_argument("--backfill-leads", type=int, help="leads the backfill copies (default 1000, quick 200)")
    parser.add_argument(
        "--move-scale", type=float, help="size of the portal the move moves, 1 its full size (default 1, quick 0.05)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--build", type=Path, default=BUILD, help="another SAM build to measure (e.g. a before)")
    arguments = parser.parse_args(argv)
    config = QUICK if arguments.quick else FULL
    if arguments.only:
        unknown = set(arguments.only.split(",")) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
        config = Config(**{**asdict(config), "sections": tuple(arguments.only.split(",")), "cases": config.cases})
    if arguments.rounds:
        config = Config(**{**asdict(config), "cold_rounds": arguments.rounds, "cases": config.cases})
    if arguments.applicants:
        config = Config(**{**asdict(config), "espocrm_applicants": arguments.applicants, "cases": config.cases})
    if arguments.bitrix_operations is not None:
        config = Config(**{**asdict(config), "bitrix_operations": arguments.bitrix_operations, "cases": config.cases})
    if arguments.backfill_leads is not None:
        config = Config(**{**asdict(config), "backfill_leads": arguments.backfill_leads, "cases": config.cases})
    if arguments.move_scale is not None:
        config = Config(**{**asdict(config), "move_scale": arguments.move_scale, "cases": config.cases})
    started = time.monotonic()
    report = run(config, arguments.build.resolve())
    print(render(report))
    print(f"({time.monotonic() - started:.0f} s)")
    if arguments.json:
        arguments.json.write_text(json.dumps(asdict(report), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
