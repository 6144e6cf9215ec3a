"""Runners: each kind of work an experiment does, behind one small interface chosen from the spec.

The executor (:mod:`.executor`) owns a run's lifecycle (verify the inputs, record the run, reuse, publish with
lineage, failures); a runner owns the work: which user plugins it runs (code identity), what it refuses
before a run is recorded, the device it needs, the meta of its results and the result tables themselves.

=================  ======================================  =================================
runner             chosen when                             results
=================  ======================================  =================================
``signal``         ``kind = "backtest"``, any registered   trades, equity, metrics
                   strategy plugin (built-in or the user's)
``alert_replay``   ``strategy.name = "alert_replay"``      alert_results, equity, metrics
``policy``         ``strategy.name = "policy"``            trades, equity, metrics
``portfolio``      ``kind = "backtest"``, a registered      fills, positions, equity, metrics
                   portfolio_strategy plugin (one cash     (symbol ``*``: the portfolio)
                   account over every symbol)
``train``          ``kind = "train"`` (user indicators     policy, training_curve, metrics
                   named in ``env.features``)
=================  ======================================  =================================

Invariants: results are functions of the inputs, the spec and the code (no clock, no paths; rows in
combination, then symbol, then time order); timings go to the run record, never into a result. A runner
publishes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import plugins, sweep, train
from ._inputs import annualised, bars_by_symbol
from ._tables import METRIC_COLUMNS, equity_table, same_value, trades_table, ts_array
from .errors import SimError, SpecError
from .portfolios import portfolio_tables
from .spec import Keep
from .strategies import OWN_KINDS, policy_params, portfolio_plugin, signal_plugin

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake
    from artifact_lake.sim.plugins import Plugin

    from .ray_executor import RayExecutor
    from .spec import ExperimentSpec

Progress = sweep.Progress


@dataclass(frozen=True)
class Output:
    """What a runner computed, before anything is published."""

    tables: dict[str, pa.Table]
    """Result tables by role."""
    code: dict[str, Any] = field(default_factory=dict)
    """The user plugins it ran, by name: their :class:`plugins.Closure` (built-ins are the code version)."""
    checks: dict[str, Any] = field(default_factory=dict)
    """What the look-ahead guard checked (empty when no user plugin ran)."""
    cleanup: Callable[[], None] | None = None
    """Removes what the work staged (a sweep's chunks); the executor calls it once the results are published."""


class Runner(Protocol):
    """One kind of work. Runners are stateless: every method takes the frozen spec."""

    name: str
    executors: tuple[str, ...]
    """The executors it can run on (``local``; ``ray`` where its work is chunks a cluster can take)."""

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        """The user plugins (not built-ins) ``spec`` runs, as registered now: their code hashes decide reuse
        (``lake`` for what the inputs say, such as a stored policy's features)."""
        ...

    def precheck(self, lake: Lake, spec: ExperimentSpec) -> None:
        """Refuse input that never could run, before a run is recorded (raise a ``LakeError``)."""
        ...

    def device(self, spec: ExperimentSpec) -> str:
        """The device the run records (``cpu`` unless the work trains a network)."""
        ...

    def result_meta(self, spec: ExperimentSpec, role: str) -> dict[str, Any]:
        """Extra meta of the result ``role`` (beside its experiment and role)."""
        ...

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        """Every result table of ``spec`` from its verified inputs; adds its phases to ``timings``. With
        ``resume`` a sweep stages its chunks and reuses those an interrupted run of the same code staged; with
        an ``executor`` (one of :attr:`executors`) its chunks run there (None: in this process)."""
        ...


class _Base:
    """Defaults: no user plugins, nothing to precheck, the CPU, no extra meta, only the local executor."""

    name = "base"
    executors: tuple[str, ...] = ("local",)

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        return []

    def precheck(self, lake: Lake, spec: ExperimentSpec) -> None:
        return None

    def device(self, spec: ExperimentSpec) -> str:
        return "cpu"

    def result_meta(self, spec: ExperimentSpec, role: str) -> dict[str, Any]:
        return {}


class SignalBacktest(_Base):
    """A registered strategy plugin (built-in or the user's) swept over every symbol; user plugins go through
    the output contract and the look-ahead guard, and their code closures are returned for publishing."""

    name = "signal"
    executors: tuple[str, ...] = ("local", "ray")  # the metrics pass of a chunked sweep (every [results] = best sweep)

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        plugin = signal_plugin(spec.doc["strategy"]["name"])
        return [p for p in [plugin, *plugins.used_indicators(plugin)] if not p.builtin]

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        t0 = time.perf_counter()
        bars = bars_by_symbol(lake, spec.inputs["ohlcv"], list(spec.doc["strategy"].get("symbols", [])))
        timings["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        combos = _SignalCombos(spec, bars)  # the plugin resolved, its code hashed; the calendar's bars a year
        combos.execution = annualised(lake, spec, bars, combos.execution)
        keep = Keep.of(spec)
        timings["prepare"] = timings.get("prepare", 0.0) + time.perf_counter() - t0
        checks: dict[str, Any] = {}
        cleanup = None
        if keep.equity == "all":
            tables = signal_backtests(spec, bars, progress, timings, combos)
            if executor is not None:  # every combination keeps per-bar outputs: no chunks to ship
                checks["executor"] = {"name": "local", "requested": executor.name, "why": "no chunked sweep"}
        else:
            tables, checks["sweep"], cleanup = _best_of_sweep(
                lake, spec, bars, keep, combos, progress, timings, resume, executor
            )
        timings["signals"] = combos.signal_seconds
        if keep.equity == "all":  # the simulate phase timed each whole run: orders and guard are their own phases
            timings["simulate"] -= combos.signal_seconds + combos.log.seconds
        if combos.guarded:
            timings["lookahead_guard"] = combos.log.seconds
            checks.update(combos.log.to_dict())
        return Output(tables, combos.code, checks, cleanup)


class PolicyBacktest(_Base):
    """A stored policy (``tensors``) run greedily over each symbol, then backtested like any strategy."""

    name = "policy"

    def precheck(self, lake: Lake, spec: ExperimentSpec) -> None:
        train.check_policy(lake, spec.inputs["policy"], spec.doc.get("execution", {}))

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        """The user indicators the stored policy's features name (its meta's ``env.features``): their code
        computes the observations, so it is recorded, and decides reuse, like a strategy's."""
        env = lake.get(spec.inputs["policy"][0]).meta.get("env")
        return train.feature_plugins(env if isinstance(env, dict) else {}, key="the policy's env.features")

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        t0 = time.perf_counter()
        bars = bars_by_symbol(lake, spec.inputs["ohlcv"], list(spec.doc["strategy"].get("symbols", [])))
        timings["load"] = time.perf_counter() - t0
        code = {p.name: plugins.closure(p) for p in self.user_plugins(spec, lake)}
        runs = dict(train.policy_backtests(lake, spec, bars))
        tables = signal_backtests(spec, bars, progress, timings, lambda combo, symbol, b: runs[symbol])
        return Output(tables, code)


class AlertReplay(_Base):
    """Alerts replayed against the bars with an exit policy per combination (one portfolio per combination)."""

    name = "alert_replay"

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        return Output(_alert_replay_tables(lake, spec, progress, timings))


class PortfolioBacktest(_Base):
    """A registered portfolio strategy (``@portfolio_strategy``) over every symbol of the inputs as one
    :class:`sim.Panel` with one cash account, per combination; ``[portfolio]`` sets direction and min_trade.
    User plugins are held to the weights contract (``check_weights``) and the look-ahead guard (their weights
    on the panel cut at a few bars equal the full run's up to the cut), and their code closures are returned.
    ``[results]`` chooses the combinations that keep per-bar outputs, as for signal sweeps (symbol ``*``)."""

    name = "portfolio"
    executors: tuple[str, ...] = ("local", "ray")  # the metrics pass of a sweep that keeps a selection

    def _plugin(self, spec: ExperimentSpec) -> Plugin:
        found = portfolio_plugin(spec.doc["strategy"]["name"])
        if found is None:
            raise SpecError(f"spec key 'strategy.name': {spec.doc['strategy']['name']!r} is no portfolio strategy")
        return found

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        plugin = self._plugin(spec)
        return [] if plugin.builtin else [plugin]

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        plugin = self._plugin(spec)
        t0 = time.perf_counter()
        bars = bars_by_symbol(lake, spec.inputs["ohlcv"], list(spec.doc["strategy"].get("symbols", [])))
        timings["load"] = time.perf_counter() - t0
        code = {} if plugin.builtin else {plugin.name: plugins.closure(plugin)}
        log = None if plugin.builtin else plugins.GuardLog()
        tables, selection, stage = portfolio_tables(lake, spec, plugin, bars, progress, timings, log, executor, resume)
        checks: dict[str, Any] = log.to_dict() if log is not None else {}
        if log is not None:
            timings["lookahead_guard"] = log.seconds
            timings["weights"] -= log.seconds
        if selection:
            checks["sweep"] = selection
        elif executor is not None:  # every combination keeps per-bar outputs: nothing to ship
            checks["executor"] = {"name": "local", "requested": executor.name, "why": "no chunked sweep"}
        return Output(tables, code, checks, stage.remove if stage is not None else None)


class Training(_Base):
    """A PPO policy trained on one symbol (``kind = "train"``), with its curve and validation metrics."""

    name = "train"

    def device(self, spec: ExperimentSpec) -> str:
        """The device this machine trains on; a trial sweep's trials each record their own (they may train on
        a cluster's GPUs), so its own run records ``trials``."""
        train.require_torch()
        from artifact_lake.sim.ppo import pick_device

        if spec.doc.get("sweep"):
            return "trials"
        try:
            return str(pick_device(train.ppo_config(spec.doc["trainer"], int(spec.doc["seed"])).device).type)
        except ValueError as exc:  # trainer.device = "cuda" on a machine without CUDA
            raise SimError(f"spec key 'trainer.device': {exc}") from exc

    def user_plugins(self, spec: ExperimentSpec, lake: Lake) -> list[Plugin]:
        """The user indicators ``env.features`` names (built-in features and indicators are the code version)."""
        return train.feature_plugins(spec.doc.get("env", {}))

    def result_meta(self, spec: ExperimentSpec, role: str) -> dict[str, Any]:
        return train.policy_meta(spec) if role == "policy" else {}

    def compute(
        self,
        lake: Lake,
        spec: ExperimentSpec,
        progress: Progress | None,
        timings: dict[str, float],
        *,
        resume: bool = False,
        executor: RayExecutor | None = None,
    ) -> Output:
        used = self.user_plugins(spec, lake)
        code = {p.name: plugins.closure(p) for p in used}
        log = plugins.GuardLog()
        tables = train.compute_train(lake, spec, progress, timings, log if used else None)
        if used:
            timings["lookahead_guard"] = log.seconds
        return Output(tables, code, log.to_dict() if used else {})


RUNNERS: dict[str, Runner] = {
    r.name: r for r in (SignalBacktest(), PolicyBacktest(), AlertReplay(), PortfolioBacktest(), Training())
}
"""Every runner by name."""


def runner_for(spec: ExperimentSpec) -> Runner:
    """The runner of ``spec``: training for ``kind = "train"``, the lake's own kinds of work by strategy name
    (``alert_replay``, ``policy``), a registered portfolio strategy is a portfolio, and every other strategy
    is a signal plugin."""
    if spec.kind == "train":
        return RUNNERS["train"]
    name = spec.doc["strategy"]["name"]
    if name in OWN_KINDS:
        return RUNNERS[name]
    return RUNNERS["portfolio"] if portfolio_plugin(name) is not None else RUNNERS["signal"]


class _SignalCombos:
    """One backtest of a signal plugin's combination on one symbol, with the output contract and, for user
    plugins, the look-ahead guard. A plugin's sweep fast path, when it has one, computes every combination's
    orders in turn per symbol (the executor asks for them in combination order)."""

    def __init__(self, spec: ExperimentSpec, bars: dict[str, Any]) -> None:
        from artifact_lake import sim

        try:
            self.execution = sim.Execution.from_dict(spec.doc.get("execution", {}))
        except (ValueError, TypeError) as exc:
            raise SimError(str(exc)) from exc
        self.plugin = signal_plugin(spec.doc["strategy"]["name"])
        self.guarded = not self.plugin.builtin
        self.indicators = [i for i in plugins.used_indicators(self.plugin) if not i.builtin]
        self.code = {p.name: plugins.closure(p) for p in [self.plugin, *self.indicators] if not p.builtin}
        self.log = plugins.GuardLog()
        self.signal_seconds = 0.0
        self.spec = spec
        self.streams: dict[str, Any] = {}  # the sweep fast path per symbol, started when every combination runs
        self.bound: list[dict[str, Any]] | None = None
        self.next_combo = dict.fromkeys(bars, 0)

    def signals(self, values: dict[str, Any], symbol: str, b: Any) -> np.ndarray:
        from artifact_lake.sim.plugins import check_output

        c = self.next_combo[symbol]
        self.next_combo[symbol] = c + 1
        t0 = time.perf_counter()
        if c == 0 and self.plugin.sweep is not None and self.spec.n_combos > 1:
            if self.bound is None:
                self.bound = [self.plugin.bind(v) for v in self.spec.iter_combos()]
            self.streams[symbol] = iter(self.plugin.sweep(b, self.bound))
        stream = self.streams.get(symbol)
        raw = next(stream) if stream is not None else self.plugin(b, values)
        out = check_output(self.plugin, raw, len(b), values)
        self.signal_seconds += time.perf_counter() - t0
        if self.guarded:
            self.guard_one(symbol, b, values, out, first_of_symbol=c == 0)
        return out

    def guard_one(self, symbol: str, b: Any, values: dict[str, Any], out: np.ndarray, *, first_of_symbol: bool) -> None:
        """The look-ahead guard on one combination's orders (and, once per symbol, on the user indicators)."""
        sweep.guard_orders(
            self.plugin, self.indicators, self.log, symbol, b, values, out, first_of_symbol=first_of_symbol
        )

    def rerun(self, combo: dict[str, Any], symbol: str, b: Any) -> Any:
        """One combination alone with per-bar outputs (already checked and guarded in the sweep's pass)."""
        from artifact_lake import sim
        from artifact_lake.sim.plugins import check_output

        values = self.plugin.bind(combo)
        t0 = time.perf_counter()
        out = check_output(self.plugin, self.plugin(b, values), len(b), values)
        self.signal_seconds += time.perf_counter() - t0
        return sim.run(b, out, self.execution)

    def __call__(self, combo: dict[str, Any], symbol: str, b: Any) -> Any:
        from artifact_lake import sim

        values = self.plugin.bind(combo)
        return sim.run(b, self.signals(values, symbol, b), self.execution)


def signal_backtests(
    spec: ExperimentSpec,
    bars: dict[str, Any],
    progress: Progress | None,
    timings: dict[str, float],
    run_one: Callable[[dict[str, Any], str, Any], Any],
) -> dict[str, pa.Table]:
    """Every combination on every symbol, each with per-bar equity and trades."""
    runs = ((c, combo, symbol) for c, combo in enumerate(spec.iter_combos()) for symbol in bars)
    trades, equity, rows = _backtests(bars, runs, spec.n_combos * len(bars), progress, timings, run_one)
    return {"trades": trades, "equity": equity, "metrics": sweep.metrics_table(sweep.rows_table(rows), spec)}


def _best_of_sweep(
    lake: Lake,
    spec: ExperimentSpec,
    bars: dict[str, Any],
    keep: Keep,
    combos: _SignalCombos,
    progress: Progress | None,
    timings: dict[str, float],
    resume: bool,
    executor: RayExecutor | None = None,
) -> tuple[dict[str, pa.Table], dict[str, Any], Callable[[], None] | None]:
    """Metrics of every combination (chunked, staged, resumable; on ``executor`` when there is one), then
    equity and trades of the selection, run again alone here; their metrics must equal the sweep's (else the
    plugin is not deterministic)."""
    swept = sweep.ChunkedSweep(combos, spec, bars, timings, executor)
    rows, info, stage = swept.metrics(lake, progress, resume=resume)
    t0 = time.perf_counter()
    pairs = sweep.select(rows, keep, spec)
    again: dict[str, float] = {}
    trades, equity, kept = _backtests(bars, sweep.selected_runs(spec, pairs), len(pairs), None, again, combos.rerun)
    index = {
        (c, s): i
        for i, (c, s) in enumerate(
            zip(rows.column("combo").to_pylist(), rows.column("symbol").to_pylist(), strict=True)
        )
    }
    for row in kept:
        first = rows.slice(index[(row["combo"], row["symbol"])], 1).to_pylist()[0]
        differ = [k for k in METRIC_COLUMNS if not same_value(first[k], row[k])]
        if differ:
            raise SimError(
                f"combination {row['combo']} ({row['symbol']}): run alone it gives {differ[0]} = {row[differ[0]]!r},"
                f" in the sweep {first[differ[0]]!r} (is the strategy deterministic?)"
            )
    timings["selection"] = time.perf_counter() - t0
    tables = {"trades": trades, "equity": equity, "metrics": sweep.metrics_table(rows, spec)}
    info |= {"kept": len(pairs), "equity": keep.equity, "best": keep.best, "by": keep.by}
    return tables, info, stage.remove if stage is not None else None


def _backtests(
    bars: dict[str, Any],
    runs: Iterable[tuple[int, dict[str, Any], str]],
    total: int,
    progress: Progress | None,
    timings: dict[str, float],
    run_one: Callable[[dict[str, Any], str, Any], Any],
) -> tuple[pa.Table, pa.Table, list[dict[str, Any]]]:
    """Trades, per-bar equity and metric rows of ``runs`` ((combination, parameters, symbol), in order)."""
    import pyarrow as pa

    trades: dict[str, list[Any]] = {}
    equity: dict[str, list[Any]] = {k: [] for k in ("combo", "symbol", "ts", "equity", "cash", "position")}
    rows: list[dict[str, Any]] = []
    sim_time = 0.0
    for done, (c, combo, symbol) in enumerate(runs, 1):
        b = bars[symbol]
        t0 = time.perf_counter()
        try:
            res = run_one(combo, symbol, b)
        except (ValueError, TypeError) as exc:
            raise SimError(f"combination {c} ({symbol}): {exc}") from exc
        sim_time += time.perf_counter() - t0
        n = len(res.trades)
        for key, col in (("combo", np.full(n, c)), ("symbol", pa.repeat(symbol, n))):
            trades.setdefault(key, []).append(col)
        for key, col in res.trade_rows(b.ts).items():
            trades.setdefault(key, []).append(col)
        for key, col in (
            ("combo", np.full(len(b), c)),
            ("symbol", pa.repeat(symbol, len(b))),
            ("ts", b.ts),
            ("equity", res.equity),
            ("cash", res.cash),
            ("position", res.position),
        ):
            equity[key].append(col)
        rows.append(sweep.metric_row(c, symbol, res.metrics))
        if progress is not None:
            progress(done, total, f"combo {c + 1}/{total // max(len(bars), 1)} {symbol}")
    timings["simulate"] = timings.get("simulate", 0.0) + sim_time
    return trades_table(trades), equity_table(equity), rows


def _alert_replay_tables(
    lake: Lake, spec: ExperimentSpec, progress: Progress | None, timings: dict[str, float]
) -> dict[str, pa.Table]:
    import pyarrow as pa

    from artifact_lake import sim

    t0 = time.perf_counter()
    bars = bars_by_symbol(lake, spec.inputs["ohlcv"], [])
    alerts_proj = lake.projection(
        "alerts_ohlcv",
        {"alerts": spec.inputs["alerts"], "ohlcv": spec.inputs["ohlcv"]},
        {"before": "0s", "after": "0s"},
    )
    alerts = alerts_proj.arrow("SELECT * FROM alerts ORDER BY alert")
    timings["load"] = time.perf_counter() - t0
    combos = spec.combos()
    per_alert: list[pa.Table] = []
    equity: dict[str, list[Any]] = {k: [] for k in ("combo", "symbol", "ts", "equity", "cash", "position")}
    metrics: list[dict[str, Any]] = []
    ts = alerts.column("ts").cast(pa.int64()).to_numpy()
    sim_time = 0.0
    for c, combo in enumerate(combos):
        if combo.get("require_coverage"):
            cov = lake.projection(
                "alerts_ohlcv",
                {"alerts": spec.inputs["alerts"], "ohlcv": spec.inputs["ohlcv"]},
                {"before": "0s", "after": f"{max(int(combo.get('max_hold_bars', 0)), 1)}m"},
            ).arrow("SELECT alert, symbol, ts, coverage FROM coverage WHERE coverage <> 'full' ORDER BY alert LIMIT 3")
            if cov.num_rows:
                first = cov.to_pylist()[0]
                raise SpecError(
                    f"spec key 'strategy.require_coverage': alert {first['alert']} ({first['symbol']} at "
                    f"{first['ts'].isoformat()}) has {first['coverage']} OHLCV coverage (see: lake coverage)"
                )
        try:
            policy = sim.AlertPolicy.from_dict(policy_params(combo, spec.doc.get("execution", {})))
            t1 = time.perf_counter()
            out = sim.alert_replay(
                bars, ts, alerts.column("symbol").to_pylist(), alerts.column("side").to_pylist(), policy
            )
            sim_time += time.perf_counter() - t1
        except (ValueError, TypeError) as exc:
            raise SimError(f"combination {c}: {exc}") from exc
        rows = out["alerts"]
        n = len(rows["alert"])
        per_alert.append(
            pa.table(
                {
                    "combo": pa.array(np.full(n, c), pa.int64()),
                    "alert": pa.array(rows["alert"], pa.int64()),
                    "symbol": pa.array(rows["symbol"], pa.string()),
                    "side": pa.array(rows["side"], pa.int8()),
                    "status": pa.array(rows["status"], pa.string()),
                    "entry_ts": ts_array(rows["entry_ts"]),
                    "entry_price": pa.array(rows["entry_price"], pa.float64()),
                    "exit_ts": ts_array(rows["exit_ts"]),
                    "exit_price": pa.array(rows["exit_price"], pa.float64()),
                    "exit_reason": pa.array(rows["exit_reason"], pa.string()),
                    "return": pa.array(rows["return"], pa.float64()),
                    "net_return": pa.array(rows["net_return"], pa.float64()),
                    "mae": pa.array(rows["mae"], pa.float64()),
                    "mfe": pa.array(rows["mfe"], pa.float64()),
                    "bars_to_exit": pa.array(rows["bars_to_exit"], pa.int64()),
                    "seconds_to_exit": pa.array(rows["seconds_to_exit"], pa.float64()),
                    "units": pa.array(rows["units"], pa.float64()),
                    "fees": pa.array(rows["fees"], pa.float64()),
                    "pnl": pa.array(rows["pnl"], pa.float64()),
                }
            )
        )
        k = len(out["timeline"])
        for key, col in (
            ("combo", np.full(k, c)),
            ("symbol", pa.repeat("*", k)),
            ("ts", out["timeline"]),
            ("equity", out["equity"]),
            ("cash", out["cash"]),
            ("position", out["open"].astype(np.float64)),
        ):
            equity[key].append(col)
        m = {"combo": c, "symbol": "*"}
        m.update({k2: float(v) for k2, v in out["metrics"].items()})
        m["n_trades"] = int(out["metrics"]["n_trades"])
        m["open_trades"] = 0  # alert replay closes every position at the last bar (exit reason "end")
        m.update({k2: combo[k2] for k2 in spec.swept})
        metrics.append(m)
        if progress is not None:
            progress(c + 1, len(combos), f"combo {c + 1}/{len(combos)}")
    timings["simulate"] = sim_time
    return {
        "alert_results": pa.concat_tables(per_alert),
        "equity": equity_table(equity),
        "metrics": pa.Table.from_pylist(metrics),
    }
