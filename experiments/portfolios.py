"""Portfolio sweeps: one portfolio per combination of a registered portfolio strategy over every symbol of the
inputs as one :class:`sim.Panel` with one cash account (the ``portfolio`` runner's work, :mod:`.runners`).

Invariants:
* Metrics for every combination; per-bar outputs (fills, positions, equity with exposures) for the
  combinations ``[results]`` keeps, run again alone and checked equal to the pass's metrics. Memory holds the
  panel, one combination's weights and result, the metric rows and the kept outputs.
* A user plugin's weights are held to ``check_weights`` and the look-ahead guard in the pass.
* With the Ray executor the pass runs as tasks (:func:`portfolio_chunk`, a pure function of the panel, the
  plugin's name and code hashes, the execution and the chunk's parameters); the rows come back in
  combination order, so the results are those of a local pass.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from . import plugins, sweep
from ._inputs import annualised
from ._tables import METRIC_COLUMNS, cat, equity_table, same_value, ts_array
from .errors import SimError
from .spec import Keep
from .strategies import portfolio_plugin

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake
    from artifact_lake.sim.plugins import Plugin

    from .ray_executor import RayExecutor
    from .spec import ExperimentSpec
    from .sweep import Progress


def portfolio_tables(
    lake: Lake,
    spec: ExperimentSpec,
    plugin: Plugin,
    bars: dict[str, Any],
    progress: Progress | None,
    timings: dict[str, float],
    log: plugins.GuardLog | None,
    executor: RayExecutor | None = None,
    resume: bool = False,
) -> tuple[dict[str, pa.Table], dict[str, Any], sweep.Stage | None]:
    """One portfolio per combination (a user plugin's weights through the look-ahead guard): metrics, one row
    per combination, for every combination; fills (combo, then time, then symbol as filled), positions and
    equity per bar with symbol ``*`` (position = symbols held; gross and net exposure beside) for the
    combinations the spec's ``[results]`` keeps (:class:`Keep`; the portfolio is the one symbol ``*``).

    With ``equity = "all"`` the per-bar outputs are taken in the one pass. Otherwise the pass keeps only the
    metric rows, then the kept combinations run again alone and their metrics must equal the pass's (a
    determinism check, as for signal sweeps): memory holds the panel, one combination's weights and result,
    the metric rows and the kept combinations' outputs, whatever the number of combinations. Returns the
    tables, for a selection what it kept and how the pass ran (for the run record's ``checks.sweep``), and
    where its chunks are staged (with ``resume``; remove it once the results are published)."""
    import pyarrow as pa

    keep = Keep.of(spec)
    runs = _Portfolios.of(lake, spec, plugin, bars, log)
    kept = _PortfolioOutputs(runs.panel)
    n = spec.n_combos
    rows, passed, stage = _metric_pass(
        lake, spec, runs, kept, keep.equity == "all", progress, timings, executor, resume
    )
    timings["weights"] = runs.weight_seconds
    timings["simulate"] = runs.sim_seconds
    metrics = pa.Table.from_pylist(rows)
    info: dict[str, Any] = {}
    if keep.equity != "all":
        t0 = time.perf_counter()
        chosen = {c for c, _ in sweep.select(metrics, keep, spec)}
        for c, combo in enumerate(spec.iter_combos()):
            if c not in chosen:
                continue
            res = runs.run(c, combo, guard=False)  # checked and guarded in the pass
            again = runs.row(c, combo, res)
            differ = [k for k in again if not same_value(rows[c][k], again[k])]
            if differ:
                raise SimError(
                    f"combination {c}: run alone it gives {differ[0]} = {again[differ[0]]!r}, in the sweep"
                    f" {rows[c][differ[0]]!r} (is the strategy deterministic?)"
                )
            kept.add(c, res)
            del res
        timings["selection"] = time.perf_counter() - t0
        info = {"combinations": n, "kept": len(chosen), "equity": keep.equity, "best": keep.best, "by": keep.by}
        info |= passed
    return {**kept.tables(), "metrics": metrics}, info, stage


def _metric_pass(
    lake: Lake,
    spec: ExperimentSpec,
    runs: _Portfolios,
    kept: _PortfolioOutputs,
    keep_all: bool,
    progress: Progress | None,
    timings: dict[str, float],
    executor: RayExecutor | None,
    resume: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any], sweep.Stage | None]:
    """The metric row of every combination, in combination order, computed in chunks of consecutive
    combinations (about :data:`sweep.CHUNK_BAR_STEPS` simulated bars each): here, or with a Ray ``executor``
    (a sweep that keeps a selection) as tasks, the panel put in the object store once. With ``resume`` a
    selection's finished chunks are staged under ``tmp/sweep-<key>/`` (as signal sweeps' are, same key rule)
    and an interrupted run's are taken as they are; ``keep_all`` (every combination's per-bar outputs go to
    ``kept`` as the pass runs) stages nothing. Returns the rows, what the pass did (chunks, reused, the chunk
    size, the executor) and the stage (to remove once published)."""
    import contextlib
    import math

    import pyarrow as pa

    combos = spec.combos()
    n = len(combos)
    size = max(1, min(n, sweep.CHUNK_BAR_STEPS // max(1, runs.panel.shape[0] * runs.panel.shape[1])))
    n_chunks = math.ceil(n / size)
    plugin = runs.plugin
    code = {} if plugin.builtin else {plugin.name: plugins.closure(plugin)}
    stage = (
        sweep.Stage(lake.root, sweep._stage_key(spec, code, size)) if resume and not keep_all and n_chunks > 1 else None
    )
    parts: dict[int, list[dict[str, Any]]] = {}
    reused = 0

    def finish(k: int, rows: list[dict[str, Any]], *, staged: bool = False) -> None:
        parts[k] = rows
        if stage is not None and not staged:
            stage.write(k, pa.Table.from_pylist(rows))  # by rename: whole or absent
        if progress is not None:
            done = sum(len(p) for p in parts.values())
            progress(done, n, f"combo {done}/{n} ({len(parts)}/{n_chunks} chunks)")

    with stage.held() if stage is not None else contextlib.nullcontext():
        todo = []
        for k in range(n_chunks):
            table = stage.read(k, len(combos[k * size : (k + 1) * size])) if stage is not None else None
            if table is None:
                todo.append(k)
            else:
                reused += 1
                finish(k, table.to_pylist(), staged=True)
        if executor is None or keep_all:
            for k in todo:
                rows = []
                for c in range(k * size, min(n, (k + 1) * size)):
                    res = runs.run(c, combos[c], guard=True)
                    rows.append(runs.row(c, combos[c], res))
                    if keep_all:
                        kept.add(c, res)
                    del res  # before the next combination's weights: one result alive at a time
                finish(k, rows)
            ran: dict[str, Any] = {"name": "local"}
        else:
            ran = _chunks_on_ray(executor, runs, combos, size, todo, finish, timings)
    passed = {"chunks": n_chunks, "reused": reused, "chunk_combinations": size, "executor": ran}
    return [row for k in sorted(parts) for row in parts[k]], passed, stage


def _chunks_on_ray(
    executor: RayExecutor,
    runs: _Portfolios,
    combos: list[dict[str, Any]],
    size: int,
    todo: list[int],
    finish: Any,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The chunks ``todo`` of a portfolio sweep's metrics pass as Ray tasks (:func:`portfolio_chunk`), each
    handed to ``finish`` as it comes back (any order); the guard's counts and the phases' times summed."""
    from ._version import code_version
    from .ray_executor import worker_env

    plugin = runs.plugin
    hashes = {} if plugin.builtin else {plugin.name: plugins.closure(plugin).hash}
    setup = (runs.execution, runs.direction, runs.min_trade, runs.swept)
    version = code_version()
    guarded = runs.log is not None
    jobs = (
        (k, (plugin.name, hashes, version, setup, k * size, combos[k * size : (k + 1) * size], guarded)) for k in todo
    )
    t0 = time.perf_counter()
    for k, (rows, guard, seconds) in executor.map_unordered(portfolio_chunk, runs.panel, jobs, worker_env()):
        if runs.log is not None:
            runs.log.merge(guard, seconds["lookahead_guard"])
        runs.weight_seconds += seconds["weights"]
        runs.sim_seconds += seconds["simulate"]
        finish(k, rows)
    if executor.connected:
        timings["ray_connect"] = executor.connect_seconds
        timings["ray_chunks"] = time.perf_counter() - t0 - executor.connect_seconds
    return executor.record()


def portfolio_chunk(
    panel: Any,
    plugin_name: str,
    code: dict[str, str],
    version: str,
    setup: tuple[Any, str, float, list[str]],
    first: int,
    chunk: list[dict[str, Any]],
    guarded: bool,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], dict[str, float]]:
    """The metric rows of combinations ``first`` .. ``first + len(chunk) - 1`` of portfolio strategy
    ``plugin_name`` on ``panel``: what a Ray worker runs. A pure function of its arguments and the registered
    code, refused when this process runs other code than the driver recorded (as a signal sweep's chunks).
    Returns the rows, the look-ahead guard's counts and the phases' wall times."""
    import dataclasses

    from .errors import PluginError

    sweep.check_version(version)
    plugins.load()
    plugin = portfolio_plugin(plugin_name)
    if plugin is None:
        raise PluginError(f"a Ray worker cannot resolve portfolio strategy {plugin_name!r} ({sweep._loads()})")
    sweep.check_hashes({} if plugin.builtin else {plugin.name: plugins.closure(plugin).hash}, code)
    arrays = [f.name for f in dataclasses.fields(panel) if isinstance(getattr(panel, f.name), np.ndarray)]
    writable = dataclasses.replace(panel, **{f: np.array(getattr(panel, f)) for f in arrays})  # Ray's: read-only
    log = plugins.GuardLog() if guarded else None
    runs = _Portfolios(writable, plugin, *setup, log)
    rows = []
    for i, combo in enumerate(chunk):
        res = runs.run(first + i, combo, guard=True)
        rows.append(runs.row(first + i, combo, res))
        del res
    seconds = {"weights": runs.weight_seconds, "simulate": runs.sim_seconds}
    seconds["lookahead_guard"] = log.seconds if log is not None else 0.0
    return rows, (log.checked if log is not None else {}), seconds


class _Portfolios:
    """One combination's portfolio over the inputs' panel: its weights (held to ``check_weights`` and, for a
    user plugin, the look-ahead guard) through ``sim.run_portfolio``, and its metric row."""

    def __init__(
        self,
        panel: Any,
        plugin: Plugin,
        execution: Any,
        direction: str,
        min_trade: float,
        swept: list[str],
        log: plugins.GuardLog | None,
    ) -> None:
        self.panel = panel
        self.plugin = plugin
        self.execution = execution
        self.direction = direction
        self.min_trade = min_trade
        self.swept = swept
        self.log = log
        self.weight_seconds = self.sim_seconds = 0.0

    @classmethod
    def of(
        cls, lake: Lake, spec: ExperimentSpec, plugin: Plugin, bars: dict[str, Any], log: plugins.GuardLog | None
    ) -> _Portfolios:
        """The portfolios of ``spec`` over ``bars``: its execution (annualised by the inputs' calendar) and
        ``[portfolio]`` options."""
        from artifact_lake import sim

        try:
            execution = sim.Execution.from_dict(spec.doc.get("execution", {}))
        except (ValueError, TypeError) as exc:
            raise SimError(str(exc)) from exc
        options = spec.doc.get("portfolio", {})
        return cls(
            sim.Panel.from_bars(bars),
            plugin,
            annualised(lake, spec, bars, execution),
            str(options.get("direction", "long")),
            float(options.get("min_trade", 0.0)),
            spec.swept,
            log,
        )

    def run(self, c: int, combo: dict[str, Any], *, guard: bool) -> Any:
        """Combination ``c``'s :class:`sim.PortfolioResult` (its weights released on return)."""
        from artifact_lake import sim
        from artifact_lake.sim.plugins import check_weights

        plugin, panel = self.plugin, self.panel
        values = plugin.bind(combo)
        try:
            t0 = time.perf_counter()
            weights = check_weights(plugin, plugin(panel, values), panel.shape, values)
            if guard and self.log is not None:
                tg = time.perf_counter()
                self.log.add(plugin.name, len(plugins.guard(plugin, panel, values, weights, "")["cuts"]))
                self.log.seconds += time.perf_counter() - tg
            t1 = time.perf_counter()
            res = sim.run_portfolio(panel, weights, self.execution, direction=self.direction, min_trade=self.min_trade)
            t2 = time.perf_counter()
        except (ValueError, TypeError) as exc:
            raise SimError(f"combination {c}: {exc}") from exc
        if guard:  # the pass's phases; a rerun's time is the selection's
            self.weight_seconds += t1 - t0
            self.sim_seconds += t2 - t1
        return res

    def row(self, c: int, combo: dict[str, Any], res: Any) -> dict[str, Any]:
        """The metrics row of combination ``c``: symbol ``*``, the metrics, status and the swept parameters."""
        from artifact_lake import sim

        m: dict[str, Any] = {"combo": c, "symbol": "*"}
        m.update({key: float(res.metrics[key]) for key in METRIC_COLUMNS})
        m["n_trades"] = int(res.metrics["n_trades"])  # fills (a portfolio has no round trips)
        m["open_trades"] = int(res.metrics["open_trades"])  # symbols held at the last bar
        m.update({key: float(res.metrics[key]) for key in sim.PORTFOLIO_METRIC_NAMES})
        m["status"] = res.status
        m.update({key: combo[key] for key in self.swept})
        return m


class _PortfolioOutputs:
    """The per-bar outputs (fills, positions in long format, equity with exposures) of the combinations added,
    in the order added; each result is reduced to these columns so it can be released at once."""

    FILLS = ("combo", "ts", "bar", "symbol", "size", "price", "fees", "reason")

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.symbols = np.asarray(panel.symbols, dtype=object)
        self.fills: dict[str, list[Any]] = {k: [] for k in self.FILLS}
        self.held: dict[str, list[Any]] = {k: [] for k in ("combo", "ts", "symbol", "position")}
        self.equity: dict[str, list[Any]] = {k: [] for k in ("combo", "symbol", "ts", "equity", "cash", "position")}
        self.gross: list[np.ndarray] = []
        self.net: list[np.ndarray] = []

    def add(self, c: int, res: Any) -> None:
        import pyarrow as pa

        panel = self.panel
        self.fills["combo"].append(np.full(len(res.fills), c, dtype=np.int64))
        for key, col in res.fill_rows().items():
            self.fills[key].append(col)
        # positions in long format, a row per symbol at every bar where its position changes
        p = res.positions
        rows_i, cols_j = np.nonzero(p != np.vstack([np.zeros((1, p.shape[1])), p[:-1]]))
        self.held["combo"].append(np.full(rows_i.shape[0], c, dtype=np.int64))
        self.held["ts"].append(panel.ts[rows_i])
        self.held["symbol"].append(self.symbols[cols_j])
        self.held["position"].append(p[rows_i, cols_j])
        n = len(panel)
        for key, col in (
            ("combo", np.full(n, c)),
            ("symbol", pa.repeat("*", n)),
            ("ts", panel.ts),
            ("equity", res.equity),
            ("cash", res.cash),
            ("position", (p != 0).sum(axis=1).astype(np.float64)),  # symbols held
        ):
            self.equity[key].append(col)
        self.gross.append(res.gross_exposure)
        self.net.append(res.net_exposure)

    def tables(self) -> dict[str, pa.Table]:
        import pyarrow as pa

        eq = equity_table(self.equity)
        eq = eq.append_column("gross_exposure", pa.array(cat(self.gross, np.float64), pa.float64()))
        eq = eq.append_column("net_exposure", pa.array(cat(self.net, np.float64), pa.float64()))
        f = self.fills
        fills = pa.table(
            {
                "combo": pa.array(cat(f["combo"], np.int64), pa.int64()),
                "ts": ts_array(cat(f["ts"], np.int64).astype(np.int64)),
                "bar": pa.array(cat(f["bar"], np.int64).astype(np.int64), pa.int64()),
                "symbol": pa.array(cat(f["symbol"], object), pa.string()),
                "size": pa.array(cat(f["size"], np.float64).astype(np.float64), pa.float64()),
                "price": pa.array(cat(f["price"], np.float64).astype(np.float64), pa.float64()),
                "fees": pa.array(cat(f["fees"], np.float64).astype(np.float64), pa.float64()),
                "reason": pa.array(cat(f["reason"], object), pa.string()),
            }
        )
        h = self.held
        positions = pa.table(
            {
                "combo": pa.array(cat(h["combo"], np.int64), pa.int64()),
                "ts": ts_array(cat(h["ts"], np.int64).astype(np.int64)),
                "symbol": pa.array(cat(h["symbol"], object), pa.string()),
                "position": pa.array(cat(h["position"], np.float64), pa.float64()),
            }
        )
        return {"fills": fills, "positions": positions, "equity": eq}
