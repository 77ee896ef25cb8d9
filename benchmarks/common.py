"""Timing and memory helpers shared by the benchmark scripts.

All comparisons are made in one process, alternating the variants round by round (the order flips every round so
neither variant always runs right after the other), after warm-up runs that take first-touch allocation out of the
timings. Times are medians; ratios are medians of per-round ratios (:func:`paired_ratio`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

# the app's one Markdown table printer; the benchmark scripts import it from here
from ordinalclip.app.pagekit import markdown_table

T = TypeVar("T")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def setup_threads(num_threads: int = 2) -> None:
    """Pin intra-op threads (the reference timings used 2) and one inter-op thread."""
    torch.set_num_threads(num_threads)
    # can only be set before the first parallel op: a second call in one process keeps the first setting
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def device_sync(device: str | torch.device) -> Callable[[], None] | None:
    """What to call before reading the clock on ``device``: CUDA kernels run asynchronously, CPU ops do not."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def parse_common(ap: argparse.ArgumentParser, argv: list[str] | None, tiny_help: str) -> argparse.Namespace:
    """Add the options every benchmark script takes (--threads, --tiny, --json), parse ``argv``, pin the threads."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help=f"{tiny_help} (smoke test)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    setup_threads(args.threads)
    return args


def time_once(fn: Callable[[], object], sync: Callable[[], object] | None = None) -> float:
    """Wall-clock seconds of one call; ``sync`` (see :func:`device_sync`) runs before both clock reads."""
    if sync is not None:
        sync()  # work queued before the call must not be billed to it
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def alternate(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Time each variant ``repeats`` times, interleaved round by round, after ``warmup`` untimed calls each.

    ``sync`` is passed to :func:`time_once` (needed on CUDA; None on CPU).

    Returns:
        {name: [seconds per timed call]} in call order.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(time_once(variants[name], sync))
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][r] / times[den][r]`` (two variants timed in the same round of
    :func:`alternate`).

    Pairing cancels slow spells of the machine that last a round or more (they hit both calls of the round), so it
    is more robust than the ratio of the two medians when two of a few samples of one variant fall into such a spell.
    """
    if len(times[num]) != len(times[den]) or not times[num]:
        raise ValueError(f"paired_ratio: {num!r} and {den!r} need the same, non-zero number of rounds")
    return median([a / b for a, b in zip(times[num], times[den])])


def spread(xs: list[float]) -> str:
    """'median (min-max)' in seconds, for tables."""
    return f"{median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def peak_memory_bytes(fn: Callable[[], T]) -> tuple[int, T]:
    """(Peak bytes of CPU tensors alive during ``fn()`` above what was alive when it started, ``fn()``'s result).

    Read from torch's profiler: every CPU allocation event carries the allocator's running total of live bytes, so
    the maximum of that total minus the total before the first allocation is the peak that ``fn`` added (weights and
    inputs that already existed are excluded; allocator caching and Python objects are not counted). The profiler
    slows ``fn`` down, so never time a call measured here.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    totals: list[tuple[int, int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            f = event.extra_fields
            totals.append((event.start_time_ns, f.alloc_size, f.total_allocated))
    if not totals:
        raise RuntimeError(
            "peak_memory_bytes: the profiler recorded no CPU allocation inside the measured call"
        )
    totals.sort()
    _, first_size, first_total = totals[0]
    before = first_total - first_size
    return max(total for _, _, total in totals) - before, result


def check_finite(figures: dict[str, float], where: str) -> None:
    """Fail loudly if a figure is NaN or infinite (a broken benchmark must not print a plausible table)."""
    bad = {k: v for k, v in figures.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise RuntimeError(f"{where}: non-finite figures {bad}")


def write_json(path: str | os.PathLike, figures: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def load_note() -> str:
    """The 1-minute load average: other jobs on a 2-core machine slow 2-thread runs a lot, so print it with timings."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def machine() -> str:
    """One line naming the CPU, core count and torch build, for the results file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def finish(
    headers: list[str], rows: list[list[str]], figures: dict[str, float], json_path: str | None
) -> dict:
    """Print a script's table and the load after it, write its figures as JSON if asked, return them."""
    print(markdown_table(headers, rows))
    print(f"after: {load_note()}")
    if json_path:
        write_json(json_path, figures)
    return figures
