"""The whole portal's move (issue 23): the agency's portal (tests/migration/portal.py; at scale 1 about
2,000 leads, 800 contacts, 300 companies, 600 deals, 5,000 activities, 300 files) moved into the EspoCRM
simulator by the operator's own commands, within the portal's request budget (:mod:`bench.paced`).

As the operator runs it: ``plan --count`` (measured apart: it reads every record once, 500 a request,
before anything moves), provisioning (what ``provision --plan`` leaves, put straight into the simulator:
not measured), then ``move``, measured alone against the floor of its Bitrix24 requests at 2 a second.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.paced import API_KEY, PacedRun, at_rest, environment
from crm_bridge.migrate.__main__ import EXIT_INCOMPLETE, run
from crm_bridge.migrate.backfill import FAILED
from crm_bridge.migrate.plan import MigrationPlan
from tests.migration.portal import seed_agency_portal
from tests.migration.test_espocrm_target import simulated_plan
from tests.simulators.bitrix24 import RATE_PER_SECOND, SimulatedBitrix24
from tests.simulators.espocrm import SimulatedEspoCrm

OWNER = "aylin"
"""The EspoCRM user paired with the portal's first user (``plan --users``)."""
DEFAULT_OWNER = "office"
"""Who owns everyone else's records (``plan --default-owner``): the others are not in EspoCRM."""


@dataclass(frozen=True)
class MoveResult(PacedRun):
    scale: float
    seeded: int
    """Records in the portal: each should be in the report once."""
    records: dict[str, dict[str, int]]
    """EspoCRM entity → action (created, updated, unchanged, failed) → records, from the move's CSV report."""
    notes: int
    files: int
    """Files on records (a note's files go with the note)."""
    source_methods: dict[str, int]
    """The move's Bitrix24 requests by method: where the budget goes."""
    downloads: int
    """Files read through the portal's file links. The documented limit is of REST requests, and the
    simulator's does not count them; whether a real portal's does is not documented, so the provider
    paces them as requests all the same, and the floor counts them: no move can be faster than its pacing."""
    plan: PacedRun
    """``plan --count``'s reading of the portal, before the move."""

    @property
    def floor_seconds(self) -> float:
        """Every paced call (REST requests and file downloads) at 2 a second."""
        return (self.source_requests + self.downloads) / RATE_PER_SECOND

    @property
    def rest_floor_seconds(self) -> float:
        """The floor of the REST requests alone: what the move would approach were downloads not paced."""
        return self.source_requests / RATE_PER_SECOND

    @property
    def moved(self) -> int:
        return sum(sum(actions.values()) for actions in self.records.values())

    @property
    def failed(self) -> int:
        return sum(actions.get(FAILED, 0) for actions in self.records.values())

    @property
    def complete(self) -> bool:
        """Every record of the portal in the report, none failed, none refused by the portal's limit."""
        return self.moved == self.seeded and not self.failed and not self.refused


def measure_move(scale: float) -> MoveResult:
    with (
        SimulatedBitrix24() as bitrix24,
        SimulatedEspoCrm(api_key=API_KEY, migration_role=True) as espocrm,
        tempfile.TemporaryDirectory() as directory,
    ):
        workdir = Path(directory)
        portal = seed_agency_portal(bitrix24, scale=scale)
        for user_name in (OWNER, DEFAULT_OWNER):  # with an address: an e-mail's sender when theirs is unknown
            espocrm.seed_user(user_name, user_name.title(), f"{user_name}@agency.example")
        users = workdir / "users.json"
        users.write_text(json.dumps({"1": OWNER}), encoding="utf-8")
        plan_path, report = workdir / "plan.json", workdir / "move.csv"
        env = environment(bitrix24, espocrm)
        owners = ("--users", str(users), "--default-owner", DEFAULT_OWNER)
        written = ("--out", str(plan_path), "--provisioning", str(workdir / "provisioning.json"))
        planning = _command(["plan", "--count", *owners, *written], bitrix24, espocrm, env)
        simulated_plan(espocrm, MigrationPlan.from_json(plan_path.read_bytes()).provisioning())
        kept = ("--checkpoint", str(workdir / "move.json"), "--report", str(report))
        downloaded = bitrix24.entities.downloads
        moving = _command(
            ["move", "--plan", str(plan_path), *kept, "--no-progress"], bitrix24, espocrm, env, failures_reported=True
        )
        records, notes, files = _reported(report)
        return MoveResult(
            **dataclasses.asdict(moving),
            scale=scale,
            seeded=sum(len(ids) for ids in portal.ids.values()),
            records=records,
            notes=notes,
            files=files,
            source_methods=dict(Counter(method for method, _ in bitrix24.method_calls).most_common()),
            downloads=bitrix24.entities.downloads - downloaded,
            plan=planning,
        )


def _command(
    argv: list[str],
    bitrix24: SimulatedBitrix24,
    espocrm: SimulatedEspoCrm,
    env: dict[str, str],
    *,
    failures_reported: bool = False,
) -> PacedRun:
    """One ``python -m crm_bridge.migrate`` command timed from a portal at rest. ``failures_reported``:
    the records it could not move are in its report (exit 1), measured, not raised."""
    at_rest(bitrix24)
    target_before = len(espocrm.router.calls)
    out = io.StringIO()
    started = time.monotonic()
    code = run(argv, out, env)
    seconds = time.monotonic() - started
    if code != 0 and not (failures_reported and code == EXIT_INCOMPLETE):
        raise RuntimeError(f"{argv[0]} exited {code}: {out.getvalue()}")
    return PacedRun(seconds, bitrix24.requests, bitrix24.rate_limited, len(espocrm.router.calls) - target_before)


def _reported(report: Path) -> tuple[dict[str, dict[str, int]], int, int]:
    """(EspoCRM entity → action → records, notes, files) from the move's report: what the operator reads."""
    records: dict[str, Counter[str]] = {}
    notes = files = 0
    with report.open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            records.setdefault(row["entity"], Counter())[row["action"]] += 1
            notes += int(row["notes_copied"] or 0)
            files += int(row["files_copied"] or 0)
    return {entity: dict(actions) for entity, actions in records.items()}, notes, files
