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

A chunk's metrics are a pure function (:func:`chunk_metrics`) of the strategy's name and code, the bars, the
execution model, its first combination and its bound parameters: the local path runs it in this process, the
Ray executor (:mod:`.ray_executor`) as tasks on a cluster. Either way the driver stages the chunks, selects,
reruns the kept combinations, checks and publishes, so the results are the same whatever the executor.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import plugins
from ._tables import METRIC_COLUMNS
from ._version import code_version
from .errors import PluginError, SimError, SpecError
from .spec import Keep

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake
    from artifact_lake.sim.plugins import Plugin

    from .ray_executor import RayExecutor
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


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk's computation hands back, in this process or from a Ray worker."""

    rows: pa.Table
    """Metric rows of the chunk's combinations on every symbol (combination, then symbol order)."""
    guard: dict[str, dict[str, int]]
    """The look-ahead guard's counts per plugin (``GuardLog.checked``); empty for built-ins."""
    seconds: dict[str, float]
    """``signals``, ``simulate`` and ``lookahead_guard`` wall times, for the run record."""


def chunk_metrics(
    bars: dict[str, Any],
    plugin: str,
    code: Mapping[str, str],
    execution: Any,
    first: int,
    chunk: list[dict[str, Any]],
    guarded: bool,
    version: str,
) -> ChunkResult:
    """The metrics of combinations ``first`` .. ``first + len(chunk) - 1`` (``chunk``: their bound parameters)
    of strategy ``plugin`` on every symbol of ``bars``: what a Ray worker runs. A pure function of its
    arguments and the registered code: plugins load as the driver's do (entry points, ``LAKE_PLUGINS``), and
    the work is refused when this process runs other code than the driver recorded (``code``: the user
    plugins' code hashes; ``version``: the lake's code version)."""
    strategy, indicators = checked_plugins(plugin, code, version)
    return compute_chunk(strategy, indicators, _writable(bars), execution, first, chunk, guarded)


def checked_plugins(name: str, code: Mapping[str, str], version: str) -> tuple[Plugin, list[Plugin]]:
    """Strategy ``name`` and the user indicators it calls, as registered in this process, refused (one line
    naming the plugin and both hashes) when their code is not the code the driver recorded."""
    from .strategies import signal_plugin

    check_version(version)
    try:
        strategy = signal_plugin(name)
    except SpecError as exc:
        raise PluginError(f"a Ray worker cannot resolve strategy {name!r} ({_loads()}): {exc}") from exc
    indicators = [i for i in plugins.used_indicators(strategy) if not i.builtin]
    check_hashes({p.name: plugins.closure(p).hash for p in [strategy, *indicators] if not p.builtin}, code)
    return strategy, indicators


def check_version(version: str) -> None:
    """Refuse to work when this process runs another artifact-lake code version than the driver recorded."""
    mine = code_version()
    if mine != version:
        raise PluginError(
            f"this Ray worker runs artifact-lake code {mine}, the driver {version}: a cluster running other code"
            " than was recorded would break reproducibility (install the same version on every node)"
        )


def check_hashes(here: Mapping[str, str], code: Mapping[str, str]) -> None:
    """Refuse to work when a user plugin's code hash here differs from the driver's (one line naming both)."""
    for plugin in sorted(set(here) | set(code)):
        if here.get(plugin) != code.get(plugin):
            raise PluginError(
                f"plugin {plugin!r} differs on a Ray worker: code {here.get(plugin, 'none (built-in or not used)')}"
                f" there, {code.get(plugin, 'none (built-in or not used)')} on the driver; a cluster running other"
                f" code than was recorded would break reproducibility (the worker loads {_loads()})"
            )


def _loads() -> str:
    return f"{plugins.ENV}={os.environ.get(plugins.ENV, '')!r}"


def _writable(bars: dict[str, Any]) -> dict[str, Any]:
    """``bars`` with writable arrays (Ray hands a worker read-only views of its object store), so a worker
    runs the plugin on the very kind of arrays the driver would."""
    out = {}
    for symbol, b in bars.items():
        fields = [f.name for f in dataclasses.fields(b)]
        if all(getattr(b, f).flags.writeable for f in fields):
            out[symbol] = b
        else:
            out[symbol] = dataclasses.replace(b, **{f: np.array(getattr(b, f)) for f in fields})
    return out


def compute_chunk(
    strategy: Plugin,
    indicators: list[Plugin],
    bars: dict[str, Any],
    execution: Any,
    first: int,
    chunk: list[dict[str, Any]],
    guarded: bool,
) -> ChunkResult:
    """Metric rows of combinations ``first`` .. ``first + len(chunk) - 1`` on every symbol: the grid kernel of
    a built-in that has one, else each combination's checked (and, when ``guarded``, guarded) orders through
    ``sim.run_many`` in blocks of at most :data:`BATCH_BYTES`."""
    from artifact_lake import sim

    log = plugins.GuardLog()
    seconds = {"signals": 0.0, "simulate": 0.0}
    grid = strategy.extra.get("grid") if strategy.builtin else None
    per_symbol: dict[str, list[dict[str, float]]] = {}
    for symbol, b in bars.items():
        if grid is not None:
            t0 = time.perf_counter()
            try:
                per_symbol[symbol] = grid(b, chunk, execution)
            except (ValueError, TypeError) as exc:
                raise SimError(f"combinations {first}..{first + len(chunk) - 1} ({symbol}): {exc}") from exc
            seconds["simulate"] += time.perf_counter() - t0
            continue
        rows = max(1, min(len(chunk), BATCH_BYTES // max(8 * len(b), 1)))
        found: list[dict[str, float]] = []
        orders = _orders(strategy, indicators, log if guarded else None, seconds, symbol, b, first, chunk)
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
                found += sim.run_many(b, block, execution)
            except ValueError as exc:
                head, _, why = str(exc).partition(": ")  # "row j: ..." of run_many
                raise SimError(f"combination {first + a + int(head.split()[1])} ({symbol}): {why}") from exc
            seconds["simulate"] += time.perf_counter() - t0
        per_symbol[symbol] = found
    seconds["lookahead_guard"] = log.seconds
    table = rows_table(
        [metric_row(first + j, symbol, per_symbol[symbol][j]) for j in range(len(chunk)) for symbol in bars]
    )
    return ChunkResult(table, log.checked, seconds)


def _orders(
    strategy: Plugin,
    indicators: list[Plugin],
    log: plugins.GuardLog | None,
    seconds: dict[str, float],
    symbol: str,
    b: Any,
    first: int,
    chunk: list[dict[str, Any]],
) -> Iterator[np.ndarray]:
    """Each combination's checked (and, with a ``log``, guarded) orders on one symbol."""
    from artifact_lake.sim.plugins import check_output

    stream = iter(strategy.sweep(b, chunk)) if strategy.sweep is not None and len(chunk) > 1 else None
    for j, values in enumerate(chunk):
        t0 = time.perf_counter()
        raw = next(stream) if stream is not None else strategy(b, values)
        out = check_output(strategy, raw, len(b), values)
        seconds["signals"] += time.perf_counter() - t0
        if log is not None:
            guard_orders(strategy, indicators, log, symbol, b, values, out, first_of_symbol=first + j == 0)
        yield out


def guard_orders(
    strategy: Plugin,
    indicators: list[Plugin],
    log: plugins.GuardLog,
    symbol: str,
    b: Any,
    values: dict[str, Any],
    out: np.ndarray,
    *,
    first_of_symbol: bool,
) -> None:
    """The look-ahead guard on one combination's orders (and, once per symbol, on the user indicators)."""
    from artifact_lake.sim.plugins import check_output

    t0 = time.perf_counter()
    report = plugins.guard(strategy, b, values, out, f"; {symbol}")
    log.add(strategy.name, len(report["cuts"]))
    if first_of_symbol:
        for ind in indicators:
            full = check_output(ind, ind(b, {}), len(b), {})
            log.add(ind.name, len(plugins.guard(ind, b, {}, full, f"; {symbol}")["cuts"]))
    log.seconds += time.perf_counter() - t0


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

    doc = {
        "spec": spec.id,
        "code": code_version(),
        "plugins": sorted((k, c.hash) for k, c in code.items()),
        "chunk": size,
    }
    return blake3.blake3(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


class ChunkedSweep:
    """The metrics of every combination of a signal plugin's sweep, chunk by chunk (see the module doc), in
    this process or, with a :class:`RayExecutor`, the missing chunks as Ray tasks."""

    def __init__(
        self,
        combos: Any,
        spec: ExperimentSpec,
        bars: dict[str, Any],
        timings: dict[str, float],
        executor: RayExecutor | None = None,
    ) -> None:
        self.c = combos  # runners._SignalCombos: plugin, indicators, execution, guard, code
        self.spec = spec
        self.bars = bars
        self.timings = timings
        self.executor = executor

    def _merge(self, result: ChunkResult) -> None:
        """A chunk's guard counts and times into the run's (summed over workers with Ray)."""
        self.c.log.merge(result.guard, result.seconds.get("lookahead_guard", 0.0))
        self.c.signal_seconds += result.seconds.get("signals", 0.0)
        self.timings["simulate"] = self.timings.get("simulate", 0.0) + result.seconds.get("simulate", 0.0)

    def metrics(
        self, lake: Lake, progress: Progress | None, *, resume: bool
    ) -> tuple[pa.Table, dict[str, Any], Stage | None]:
        """Metric rows of every combination and symbol (combination, then symbol order); how many chunks there
        were, how many were reused from an interrupted run and which executor ran the others; where they are
        staged (with ``resume``, when the sweep has more than one chunk)."""
        import pyarrow as pa

        n = self.spec.n_combos
        size = chunk_size(n, self.bars)
        n_chunks = math.ceil(n / size)
        stage = Stage(lake.root, _stage_key(self.spec, self.c.code, size)) if resume and n_chunks > 1 else None
        tables: list[pa.Table | None] = [None] * n_chunks
        count = {"reused": 0, "done": 0, "finished": 0}
        staging = {"seconds": 0.0}

        def finish(k: int, table: pa.Table, combos: int) -> None:
            tables[k] = table
            count["done"] += combos
            count["finished"] += 1
            if progress is not None:
                where = (
                    f"chunk {k + 1}/{n_chunks}" if self.executor is None else f"{count['finished']}/{n_chunks} chunks"
                )
                progress(count["done"], n, f"combo {count['done']}/{n} ({where})")

        def missing() -> Iterator[tuple[int, list[dict[str, Any]]]]:
            """The chunks not staged yet (a staged one is taken as it is)."""
            combos = self.spec.iter_combos()
            for k in range(n_chunks):
                chunk = [self.c.plugin.bind(v) for v in itertools.islice(combos, size)]
                t0 = time.perf_counter()
                table = stage.read(k, len(chunk) * len(self.bars)) if stage is not None else None
                staging["seconds"] += time.perf_counter() - t0
                if table is None:
                    yield k, chunk
                else:
                    count["reused"] += 1
                    finish(k, table, len(chunk))

        def computed(k: int, result: ChunkResult, combos: int) -> None:
            self._merge(result)
            if stage is not None:
                t0 = time.perf_counter()
                stage.write(k, result.rows)
                staging["seconds"] += time.perf_counter() - t0
            finish(k, result.rows, combos)

        with stage.held() if stage is not None else nullcontext():
            if self.executor is None:
                c = self.c
                for k, chunk in missing():
                    computed(
                        k,
                        compute_chunk(c.plugin, c.indicators, self.bars, c.execution, k * size, chunk, c.guarded),
                        len(chunk),
                    )
                executor: dict[str, Any] = {"name": "local"}
            else:
                executor = self._remote(missing(), size, computed)
        self.timings["stage"] = staging["seconds"]
        info: dict[str, Any] = {
            "chunks": n_chunks,
            "reused": count["reused"],
            "chunk_combinations": size,
            "executor": executor,
        }
        return pa.concat_tables(tables), info, stage

    def _remote(
        self,
        todo: Iterator[tuple[int, list[dict[str, Any]]]],
        size: int,
        computed: Callable[[int, ChunkResult, int], None],
    ) -> dict[str, Any]:
        """The missing chunks as tasks of the Ray executor, each staged as it arrives (any order)."""
        from .ray_executor import worker_env

        assert self.executor is not None
        c = self.c
        hashes = {name: closure.hash for name, closure in c.code.items()}
        version = code_version()
        sizes: dict[int, int] = {}

        def jobs() -> Iterator[tuple[int, tuple[Any, ...]]]:
            for k, chunk in todo:
                sizes[k] = len(chunk)
                yield k, (c.plugin.name, hashes, c.execution, k * size, chunk, c.guarded, version)

        t0 = time.perf_counter()
        for k, result in self.executor.map_unordered(chunk_metrics, self.bars, jobs(), worker_env()):
            computed(k, result, sizes.pop(k))
        if self.executor.connected:
            self.timings["ray_connect"] = self.executor.connect_seconds
            self.timings["ray_chunks"] = time.perf_counter() - t0 - self.executor.connect_seconds
        return self.executor.record()


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


def selected_runs(spec: ExperimentSpec, pairs: list[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(combination index, its parameters, symbol) of every selected pair, walking the sweep once."""
    by_combo: dict[int, list[str]] = {}
    for c, s in pairs:
        by_combo.setdefault(c, []).append(s)
    for c, values in enumerate(spec.iter_combos()):
        for s in by_combo.get(c, []):
            yield c, values, s
