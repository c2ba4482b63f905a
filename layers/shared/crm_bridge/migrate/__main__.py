"""``python -m crm_bridge.migrate``: backfill one CRM's leads into the other, reconcile the two, or
plan the whole portal's move into EspoCRM, move it and reconcile the move."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from crm_bridge.errors import CrmError, SettingsError
from crm_bridge.field_mapping import load_field_mapping
from crm_bridge.migrate.backfill import ACTIONS, FAILED, Backfill, Report
from crm_bridge.migrate.bitrix24_portal import PortalReader
from crm_bridge.migrate.espocrm_target import EspoCrmTarget, read_schema
from crm_bridge.migrate.move import CannotResume, Move
from crm_bridge.migrate.plan import MigrationPlan, UnplaceableError, make_plan
from crm_bridge.migrate.reconcile import DIFFERS, ONLY_IN_FROM, ONLY_IN_TO, reconcile, write_report
from crm_bridge.migrate.reconcile_move import REPORT_COLUMNS as RECONCILE_MOVE_COLUMNS
from crm_bridge.migrate.reconcile_move import MoveReconcile
from crm_bridge.migrate.schema import SourceEntity, SourceSchema, TargetSchema
from crm_bridge.migrate.transform import MoveContext
from crm_bridge.providers import CrmProvider, build_provider
from crm_bridge.providers.bitrix24 import Bitrix24Provider
from crm_bridge.providers.espocrm import EspoCrmProvider
from crm_bridge.providers.records import LeadReader
from crm_bridge.settings import CrmProviderName, load_settings

CRMS = (CrmProviderName.BITRIX24.value, CrmProviderName.ESPOCRM.value)
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _moment(value: str) -> datetime:
    """``--since``: an ISO 8601 date or time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r} (e.g. 2026-12-01T09:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crm_bridge.migrate",
        description="Move leads between Bitrix24 and EspoCRM. Both CRMs are configured as for the functions: "
        "ESPOCRM_URL, ESPOCRM_API_KEY (or ..._PARAM), BITRIX24_WEBHOOK_URL (or ..._PARAM).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    backfill = commands.add_parser("backfill", help="copy every lead (with its comments) of one CRM into the other")
    reconciling = commands.add_parser("reconcile", help="compare the two CRMs: missing leads, differing fields")
    planning = commands.add_parser(
        "plan",
        help="read both CRMs' schemas; print where every field, stage and owner of the Bitrix24 portal goes in "
        "EspoCRM, and write the plan and what provisioning creates for it",
    )
    for command in (backfill, reconciling):
        command.add_argument("--from", dest="source", choices=CRMS, required=True)
        command.add_argument("--to", dest="target", choices=CRMS, required=True)
        command.add_argument("--report", type=Path, help="the CSV report (default: a dated file here)")
    for command in (backfill, reconciling, planning):
        command.add_argument(
            "--requests-per-second",
            type=float,
            help="pace of requests to Bitrix24 (default BITRIX24_REQUESTS_PER_SECOND, else 2: a portal's budget; "
            "lower it while the live flow is busy)",
        )
    backfill.add_argument("--since", type=_moment, help="only leads created or changed at or after this time")
    backfill.add_argument(
        "--dry-run", action="store_true", help="read both CRMs, write nothing, count what it would do"
    )
    backfill.add_argument("--checkpoint", type=Path, help="where progress is kept (default .backfill-FROM-TO.json)")
    backfill.add_argument("--restart", action="store_true", help="ignore an interrupted run's checkpoint")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    planning.add_argument(
        "--users",
        type=Path,
        help='JSON object of Bitrix24 user id → EspoCRM userName ({"7": "maria.k"}), for people whose '
        "e-mail does not pair them; it wins over the e-mail",
    )
    planning.add_argument(
        "--default-owner",
        metavar="USERNAME",
        help="the EspoCRM user who owns the records of people who left or are unpaired",
    )
    planning.add_argument("--out", type=Path, default=Path("plan.json"), help="where the plan goes (default plan.json)")
    planning.add_argument(
        "--provisioning",
        type=Path,
        default=Path("provisioning.json"),
        help="where what provisioning creates goes: the file `python -m infra.espocrm.provision --plan` reads "
        "(default provisioning.json)",
    )
    planning.add_argument(
        "--count",
        action="store_true",
        help="read every record (paced, 500 a request) to count the filled fields: only those are placed, the "
        "report shows the counts, and provisioning allows the currencies the amounts are in",
    )
    moving = commands.add_parser(
        "move",
        help="move the whole Bitrix24 portal into EspoCRM as the plan says (after provision --plan): every entity "
        "with its links, owners, notes and files; rerun to continue an interrupted move",
    )
    moving.add_argument("--plan", type=Path, default=Path("plan.json"), help="the plan (default plan.json)")
    moving.add_argument("--report", type=Path, help="the CSV report (default: a dated file here)")
    moving.add_argument("--checkpoint", type=Path, help="where progress is kept (default .move-bitrix24-espocrm.json)")
    moving.add_argument("--dry-run", action="store_true", help="read both CRMs, write nothing, count what it would do")
    moving.add_argument("--restart", action="store_true", help="ignore an interrupted run's checkpoint")
    moving.add_argument("--no-progress", action="store_true", help="no progress bars")
    moving.add_argument("--requests-per-second", type=float, help="pace of requests to Bitrix24 (as for backfill)")
    checking = commands.add_parser(
        "reconcile-move",
        help="compare every record the move placed with its Bitrix24 original, as the plan says it must be: "
        "records, fields, description lines, links, owners, stages, notes and files; exit 1 on any difference",
    )
    checking.add_argument("--plan", type=Path, default=Path("plan.json"), help="the plan (default plan.json)")
    checking.add_argument("--report", type=Path, help="the CSV report of differences (default: a dated file here)")
    checking.add_argument("--requests-per-second", type=float, help="pace of requests to Bitrix24 (as for backfill)")
    return parser


@dataclass(frozen=True)
class Schemas:
    """What ``plan`` reads: both schemas and, when the portal reader counted them, the fields in use."""

    source: SourceSchema
    target: TargetSchema
    filled: Mapping[SourceEntity, Collection[str]] | None = None
    currencies: Collection[str] | None = None
    """The currencies the records' amounts are in, when the portal reader read them."""


type SchemaReader = Callable[[Mapping[str, str], bool, float | None], Schemas]
"""(settings, whether to count the records, Bitrix24's pace) → what ``plan`` reads."""


def read_schemas(environ: Mapping[str, str], count: bool, rate: float | None) -> Schemas:
    """Both schemas through their providers (the portal reader, EspoCRM's metadata and users); with
    ``count``, every record too, for the fields they fill and the currencies they hold."""
    bitrix24, espocrm = _providers(CrmProviderName.BITRIX24.value, CrmProviderName.ESPOCRM.value, rate, environ)
    try:
        if not (isinstance(bitrix24, Bitrix24Provider) and isinstance(espocrm, EspoCrmProvider)):
            raise SettingsError("each CRM's schema is read through its own provider")
        portal = PortalReader(bitrix24)
        source = portal.schema()
        target = read_schema(espocrm)
        usage = portal.usage(source) if count else None
    finally:
        bitrix24.close()
        espocrm.close()
    if usage is None:
        return Schemas(source, target)
    return Schemas(source, target, usage.filled, usage.currencies)


def _providers(source: str, target: str, rate: float | None, environ: Mapping[str, str]) -> tuple[CrmProvider, ...]:
    env = dict(environ)
    env["CRM_PROVIDER"] = target  # the settings' own check: the target's section is configured
    env["BITRIX24_REQUESTS_PER_SECOND"] = str(rate or env.get("BITRIX24_REQUESTS_PER_SECOND") or 2)
    settings = load_settings(env)
    mapping = load_field_mapping(settings.field_mapping_file)
    return tuple(build_provider(settings, mapping, name=CrmProviderName(name)) for name in (source, target))


def _progress_bar() -> Any:
    from tqdm import tqdm  # the operator's terminal only: the functions never load it

    return lambda **options: tqdm(dynamic_ncols=True, smoothing=0.1, file=sys.stderr, **options)


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def run(
    argv: Sequence[str] | None,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
    *,
    schemas: SchemaReader = read_schemas,
) -> int:
    args = _parser().parse_args(argv)
    whole_portal: dict[str, Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]] = {
        "plan": lambda args, environ, out: _plan(args, schemas, environ, out),
        "move": _move,
        "reconcile-move": _reconcile_move,
    }
    if args.command in whole_portal:  # the whole portal into EspoCRM: no --from, --to
        return whole_portal[args.command](args, environ or os.environ, out)
    if args.source == args.target:
        print("error: --from and --to name the same CRM", file=out)
        return EXIT_USAGE
    try:
        source, target = _providers(args.source, args.target, args.requests_per_second, environ or os.environ)
    except SettingsError as exc:
        print(f"error: a migration reads and writes both CRMs, configured as for the functions: {exc}", file=out)
        return EXIT_USAGE
    try:
        if args.command == "backfill":
            return _backfill(args, source, target, out)
        return _reconcile(args, source, target, out)
    except CrmError as error:
        print(f"error: {error.provider} failed: {error} (kind {error.kind.value}); rerun to continue", file=out)
        return EXIT_INCOMPLETE
    finally:
        source.close()
        target.close()


def _backfill(args: argparse.Namespace, source: CrmProvider, target: CrmProvider, out: TextIO) -> int:
    kind = "dry-run" if args.dry_run else "backfill"
    backfill = Backfill(
        source,
        target,
        checkpoint_path=args.checkpoint or Path(f".backfill-{source.name}-{target.name}.json"),
        report_path=args.report or Path(f"{kind}-{source.name}-{target.name}-{_stamp()}.csv"),
        since=args.since,
        dry_run=args.dry_run,
        restart=args.restart,
        progress=None if args.no_progress else _progress_bar(),
    )
    try:
        checkpoint = backfill.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_counts(backfill.counts)}; run the same command again to continue", file=out)
        return EXIT_INTERRUPTED
    verb = "would be" if args.dry_run else "were"
    print(
        f"{kind} {source.name} -> {target.name}: {sum(backfill.counts.values())} leads; {verb} {_counts(backfill.counts)}",
        file=out,
    )
    print(f"notes copied: {backfill.notes_copied}; report: {checkpoint.report}", file=out)
    return EXIT_INCOMPLETE if backfill.counts[FAILED] else 0


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{action} {counts.get(action, 0)}" for action in ACTIONS)


def _reconcile(args: argparse.Namespace, source: CrmProvider, target: CrmProvider, out: TextIO) -> int:
    if not (isinstance(source, LeadReader) and isinstance(target, LeadReader)):  # pragma: no cover - both are
        raise SystemExit("error: both CRMs must be readable")
    summary, differences = reconcile(source, target)
    report = args.report or Path(f"reconcile-{source.name}-{target.name}-{_stamp()}.csv")
    write_report(report, differences)
    print(
        f"reconcile {source.name} -> {target.name}: {summary.leads_from} leads in {source.name}, "
        f"{summary.leads_to} in {target.name}, {summary.paired} paired; "
        f"only in {source.name} {summary.counts[ONLY_IN_FROM]}, only in {target.name} {summary.counts[ONLY_IN_TO]}, "
        f"field differences {summary.counts[DIFFERS]}",
        file=out,
    )
    print(f"report: {report}", file=out)
    return EXIT_INCOMPLETE if summary.counts[ONLY_IN_FROM] or summary.counts[DIFFERS] else 0


def _plan(args: argparse.Namespace, schemas: SchemaReader, environ: Mapping[str, str], out: TextIO) -> int:
    try:
        user_mapping = _user_mapping(args.users) if args.users else {}
        read = schemas(environ, args.count, args.requests_per_second)
    except SettingsError as exc:
        print(f"error: {exc}", file=out)
        return EXIT_USAGE
    except CrmError as error:
        print(f"error: {error.provider} failed while reading its schema: {error}; rerun", file=out)
        return EXIT_INCOMPLETE
    try:
        plan = make_plan(
            read.source,
            read.target,
            user_mapping=user_mapping,
            default_owner=args.default_owner,
            filled=read.filled,
            currencies=read.currencies,
        )
    except UnplaceableError as refused:
        print("error: the plan cannot place everything, so nothing can move yet:", file=out)
        print("\n".join(f"  {problem}" for problem in refused.problems), file=out)
        return EXIT_USAGE
    args.out.write_text(plan.to_json(), encoding="utf-8")
    args.provisioning.write_text(json.dumps(plan.provisioning().to_json(), indent=2), encoding="utf-8")
    print(plan.report(), file=out)
    print(f"\nplan: {args.out}; what provisioning creates: {args.provisioning}", file=out)
    print(f"next: python -m infra.espocrm.provision --plan {args.provisioning} (--dry-run to see it first)", file=out)
    return 0


class _CannotStart(Exception):
    """A command of the whole portal that cannot start: what to tell the operator."""


def _whole_portal(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[MigrationPlan, CrmProvider, CrmProvider]:
    """The plan of ``--plan`` and the two providers the move and its reconcile read through."""
    try:
        plan = MigrationPlan.from_json(args.plan.read_bytes())
    except (OSError, ValueError) as exc:
        raise _CannotStart(
            f"--plan {args.plan}: not a plan written by the plan command ({type(exc).__name__})"
        ) from None
    try:
        bitrix24, espocrm = _providers(
            CrmProviderName.BITRIX24.value, CrmProviderName.ESPOCRM.value, args.requests_per_second, environ
        )
    except SettingsError as exc:
        raise _CannotStart(
            f"the move reads Bitrix24 and writes EspoCRM, configured as for the functions: {exc}"
        ) from None
    return plan, bitrix24, espocrm


def _move(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    try:
        plan, bitrix24, espocrm = _whole_portal(args, environ)
    except _CannotStart as refused:
        print(f"error: {refused}", file=out)
        return EXIT_USAGE
    kind = "dry-run" if args.dry_run else "move"
    move = None
    try:
        if not (isinstance(bitrix24, Bitrix24Provider) and isinstance(espocrm, EspoCrmProvider)):  # pragma: no cover
            raise SettingsError("the move reads Bitrix24 and writes EspoCRM through their own providers")
        reader = PortalReader(bitrix24)
        source, target = reader.schema(), read_schema(espocrm)
        move = Move(
            reader,
            EspoCrmTarget(espocrm, target),
            MoveContext(plan, source, target),
            checkpoint_path=args.checkpoint or Path(".move-bitrix24-espocrm.json"),
            report_path=args.report or Path(f"{kind}-bitrix24-espocrm-{_stamp()}.csv"),
            dry_run=args.dry_run,
            restart=args.restart,
            progress=None if args.no_progress else _progress_bar(),
        )
        checkpoint = move.run()
    except CannotResume as refused:
        print(f"error: {refused}", file=out)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=out)
        return EXIT_INTERRUPTED
    except CrmError as error:
        print(f"error: {error.provider} failed: {error} (kind {error.kind.value}); rerun to continue", file=out)
        return EXIT_INCOMPLETE
    finally:
        bitrix24.close()
        espocrm.close()
    verb = "would be" if args.dry_run else "were"
    print(f"{kind} bitrix24 -> espocrm: records by entity, what {verb} done:", file=out)
    print("\n".join(move.summary()), file=out)
    print(
        f"notes: {move.notes_copied}; files on records: {move.files_copied} (a note's files go with it); "
        f"report: {checkpoint.report}",
        file=out,
    )
    failed = sum(counts[FAILED] for counts in move.counts.values())
    return EXIT_INCOMPLETE if failed else 0


def _reconcile_move(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    try:
        plan, bitrix24, espocrm = _whole_portal(args, environ)
    except _CannotStart as refused:
        print(f"error: {refused}", file=out)
        return EXIT_USAGE
    path = args.report or Path(f"reconcile-move-bitrix24-espocrm-{_stamp()}.csv")
    report = Report(path, RECONCILE_MOVE_COLUMNS)
    try:
        if not (isinstance(bitrix24, Bitrix24Provider) and isinstance(espocrm, EspoCrmProvider)):  # pragma: no cover
            raise SettingsError("reconcile reads Bitrix24 and EspoCRM through their own providers")
        reader = PortalReader(bitrix24)
        source, target = reader.schema(), read_schema(espocrm)
        checking = MoveReconcile(reader, EspoCrmTarget(espocrm, target), MoveContext(plan, source, target), report)
        differences = checking.run()
    except CrmError as error:
        print(f"error: {error.provider} failed: {error} (kind {error.kind.value}); rerun", file=out)
        return EXIT_INCOMPLETE
    finally:
        report.close()
        bitrix24.close()
        espocrm.close()
    print("reconcile bitrix24 -> espocrm, records by entity:", file=out)
    print("\n".join(checking.summary()), file=out)
    print(f"differences: {differences}; report: {path}", file=out)
    return EXIT_INCOMPLETE if differences else 0


def _user_mapping(path: Path) -> dict[str, str]:
    """``--users``: a JSON object of Bitrix24 user id → EspoCRM userName."""
    try:
        pairs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"--users {path.name}: cannot read it as JSON: {exc}") from None
    if not isinstance(pairs, dict) or not all(isinstance(name, str) for name in pairs.values()):
        raise SettingsError(f'--users {path.name}: must be a JSON object of user id → userName ({{"7": "maria.k"}})')
    return {str(user_id): name for user_id, name in pairs.items()}


def main() -> None:
    sys.exit(run(None, sys.stdout))


if __name__ == "__main__":
    main()
