"""``make bench`` in a tiny configuration, so that the benchmark cannot rot: it runs every section
against the real build (cold starts, warm invocations, a drain, sizes; the application against a real
EspoCRM where one can run here) and renders its table. No assertion here is about time: the benchmark
measures, ``make test`` only checks that it still can."""

from __future__ import annotations

import dataclasses

import pytest

from bench.__main__ import SECTIONS, TINY, run
from bench.artifact import BUILD, LAYER
from bench.move import MoveResult
from bench.paced import PacedRun
from bench.real_espocrm import PARTS, Applicants, RealCrmResult, differences, floor_requests
from bench.report import ESPOCRM_LABEL, Report, machine, render
from bench.requests import KNOWN_LEAD_CLICK, NEW_APPLICATION, REPEAT_APPLICATION, RETRY, TARGETS, measure_requests
from infra.espocrm.local import unavailable_reason

needs_build = pytest.mark.skipif(
    not (BUILD / "template.yaml").is_file(), reason="no SAM build here: `make validate` makes one"
)


@needs_build
def test_the_benchmark_runs_every_section_in_a_tiny_configuration() -> None:
    # The real EspoCRM and the move have tests of their own below (one starts a server and may be
    # skipped, the other needs no build).
    sections = tuple(section for section in SECTIONS if section not in ("espocrm", "move"))
    report = run(dataclasses.replace(TINY, sections=sections), progress=lambda message: None)

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

    assert len(report.requests) == 2 * 4 * 2  # two CRMs, four kinds, each once and retried
    espocrm, bitrix24 = report.drains
    assert (espocrm.delivered, espocrm.dead_lettered) == (TINY.drain_operations, 0)
    assert (bitrix24.provider, bitrix24.delivered, bitrix24.dead_lettered) == (
        "bitrix24",
        TINY.bitrix_operations,
        0,
    )
    # The workers pace themselves as the template says; a first click costs two requests, within the burst.
    assert bitrix24.paced_per_second == 0.9
    assert (bitrix24.needed_requests, bitrix24.crm_requests, bitrix24.refused) == (2 * TINY.bitrix_operations,) * 2 + (
        0,
    )

    assert LAYER in {size.name for size in report.sizes}
    assert report.runtime_bundled == []
    # What each function is billed by: a click's worker writes the lead with two CRM requests and
    # claims its idempotency record; every function fits in the smallest size Lambda offers.
    usage = {measured.function: measured for measured in report.usage}
    assert set(usage) == {case.function for case in TINY.cases}
    assert usage["RedirectFunction"].warm.requests == {"sqs SendMessage": 1}
    assert usage["WorkerFunction"].warm.requests["crm"] == 2
    assert usage["WorkerFunction"].warm.write_units >= 1
    assert all(0 < measured.peak_rss_mb < 128 for measured in report.usage)
    table = render(report)
    # The backfill reads 49 leads and their comments per request: 60 leads are two requests.
    backfill = report.backfill
    assert backfill is not None
    assert (backfill.leads, backfill.source_requests, backfill.refused) == (TINY.backfill_leads, 2, 0)
    assert sum(backfill.counts.values()) == TINY.backfill_leads
    for measure in (
        "cold start redirect",
        "warm applications p99",
        "CRM requests",
        "drain",
        "backfill",
        f"size {LAYER}",
        "size site/crm-bridge.js",
        "cost at AWS list prices",
        "month at 2,000 leads/day",
    ):
        assert measure in table


@needs_build
def test_an_application_against_the_real_espocrm_and_its_floor_in_a_tiny_configuration() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"a real EspoCRM cannot run here: {reason}")
    report = run(dataclasses.replace(TINY, sections=("espocrm",)), progress=lambda message: None)

    assert report.espocrm_skipped is None
    result = report.espocrm
    assert result is not None
    applicants = TINY.espocrm_applicants
    assert len(result.path_ms) == len(result.floor_ms) == len(result.ratios) == applicants
    assert all(len(result.parts[part]) == applicants for part in PARTS)
    # Every applicant is new: one search that finds nothing and one create, on both sides.
    assert result.path_requests == result.floor_requests == {"GET 200": applicants, "POST 200": applicants}
    assert result.differences == [], "the floor no longer sends what the provider sends"
    # Idempotency (in progress, then the answer) and the visitor session (read beside the search, then
    # written), at the modelled latency; nothing queued.
    assert set(result.aws_operations) == {"dynamodb GetItem", "dynamodb PutItem", "dynamodb UpdateItem"}
    assert all(calls >= 3 * result.aws_latency_ms for calls in result.parts["aws_calls"])
    # The path split along its critical path: its parts add up to it, DynamoDB waited for no more than called.
    for index, path_ms in enumerate(result.path_ms):
        assert sum(result.parts[part][index] for part in PARTS if part != "aws_calls") == pytest.approx(path_ms)
        assert result.parts["aws"][index] <= result.parts["aws_calls"][index] + 0.01
    table = render(report)
    assert ESPOCRM_LABEL in table
    assert "path - floor (ms)" in table


def test_bitrix24_operations_cost_at_most_their_target_requests() -> None:
    counts = {(count.provider, count.kind): count for count in measure_requests()}

    assert set(TARGETS) == {("bitrix24", kind) for kind in (NEW_APPLICATION, REPEAT_APPLICATION, KNOWN_LEAD_CLICK)}
    for key, target in TARGETS.items():
        assert counts[key].requests <= target, f"{key}: {counts[key].requests} requests, the target is {target}"
        assert counts[key].met
    # An identical retry (a redelivered message) finds its own work and costs no more than the first time.
    for (provider, kind), count in counts.items():
        if not kind.endswith(RETRY):
            assert counts[(provider, kind + RETRY)].requests <= count.requests
    table = render(Report(machine(), requests=list(counts.values())))
    assert "CRM requests: click on a known lead" in table
    assert "Bitrix24 <= 2 | met" in table


def _result(path_ms: float, floor_ms: float) -> RealCrmResult:
    return RealCrmResult(
        iterations=2,
        aws_latency_ms=5.0,
        floor_ms=[floor_ms, floor_ms + 2],
        search_ms=[30.0, 31.0],
        create_ms=[floor_ms - 30, floor_ms - 29],
        path_ms=[path_ms, path_ms + 2],
        path_search_ms=[30.5, 31.5],
        path_create_ms=[floor_ms - 29.5, floor_ms - 28.5],
        parts={"aws": [5.2, 5.4], "crm": [floor_ms + 1, floor_ms + 3], "provider": [0.7, 0.8]}
        | {"validation": [0.3, 0.3], "handler": [0.9, 1.0], "aws_calls": [15.2, 15.4]},
        path_requests={"GET 200": 2, "POST 200": 2},
        floor_requests={"GET 200": 2, "POST 200": 2},
        aws_operations={"dynamodb PutItem": 4, "dynamodb UpdateItem": 2},
    )


def test_the_real_espocrm_rows_render_the_ratio_and_what_the_rest_is_made_of() -> None:
    report = Report(machine(), espocrm=_result(path_ms=91.0, floor_ms=73.0))

    row, rest = (line for line in render(report).splitlines() if "EspoCRM" in line or "path - floor" in line)

    assert "92.0 ms (91.0-93.0)" in row
    assert "74.0 ms (73.0-75.0): search 30.5 + create 43.5" in row
    assert "1.24x (1.24-1.25) | <= 1.25x | met" in row
    assert "18.0: DynamoDB 5.3 waited of 15.3 (3 calls x 5 ms) + CRM requests +1.0 (2: search 31.0" in rest
    assert "+ provider 0.8 + validation 0.3 + handler 0.9" in rest

    missed = render(Report(machine(), espocrm=_result(path_ms=100.0, floor_ms=73.0)))
    assert next(line for line in missed.splitlines() if ESPOCRM_LABEL in line).rstrip().endswith("MISSED")


def test_a_machine_without_espocrm_gets_the_reason_in_the_table_instead_of_the_figure() -> None:
    report = Report(machine(), espocrm_skipped="php not installed: as root, `make system-packages` installs them")

    (row,) = (line for line in render(report).splitlines() if ESPOCRM_LABEL in line)

    assert "skipped: php not installed" in row
    assert "<= 1.25x" in row


def test_the_floor_is_compared_with_what_the_provider_sent() -> None:
    def sent(floor: dict[str, object]) -> list[dict[str, object]]:
        import json

        return [
            {"method": "GET", "path": "/api/v1/Lead", "query": floor["params"], "headers": ["x-api-key"], "body": ""},
            {
                "method": "POST",
                "path": "/api/v1/Lead",
                "query": {},
                "headers": ["x-api-key"],
                "body": json.dumps(floor["body"]),
            },
        ]

    applicants = Applicants(seed=12)
    provider, floor = floor_requests(next(applicants)), floor_requests(next(applicants))
    assert differences(sent(provider), sent(floor)) == []  # another applicant, the same requests

    provider["body"] = {**provider["body"], "cUtmTerm": "x"}
    (difference,) = differences(sent(provider), sent(floor))
    assert difference.startswith("POST /api/v1/Lead body keys")
    assert differences(sent(provider)[:1], sent(floor)) == [
        "requests: provider GET /api/v1/Lead; floor GET /api/v1/Lead, POST /api/v1/Lead"
    ]


def test_the_path_is_split_along_its_critical_path() -> None:
    from bench.real_espocrm_proc import critical_path

    # 0-100: a CRM search 10-40 beside a DynamoDB call 5-15, another 60-70 beside one 62-75, the
    # provider 50-80; the rest is the handler's.
    layers = [("crm", [(10, 40)]), ("aws", [(5, 15), (60, 70), (62, 75)]), ("provider", [(50, 80)])]

    shares = critical_path(0, 100, layers, "handler")

    assert shares == {"crm": 30, "aws": 5 + 15, "provider": 10 + 5, "handler": 5 + 10 + 20}
    assert sum(shares.values()) == 100


def test_the_whole_portal_is_planned_and_moved_in_a_tiny_configuration_without_a_build() -> None:
    report = run(dataclasses.replace(TINY, sections=("move",)), build=BUILD / "absent", progress=lambda message: None)

    move = report.move
    assert move is not None
    # Every record of the portal once in the move's report, created, every kind where it goes; none
    # refused by the portal's limit: the figure is of a whole move, paced.
    assert (move.moved, move.failed, move.refused) == (move.seeded, 0, 0)
    assert move.complete
    assert set(move.records) == {"Account", "Contact", "Opportunity", "Lead", "Meeting", "Call", "Task", "Email"}
    assert {action for actions in move.records.values() for action in actions} == {"created"}
    assert move.notes > 0
    assert move.files > 0
    assert move.downloads >= move.files  # a note's files are downloaded too
    # The budget is counted for the move alone: the plan's reading is its own figure.
    assert sum(move.source_methods.values()) == move.source_requests > 0
    assert move.plan.source_requests > 0
    assert move.plan.refused == 0
    table = render(report)
    assert f"move portal x{TINY.move_scale:g} ({move.seeded} records)" in table
    assert "plan --count before it" in table


def _moved(seconds: float, **records: dict[str, int]) -> MoveResult:
    return MoveResult(
        seconds=seconds,
        source_requests=36,
        refused=0,
        target_requests=900,
        scale=0.1,
        seeded=sum(sum(actions.values()) for actions in records.values()),
        records=records,
        notes=30,
        files=4,
        source_methods={"batch": 36},
        downloads=4,
        plan=PacedRun(seconds=2.0, source_requests=5, refused=0, target_requests=4),
    )


def test_a_move_is_judged_by_its_floor_and_by_every_record_moved() -> None:
    def verdict(result: MoveResult) -> str:
        return next(line for line in render(Report(machine(), move=result)).splitlines() if "move portal" in line)

    moved = _moved(22.0, Account={"created": 300}, Lead={"created": 500})
    # 36 requests and 4 downloads, each paced: no move is faster than its pacing
    assert "| 20.0 s (40 paced calls / 2 per s)" in verdict(moved)
    assert "| 1.10x | <= 1.2x, all moved | met" in verdict(moved)
    assert verdict(_moved(25.0, Lead={"created": 800})).rstrip().endswith("MISSED")  # 1.25x
    failed = _moved(22.0, Account={"created": 300}, Lead={"created": 499, "failed": 1})
    assert not failed.complete
    assert verdict(failed).rstrip().endswith("MISSED")
    assert verdict(dataclasses.replace(moved, refused=1)).rstrip().endswith("MISSED")
    assert verdict(dataclasses.replace(moved, seeded=801)).rstrip().endswith("MISSED")  # one never reached
