"""What ``sam build`` produced, measured as Lambda receives it, and a twin of it this machine can run.

Sizes come from the real build output (arm64, what is deployed): each function's directory and the
layer, unzipped and zipped the way ``sam deploy`` zips them.

Lambda runs arm64 and this machine is x86_64, so the layer's compiled extensions cannot be loaded
here. The twin is the same artifact with only those swapped: every file of ``.aws-sam/build`` copied
as is (code, pinned dependencies, and whatever bytecode the build ships), each distribution that is
not pure Python replaced by the same version's wheel for this machine, and every file given the
1980-01-01 timestamp that SAM's zip gives it (so bytecode that depends on timestamps is as stale
here as on Lambda). boto3 and botocore, which Lambda's runtime provides and the layer must not, are
installed apart, in ``runtime/``, with the bytecode pip compiles for them (as the runtime has it).
The layout mirrors Lambda's: ``task/<function>`` is ``/var/task``, ``opt/`` is ``/opt``.
"""

from __future__ import annotations

import email
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).parents[1]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = "SharedLayer"
BENCH_DIR = ROOT / ".aws-sam" / "bench"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""What SAM's zip records for every file (it sets no date); Lambda's code directory then has it."""

MIB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MIB
"""Function code and all its layers, unzipped (AWS writes "250 MB": 262,144,000 bytes)."""
LAMBDA_ZIPPED_DIRECT_LIMIT = 50 * MIB
"""A zip uploaded directly to Lambda (through S3, as sam deploy does, the unzipped limit applies)."""
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
"""What Lambda's Python runtime ships (boto3 and its dependencies): a layer must not bundle them."""


@dataclass(frozen=True)
class ArtifactSize:
    name: str
    files: int
    unzipped: int
    zipped: int


def _files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def zipped_size(directory: Path) -> int:
    """The size of the zip ``sam deploy`` makes of ``directory``: deflated, no dates (1980)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _files(directory):
            info = zipfile.ZipInfo(str(path.relative_to(directory)))
            info.create_system = 3
            info.external_attr = 0o100755 << 16
            archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.tell()


SNIPPET = ROOT / "site" / "crm-bridge.js"
SNIPPET_TARGET_GZIPPED = 10 * 1024
"""The website snippet travels with every page of the site (compressed, as sites serve scripts)."""


@dataclass(frozen=True)
class SnippetSize:
    raw: int
    gzipped: int


def snippet_size() -> SnippetSize:
    """The snippet as a site serves it: its bytes, and gzipped (level 9, no timestamp)."""
    data = SNIPPET.read_bytes()
    return SnippetSize(len(data), len(gzip.compress(data, 9, mtime=0)))


def artifact_sizes(build: Path = BUILD) -> list[ArtifactSize]:
    """Every function and layer directory of the build, unzipped and zipped."""
    sizes = []
    for directory in sorted(path for path in build.iterdir() if path.is_dir()):
        files = _files(directory)
        sizes.append(
            ArtifactSize(directory.name, len(files), sum(p.stat().st_size for p in files), zipped_size(directory))
        )
    return sizes


def bundled_runtime_distributions(build: Path = BUILD) -> list[str]:
    """Distributions in the layer that Lambda's runtime already provides (should be none)."""
    site = build / LAYER / "python"
    names = {_canonical(path.name.split("-")[0]) for path in site.glob("*.dist-info")}
    return sorted(names & {_canonical(name) for name in RUNTIME_DISTRIBUTIONS})


def bytecode_files(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*.pyc"))


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


# --- the twin ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Twin:
    root: Path

    @property
    def opt(self) -> Path:
        return self.root / "opt"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    def task(self, function: str) -> Path:
        return self.root / "task" / function

    def sys_path(self, function: str) -> list[str]:
        """Lambda's python3.13 search path: code, layer, runtime (boto3), as the runtime sets it."""
        return [
            str(self.task(function)),
            str(self.opt / "python" / "lib" / "python3.13" / "site-packages"),
            str(self.opt / "python"),
            str(self.runtime),
        ]


def _fingerprint(build: Path) -> str:
    digest = hashlib.sha256(f"{sys.version}|boto3=={metadata.version('boto3')}".encode())
    for path in _files(build):
        if path.name != "template.yaml":
            status = path.stat()
            digest.update(f"{path.relative_to(build)}|{status.st_size}|{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_twin(build: Path = BUILD, base: Path = BENCH_DIR, *, log: bool = True) -> Twin:
    """The x86_64 twin of ``build`` (made once per build: reused while the build is unchanged)."""
    if not (build / LAYER / "python").is_dir():
        raise FileNotFoundError(f"no SAM build in {build}: run `make build` first")
    twin = Twin(base / ("twin" if build == BUILD else f"twin-{hashlib.sha256(str(build).encode()).hexdigest()[:8]}"))
    stamp = twin.root / ".fingerprint"
    fingerprint = _fingerprint(build)
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return twin
    if log:
        print(f"bench: building the x86_64 twin of {build} in {twin.root}")
    if twin.root.exists():
        _writable(twin.root)
        shutil.rmtree(twin.root)
    for directory in sorted(path for path in build.iterdir() if path.is_dir() and path.name != LAYER):
        shutil.copytree(directory, twin.task(directory.name))
    shutil.copytree(build / LAYER, twin.opt)
    wheels = base / "wheels"
    for dist_info in sorted((twin.opt / "python").glob("*.dist-info")):
        if _is_platform_specific(dist_info):
            _swap_for_this_machine(dist_info, wheels)
    for tree in (twin.root / "task", twin.opt):
        _stamp_zip_epoch(tree)
    _install_runtime(twin.runtime, wheels)
    _read_only(twin.root)
    stamp.write_text(fingerprint)
    return twin


def _is_platform_specific(dist_info: Path) -> bool:
    wheel = dist_info / "WHEEL"
    return wheel.is_file() and email.message_from_string(wheel.read_text())["Root-Is-Purelib"] == "false"


def _pip(*arguments: str) -> None:
    subprocess.run(  # noqa: S603 - pip of this interpreter, with fixed arguments
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *arguments], check=True
    )


def _swap_for_this_machine(dist_info: Path, wheels: Path) -> None:
    """Replace an installed distribution by the same version's wheel for this interpreter and machine,
    in the form the build left it in (sources, or bytecode only)."""
    site = dist_info.parent
    name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
    _pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(wheels), f"{name}=={version}")
    candidates = sorted(wheels.glob(f"{name}-{version}-*.whl"))
    wheel = next((path for path in candidates if "x86_64" in path.name or "aarch64" not in path.name), None)
    if wheel is None:
        raise FileNotFoundError(f"no wheel of {name} {version} for this machine in {wheels}")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        top_level = sorted(
            {Path(member).parts[0] for member in members if not Path(member).parts[0].endswith(".dist-info")}
        )
        bytecode_only = [top for top in top_level if (site / top).exists() and not _has_sources(site / top)]
        for line in (dist_info / "RECORD").read_text().splitlines():
            relative = line.split(",", 1)[0]
            if relative and (site / relative).is_file():
                (site / relative).unlink()
        archive.extractall(site)
    if bytecode_only:
        from infra.build_output import bytecode_only as make_bytecode_only

        make_bytecode_only(site, bytecode_only)


def _has_sources(path: Path) -> bool:
    return path.suffix == ".py" if path.is_file() else any(path.rglob("*.py"))


def _install_runtime(target: Path, wheels: Path) -> None:
    """boto3 and botocore at the version the tests use, as the Lambda runtime provides them."""
    versions = [f"{name}=={metadata.version(name)}" for name in ("boto3", "botocore")]
    _pip("install", "--target", str(target), "--find-links", str(wheels), *versions)


def _stamp_zip_epoch(tree: Path) -> None:
    import time

    epoch = time.mktime((*ZIP_EPOCH, 0, 0, -1))
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def _read_only(tree: Path) -> None:
    for path in tree.rglob("*"):
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
