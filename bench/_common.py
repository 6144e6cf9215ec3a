"""Shared helpers for the bench scripts: timing and the printed table."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime


def best_of(fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None) -> float:
    """Smallest wall time of ``repeat`` runs of ``fn`` (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_of_pair(
    a: Callable[[], object],
    b: Callable[[], object],
    repeat: int = 9,
    *,
    setup_a: Callable[[], object] | None = None,
    setup_b: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Smallest wall times of ``a`` and ``b``, run alternately ``repeat`` times each, so both see the same
    moments of a shared machine (a ratio of two separate best-of runs swings with the machine's load).
    ``setup_a``/``setup_b`` run untimed before each call."""
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times, setup in ((a, ta, setup_a), (b, tb, setup_b)):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"


def print_table(title: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    """Markdown table: case, ours, baseline, ratio, target; ready to paste into docs/benchmarks.md."""
    print(f"\n### {title}\n")
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine()}\n")
    print("| case | ours | baseline | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def print_rows(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A Markdown table of any columns (growth tables: one row per size)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
