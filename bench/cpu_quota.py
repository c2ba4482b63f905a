"""A check of the cost's CPU-share model (``bench.cost``), where the machine allows it.

``python -m bench.cpu_quota``: cold starts of a few functions in fresh processes, each at a full
core and under a CFS quota of ``MB / 1769`` of one CPU (a cgroup v1 ``cpu`` group, as Lambda gives
a function CPU in proportion to its memory), interleaved; it prints each measured duration beside
the model's ``CPU time x 1769 / MB + the rest``, from the full-core runs. Needs a writable
``/sys/fs/cgroup/cpu`` (root, cgroup v1); elsewhere it says so and stops. Not part of ``make bench``:
it changes the machine's cgroups for its run (and removes the groups it made).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.artifact import build_twin
from bench.cold import CASES, ColdStarts, ProcessTimes
from bench.cost import FULL_VCPU_MB, cpu_scale
from bench.stack import LoopbackStack, StubCrm

CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
SIZES = (1024, 512, 256)


@contextlib.contextmanager
def cpu_shares(sizes: tuple[int, ...]) -> Iterator[dict[int, Path]]:
    """A cgroup per memory size, limited to that size's share of one CPU; removed afterwards."""
    groups: dict[int, Path] = {}
    try:
        for memory in sizes:
            group = CPU_CGROUP / f"crm-bridge-bench-{memory}"
            group.mkdir(exist_ok=True)
            groups[memory] = group
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(int(PERIOD_US * memory / FULL_VCPU_MB)))
        yield groups
    finally:
        for group in groups.values():
            group.rmdir()


def modelled_ms(full: list[ProcessTimes], memory_mb: int) -> float:
    """The model from the full-core runs: their CPU time stretched, the rest (waits) as it was."""
    cpu = statistics.median(times.cpu for times in full)
    return cpu * cpu_scale(memory_mb) + statistics.median(times.total for times in full) - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_quota", description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", default="redirect,applications,worker", help="cold-start labels")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args(argv)
    if not (CPU_CGROUP / "cpu.cfs_quota_us").is_file():
        print(f"no cgroup v1 cpu controller at {CPU_CGROUP}: nothing to check here", file=sys.stderr)
        return 1
    cases = [case for case in CASES if case.label in arguments.functions.split(",")]
    twin = build_twin()
    stack = LoopbackStack(StubCrm()).start()
    runs: dict[tuple[str, int | None], list[ProcessTimes]] = {}
    try:
        cold_starts = ColdStarts(twin, stack)
        with cpu_shares(SIZES) as groups:
            for round_number in range(arguments.rounds):
                order: list[int | None] = [None, *SIZES]
                for case in cases:
                    for memory in order if round_number % 2 == 0 else order[::-1]:
                        spec = cold_starts.spec(case, "function") | {"event": case.event(stack)}
                        times, _ = cold_starts.run(spec, groups.get(memory) if memory else None)
                        runs.setdefault((case.label, memory), []).append(times)
    finally:
        stack.stop()
    for case in cases:
        full = runs[(case.label, None)]
        print(f"{case.label}: a full core {statistics.median(times.total for times in full):.0f} ms")
        for memory in SIZES:
            measured = statistics.median(times.total for times in runs[(case.label, memory)])
            model = modelled_ms(full, memory)
            print(f"  {memory} MB share: {measured:.0f} ms measured, {model:.0f} ms modelled ({measured / model:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
