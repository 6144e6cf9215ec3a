"""Sweeps at scale: the metrics of every combination in chunks, then per-bar equity and trades for a bounded
selection (the spec's ``[results]``: the best N by a metric on each symbol, plus pinned combinations).

A chunk is a run of consecutive combinations over every symbol. Its metrics come from the plugin's grid
kernel when it has one (the built-in ``sma_cross``: ``sim.run_grid``) or from its orders (the plugin's sweep
fast path or one call per combination, each held to the output contract and, for user plugins, the
look-ahead guard) run through ``sim.run_many`` in batches of bounded memory. A finished chunk is staged as a
Parquet file under ``tmp/sweep-<key>/`` (the key covers the spec, the code version and the user plugins'
code hashes), so a sweep killed half way recomputes only its missing chunks when it is executed again; the
published results are the same whatever was reused. The selection is then run again alone, with per-bar
outputs, and its metrics must equal the chunk's (a determinism check).

Memory is flat in the number of combinations: a chunk's orders are at most :data:`BATCH_BYTES` at a time,
and only metrics (a row per combination and symbol) grow with the sweep.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._tables import METRIC_COLUMNS
from .errors import SimError
from .spec import Keep

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake

    from .spec import ExperimentSpec

CHUNK_BAR_STEPS = 200_000_000
"""A staged chunk holds about this many simulated bars (combinations x symbols x bars): seconds of work."""
BATCH_BYTES = 64 << 20
"""The largest block of orders held at once (combinations x bars float64)."""
Progress = Callable[[int, int, str], None]
INT_METRICS = ("n_trades", "open_trades")


def chunk_size(n_combos: int, bars: dict[str, Any]) -> int:
    """Combinations per staged chunk: a function of the inputs only, so a resumed sweep finds its chunks."""
    steps = max(1, sum(len(b) for b in bars.values()))
    return max(1, min(n_combos, CHUNK_BAR_STEPS // steps))


def metric_row(c: int, symbol: str, m: dict[str, float]) -> dict[str, Any]:
    """One row of the metrics table (before the swept parameters), as every signal backtest writes it."""
    row: dict[str, Any] = {"combo": c, "symbol": symbol}
    row.update({k: float(m[k]) for k in METRIC_COLUMNS})
    row["n_trades"] = int(m["n_trades"])  # closed trades (backtesting.py's "# Trades")
    row["open_trades"] = int(m["open_trades"])  # a position still open at the last bar
    return row


def metrics_table(rows: pa.Table, spec: ExperimentSpec) -> pa.Table:
    """``rows`` (combo, symbol and the metrics, combination then symbol order) with a column per swept
    parameter, its values as written in the spec."""
    import pyarrow as pa

    swept = spec.swept
    if not swept:
        return rows
    values: dict[str, list[Any]] = {k: [] for k in swept}
    combos = rows.column("combo").to_numpy()
    at = 0
    for c, combo in enumerate(spec.iter_combos()):
        while at < len(combos) and combos[at] == c:
            for k in swept:
                values[k].append(combo[k])
            at += 1
    for k in swept:
        rows = rows.append_column(k, pa.array(values[k]))
    return rows


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Metric rows as a table of fixed column types (so chunks concatenate and all-mode tables match)."""
    import pyarrow as pa

    cols: dict[str, pa.Array] = {
        "combo": pa.array([r["combo"] for r in rows], pa.int64()),
        "symbol": pa.array([r["symbol"] for r in rows], pa.string()),
    }
    for k in METRIC_COLUMNS:
        cols[k] = pa.array([r[k] for r in rows], pa.int64() if k in INT_METRICS else pa.float64())
    return pa.table(cols)


class Stage:
    """The staged chunks of one sweep under ``tmp/sweep-<key>/`` (written by rename: a chunk file is whole
    or absent), locked while a run computes them so gc leaves them alone."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "tmp" / f"sweep-{key}"

    def path(self, chunk: int) -> Path:
        return self.dir / f"chunk-{chunk:06d}.parquet"

    def read(self, chunk: int, rows: int) -> pa.Table | None:
        import pyarrow.parquet as pq

        path = self.path(chunk)
        if not path.is_file() or path.is_symlink():
            return None
        try:
            table = pq.read_table(path)
        except Exception:  # noqa: BLE001 - a damaged chunk is recomputed
            return None
        return table if table.num_rows == rows else None

    def write(self, chunk: int, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        path = self.path(chunk)
        part = path.with_name(f".{path.name}.new")
        pq.write_table(table, part)
        os.replace(part, path)

    @contextmanager
    def held(self) -> Iterator[None]:
        import fcntl

        from artifact_lake.artifact_store.objects import open_dir

        os.close(open_dir(self.dir.parent.parent, Path("tmp") / self.dir.name, create=True))
        fd = os.open(self.dir / "lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def remove(self) -> None:
        from artifact_lake.artifact_store.stagedirs import remove_dir

        remove_dir(self.dir.parent.parent, self.dir)


def _stage_key(spec: ExperimentSpec, code: dict[str, Any], size: int) -> str:
    import blake3

    from .tracker import code_version

    doc = {
        "spec": spec.id,
        "code": code_version(),
        "plugins": sorted((k, c.hash) for k, c in code.items()),
        "chunk": size,
    }
    return blake3.blake3(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


class ChunkedSweep:
    """The metrics of every combination of a signal plugin's sweep, chunk by chunk (see the module doc)."""

    def __init__(self, combos: Any, spec: ExperimentSpec, bars: dict[str, Any], timings: dict[str, float]) -> None:
        self.c = combos  # runners._SignalCombos: plugin, execution, guard, code
        self.spec = spec
        self.bars = bars
        self.timings = timings
        self.grid = combos.plugin.extra.get("grid") if combos.plugin.builtin else None

    def _orders(self, symbol: str, b: Any, first: int, chunk: list[dict[str, Any]]) -> Iterator[np.ndarray]:
        """Each combination's checked (and, for user plugins, guarded) orders on one symbol."""
        from artifact_lake.sim.plugins import check_output

        c = self.c
        stream = iter(c.plugin.sweep(b, chunk)) if c.plugin.sweep is not None and len(chunk) > 1 else None
        for j, values in enumerate(chunk):
            t0 = time.perf_counter()
            raw = next(stream) if stream is not None else c.plugin(b, values)
            out = check_output(c.plugin, raw, len(b), values)
            c.signal_seconds += time.perf_counter() - t0
            if c.guarded:
                c.guard_one(symbol, b, values, out, first_of_symbol=first + j == 0)
            yield out

    def _chunk(self, first: int, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Metric rows of combinations ``first`` .. ``first + len(chunk)`` on every symbol."""
        from artifact_lake import sim

        per_symbol: dict[str, list[dict[str, float]]] = {}
        for symbol, b in self.bars.items():
            if self.grid is not None:
                t0 = time.perf_counter()
                try:
                    per_symbol[symbol] = self.grid(b, chunk, self.c.execution)
                except (ValueError, TypeError) as exc:
                    raise SimError(f"combinations {first}..{first + len(chunk) - 1} ({symbol}): {exc}") from exc
                self.timings["simulate"] = self.timings.get("simulate", 0.0) + time.perf_counter() - t0
                continue
            rows = max(1, min(len(chunk), BATCH_BYTES // max(8 * len(b), 1)))
            found: list[dict[str, float]] = []
            orders = self._orders(symbol, b, first, chunk)
            for a in range(0, len(chunk), rows):
                k = min(rows, len(chunk) - a)
                block = np.empty((k, len(b)))
                for j in range(k):
                    try:
                        block[j] = next(orders)
                    except (ValueError, TypeError) as exc:
                        raise SimError(f"combination {first + a + j} ({symbol}): {exc}") from exc
                t0 = time.perf_counter()
                try:
                    found += sim.run_many(b, block, self.c.execution)
                except ValueError as exc:
                    head, _, why = str(exc).partition(": ")  # "row j: ..." of run_many
                    raise SimError(f"combination {first + a + int(head.split()[1])} ({symbol}): {why}") from exc
                self.timings["simulate"] = self.timings.get("simulate", 0.0) + time.perf_counter() - t0
            per_symbol[symbol] = found
        return [metric_row(first + j, symbol, per_symbol[symbol][j]) for j in range(len(chunk)) for symbol in self.bars]

    def metrics(
        self, lake: Lake, progress: Progress | None, *, resume: bool
    ) -> tuple[pa.Table, dict[str, Any], Stage | None]:
        """Metric rows of every combination and symbol (combination, then symbol order); how many chunks there
        were and how many were reused from an interrupted run; where they are staged (with ``resume``, when
        the sweep has more than one chunk)."""
        import pyarrow as pa

        n = self.spec.n_combos
        size = chunk_size(n, self.bars)
        n_chunks = math.ceil(n / size)
        stage = Stage(lake.root, _stage_key(self.spec, self.c.code, size)) if resume and n_chunks > 1 else None
        tables: list[pa.Table] = []
        reused = 0
        combos = self.spec.iter_combos()
        staging = 0.0
        with stage.held() if stage is not None else _nothing():
            for k in range(n_chunks):
                chunk = [self.c.plugin.bind(v) for v in itertools.islice(combos, size)]
                t0 = time.perf_counter()
                table = stage.read(k, len(chunk) * len(self.bars)) if stage is not None else None
                staging += time.perf_counter() - t0
                if table is not None:
                    reused += 1
                else:
                    table = rows_table(self._chunk(k * size, chunk))
                    if stage is not None:
                        t0 = time.perf_counter()
                        stage.write(k, table)
                        staging += time.perf_counter() - t0
                tables.append(table)
                if progress is not None:
                    done = k * size + len(chunk)
                    progress(done, n, f"combo {done}/{n} (chunk {k + 1}/{n_chunks})")
        self.timings["stage"] = staging
        info: dict[str, Any] = {"chunks": n_chunks, "reused": reused, "chunk_combinations": size}
        return pa.concat_tables(tables), info, stage


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def select(metrics: pa.Table, keep: Keep, spec: ExperimentSpec) -> list[tuple[int, str]]:
    """The (combination, symbol) pairs that keep per-bar equity and trades, in combination then symbol order:
    on each symbol the ``keep.best`` best by ``keep.by`` (NaN last, ties to the lower combination), and every
    pinned combination."""
    combo = metrics.column("combo").to_numpy()
    symbol = np.asarray(metrics.column("symbol").to_pylist(), dtype=object)
    value = metrics.column(keep.by).to_numpy(zero_copy_only=False).astype(np.float64)
    chosen: set[tuple[int, str]] = set()
    for s in sorted(set(symbol)):
        idx = np.flatnonzero(symbol == s)
        v = value[idx]
        order = np.lexsort((combo[idx], v if keep.ascending else -v, np.isnan(v)))
        chosen.update((int(combo[idx[i]]), str(s)) for i in order[: keep.best])
    if keep.pin:
        pinned = {c for c, values in enumerate(spec.iter_combos()) if keep.pinned(values)}
        chosen.update((int(c), str(s)) for c, s in zip(combo, symbol, strict=True) if int(c) in pinned)
    return sorted(chosen)


def selected_runs(
    combos: Any, spec: ExperimentSpec, pairs: list[tuple[int, str]]
) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(combination index, its parameters, symbol) of every selected pair, walking the sweep once."""
    by_combo: dict[int, list[str]] = {}
    for c, s in pairs:
        by_combo.setdefault(c, []).append(s)
    for c, values in enumerate(spec.iter_combos()):
        for s in by_combo.get(c, []):
            yield c, values, s


RunOne = Callable[[dict[str, Any], str, Any], Any]
