"""The bench's own measuring scripts, each run by this interpreter in isolation on a spec file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_script(script: Path, spec: dict[str, Any], spec_path: Path, *, what: str, timeout: float = 600) -> None:
    """Write ``spec`` to ``spec_path`` and run ``script`` on it (``-I -S -B``: no site packages, no
    bytecode written, nothing of the bench's environment); a failure raises with its stderr's tail."""
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    completed = subprocess.run(  # noqa: S603 - this interpreter, the bench's own script
        [sys.executable, "-I", "-S", "-B", str(script), str(spec_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{completed.stderr.decode(errors='replace')[-3000:]}")
