"""Finish ``sam build``'s output for Lambda: bytecode for every module, and nothing Lambda never reads.

``sam build`` (the python_pip builder) copies sources without ``*.pyc`` / ``__pycache__``, and
Lambda's code directories (``/var/task``, ``/opt``) are read-only: without bytecode in the zip, every
cold start compiles every module it imports, and keeps none of it (``make bench``: a third of the
redirect's cold start). So after ``sam build`` this:

* compiles our code (the functions and ``crm_bridge``) beside its sources, hash-based and unchecked:
  ``sam deploy`` zips files without dates, so on Lambda every source says 1980-01-01 and
  timestamp-based ``.pyc`` files would all be stale; an unchecked ``.pyc`` is used without reading
  its source (it is written right after the build, from the very sources beside it);
* ships the layer's third-party packages as bytecode only (``module.pyc`` in place of
  ``module.py``): pinned PyPI releases whose sources are public, while their sources and bytecode
  together would take the layer past its 15 MB budget. A traceback through them shows file and line,
  without the line's text. ``anyio`` keeps its sources beside its bytecode: it reads them (its
  lazy imports parse its own ``__init__``);
* removes what Lambda never reads: ``jmespath``, which the runtime ships (boto3 depends on it),
  Swagger UI's assets (served only by ``enable_swagger()``, which no function calls), type stubs and
  SBOMs.

Bytecode does not depend on the machine, only on the Python version: it is compiled by the Python
3.13 running this (Lambda's python3.13 keeps one bytecode format for all its 3.13.x updates).

``make build`` runs it: ``python -m infra.build_output .aws-sam/build``. With ``--snapstart``
(``make build SNAPSTART=1``, or ``make deploy ENV=prod SNAPSTART=1``) it also turns on Lambda SnapStart
for the HTTP API's functions in the built template: see :func:`enable_snapstart`.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import py_compile
import secrets
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

INVALIDATION_MODE = py_compile.PycInvalidationMode.UNCHECKED_HASH
LAYER = "SharedLayer"
LAYER_ROOT_ON_LAMBDA = "/opt/python"
SNAPSTART_ALIAS = "live"
SOURCES_KEPT = frozenset({"crm_bridge", "anyio"})
"""Top-level names in the layer that keep their ``.py`` files (bytecode beside them, in ``__pycache__``)."""
REMOVED = (
    "jmespath",
    "jmespath-*.dist-info",
    "jmespath-*.data",
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.js",
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.css",
    "**/*.pyi",
    "*.dist-info/sboms",
)
"""Globs below the layer's ``python/`` directory."""


def compile_bytecode(
    directories: Iterable[Path], mode: py_compile.PycInvalidationMode = INVALIDATION_MODE, *, workers: int = 1
) -> None:
    """Compile every ``.py`` below ``directories`` into ``__pycache__`` (optimisation level 0: Lambda
    runs without -O). ``workers=0``: one process per CPU (only from a guarded ``__main__``)."""
    for directory in directories:
        if not compileall.compile_dir(directory, quiet=1, workers=workers, invalidation_mode=mode, force=True):
            raise SystemExit(f"bytecode: some files in {directory} do not compile")


def invalidation_mode_of(pyc: Path) -> py_compile.PycInvalidationMode:
    """How an existing ``.pyc`` is checked (PEP 552 flags in its header)."""
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    if not flags & 0b01:
        return py_compile.PycInvalidationMode.TIMESTAMP
    return (
        py_compile.PycInvalidationMode.CHECKED_HASH if flags & 0b10 else py_compile.PycInvalidationMode.UNCHECKED_HASH
    )


def bytecode_only(site: Path, top_level: Iterable[str], *, workers: int = 1) -> None:
    """Replace each ``.py`` of these top-level packages/modules by its ``.pyc`` (the sourceless layout
    Python imports from: ``name.pyc`` where ``name.py`` was). Tracebacks name the file as on Lambda."""
    for name in top_level:
        path = site / name
        sources = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        # Hash-based headers (ignored without a source) rather than the source's build-time mtime: the
        # same sources give the same bytes, so an unchanged layer is not published again at each deploy.
        if path.is_dir():
            ok = compileall.compile_dir(
                path,
                quiet=1,
                workers=workers,
                legacy=True,
                force=True,
                invalidation_mode=INVALIDATION_MODE,
                ddir=f"{LAYER_ROOT_ON_LAMBDA}/{name}",
            )
        else:
            ok = compileall.compile_file(
                path, quiet=1, legacy=True, force=True, invalidation_mode=INVALIDATION_MODE, ddir=LAYER_ROOT_ON_LAMBDA
            )
        if not ok:
            raise SystemExit(f"bytecode: some files of {name} do not compile")
        for source in sources:
            if source.with_suffix(".pyc").is_file():
                source.unlink()


def third_party(site: Path) -> list[str]:
    """Top-level packages and modules of the layer that are neither ours nor kept as source."""
    names = []
    for path in sorted(site.iterdir()):
        if path.name.endswith((".dist-info", ".data")) or path.name == "__pycache__":
            continue
        has_code = (path.is_dir() and any(path.rglob("*.py"))) or path.suffix == ".py"
        if has_code and path.name not in SOURCES_KEPT:
            names.append(path.name)
    return names


def finish_layer(site: Path, *, workers: int = 1) -> None:
    for pattern in REMOVED:
        for path in sorted(site.glob(pattern)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    compile_bytecode([site / name for name in sorted(SOURCES_KEPT) if (site / name).is_dir()], workers=workers)
    bytecode_only(site, third_party(site), workers=workers)


def finish(build: Path) -> None:
    site = build / LAYER / "python"
    if not site.is_dir():
        raise SystemExit(f"{build} holds no SAM build (no {LAYER}/python): run sam build first")
    for cache in sorted(build.rglob("__pycache__")):
        shutil.rmtree(cache)
    finish_layer(site, workers=0)
    compile_bytecode(sorted(path for path in build.iterdir() if path.is_dir() and path.name != LAYER), workers=0)


def enable_snapstart(template: Path, stamp: str) -> list[str]:
    """SnapStart for every function behind the HTTP API, in the built template; returns their names.

    SnapStart only applies to published versions, so each function gets ``AutoPublishAlias`` (the API
    then invokes the alias) and ``SnapStart: PublishedVersions``. This is a build switch rather than a
    template parameter on purpose: a SAM alias only moves to a new version when the version's hash
    changes, and that hash ignores the values of parameters (SAM issues #1640, #3820), so switching the
    CRM (a parameter) would silently leave the API on the old configuration. Here the hash includes
    ``stamp``, new at every build: each deploy publishes (and snapshots) the current code and
    configuration, and ``VersionDeletionPolicy: Delete`` drops the superseded versions, whose cached
    snapshots would otherwise keep being charged.
    """
    import yaml

    document = yaml.safe_load(template.read_text(encoding="utf-8"))
    enabled = []
    for name, resource in document["Resources"].items():
        events = (resource.get("Properties") or {}).get("Events") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and any(
            event.get("Type") == "HttpApi" for event in events.values()
        ):
            resource["Properties"] |= {
                "AutoPublishAlias": SNAPSTART_ALIAS,
                "AutoPublishCodeSha256": stamp,
                "VersionDeletionPolicy": "Delete",
                "SnapStart": {"ApplyOn": "PublishedVersions"},
            }
            enabled.append(name)
    template.write_text(yaml.safe_dump(document, sort_keys=False, width=120), encoding="utf-8")
    return enabled


def main(argv: list[str] | None = None) -> int:
    if sys.version_info[:2] != (3, 13):
        raise SystemExit("bytecode for Lambda's python3.13 must be compiled by Python 3.13")
    parser = argparse.ArgumentParser(prog="python -m infra.build_output", description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="the sam build directory (.aws-sam/build)")
    parser.add_argument("--snapstart", action="store_true", help="SnapStart for the HTTP API's functions")
    arguments = parser.parse_args(argv)
    finish(arguments.build)
    if arguments.snapstart:
        # SAM names the version after the first ten characters of this: new ones at every build.
        stamp = f"{secrets.token_hex(5)}-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
        enabled = enable_snapstart(arguments.build / "template.yaml", stamp)
        print(f"SnapStart (PublishedVersions, alias {SNAPSTART_ALIAS}, build {stamp}): {', '.join(enabled)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
