"""Execute an experiment: verify its frozen inputs, build the projection, run the simulator, publish the
results with lineage, and record the run.

Invariants:
* Results are functions of the inputs, the spec and the code: no clock, no paths, stable row orders
  (combination, then symbol, then time). The run record holds the timings.
* Every result table is checked against its schema before any is published. All results and the run's
  ``succeeded`` status commit in one manifest transaction (``artifact_store.batch.publish_many``): a run that
  fails, fills the disk or is killed publishes none of them, and every result's edges name a succeeded run.
  Each result gets an edge from every frozen input, tagged with the run id.
* A run holds its lock (``tracker.run_lock``) from before its row exists until its final status is
  committed, so a run whose process died reads as ``interrupted``.
* Input that never could run (a crafted policy) is refused by :func:`precheck` before a run is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from artifact_lake.artifact_store import openlineage
from artifact_lake.schemas.errors import LakeError

from . import tracker
from .errors import SimError, SpecError
from .spec import ExperimentSpec
from .strategies import policy_params, signal_plugin

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake

Progress = Callable[[int, int, str], None]
RESULT_TYPES = {
    "trades": "trades",
    "equity": "equity",
    "metrics": "metrics",
    "alert_results": "table",
    "policy": "tensors",
    "training_curve": "table",
}
METRIC_COLUMNS = (
    "final_equity",
    "total_return",
    "n_trades",
    "open_trades",
    "max_drawdown",
    "sharpe",
    "sortino",
    "cagr",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "fees",
    "max_drawdown_days",
)


@dataclass(frozen=True)
class Computed:
    """Result tables of one execution, by role, before publishing."""

    tables: dict[str, pa.Table]
    timings: dict[str, float]
    code: dict[str, Any] = field(default_factory=dict)
    """The user plugins it ran, by name: their :class:`plugins.Closure` (built-ins are the code version)."""
    checks: dict[str, Any] = field(default_factory=dict)
    """What the look-ahead guard checked (empty when no user plugin ran)."""


def _verify(lake: Lake, spec: ExperimentSpec) -> None:
    from artifact_lake.projections.build import _verify_inputs

    _verify_inputs(lake, [i for ids in spec.inputs.values() for i in ids])


def _bars_by_symbol(lake: Lake, ohlcv_ids: list[str], only: list[str]) -> dict[str, Any]:
    from artifact_lake import sim

    proj = lake.projection("ohlcv", {"ohlcv": ohlcv_ids})
    symbols = proj.arrow("SELECT DISTINCT symbol FROM ohlcv ORDER BY symbol").column("symbol").to_pylist()
    missing = [s for s in only if s not in symbols]
    if missing:
        raise SpecError(
            f"spec key 'strategy.symbols': {', '.join(missing)} not in the ohlcv inputs ({', '.join(symbols)})"
        )
    out = {}
    for s in only or symbols:
        # the projection stores rows sorted by (symbol, ts) and scans keep that order; Bars refuses any
        # other order (ts must strictly increase), so a change here could not go unnoticed
        bars = proj.arrow("SELECT ts, open, high, low, close, volume FROM ohlcv WHERE symbol = ?", [s])
        out[s] = sim.Bars.from_table(bars)
    return out


def _annualised(lake: Lake, spec: ExperimentSpec, bars: dict[str, Any], execution: Any) -> Any:
    """``execution`` with its bars a year from the inputs' trading calendar, unless the spec sets them
    (``[execution] periods_per_year``); 24/7 data keeps None: the simulator uses the bar spacing."""
    import dataclasses

    from artifact_lake.projections.calendars import calendar_of, periods_per_year
    from artifact_lake.sim.engine import bar_seconds

    if execution.periods_per_year is not None or not bars:
        return execution
    calendar = calendar_of(lake, spec.inputs["ohlcv"])
    first = bars[min(bars)]
    ppy = periods_per_year(calendar, bar_seconds(first.ts)) if len(first) > 1 else None
    return dataclasses.replace(execution, periods_per_year=ppy)


def compute(lake: Lake, spec: ExperimentSpec, progress: Progress | None = None) -> Computed:
    """Every result table of ``spec`` (nothing is published)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _verify(lake, spec)
    timings["verify"] = time.perf_counter() - t0
    if spec.kind == "train":
        from .train import compute_train

        return Computed(compute_train(lake, spec, progress, timings), timings)
    strategy = spec.doc["strategy"]["name"]
    t0 = time.perf_counter()
    code: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    if strategy == "alert_replay":
        tables = _alert_replay(lake, spec, progress, timings)
    else:
        bars = _bars_by_symbol(lake, spec.inputs["ohlcv"], list(spec.doc["strategy"].get("symbols", [])))
        timings["load"] = time.perf_counter() - t0
        if strategy == "policy":
            from .train import policy_backtests

            runs = dict(policy_backtests(lake, spec, bars))
            tables = _signal_backtests(spec, bars, progress, timings, lambda combo, symbol, b: runs[symbol])
        else:
            runner = SignalRunner(spec, bars)
            runner.execution = _annualised(lake, spec, bars, runner.execution)
            code = runner.code
            tables = _signal_backtests(spec, bars, progress, timings, runner)
            checks = runner.log.to_dict() if runner.guarded else {}
            timings["signals"] = runner.signal_seconds
            if runner.guarded:
                timings["lookahead_guard"] = runner.log.seconds
    return Computed(tables, timings, code, checks)


class SignalRunner:
    """One backtest of a signal plugin's combination on one symbol, with the output contract and, for user
    plugins, the look-ahead guard. A plugin's sweep fast path, when it has one, computes every combination's
    orders in turn per symbol (the executor asks for them in combination order)."""

    def __init__(self, spec: ExperimentSpec, bars: dict[str, Any]) -> None:
        from artifact_lake import sim

        from . import plugins

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
        self.combos = [self.plugin.bind(c) for c in spec.iter_combos()]
        self.streams: dict[str, Any] = {}
        if self.plugin.sweep is not None and len(self.combos) > 1:
            self.streams = {s: iter(self.plugin.sweep(b, self.combos)) for s, b in bars.items()}
        self.next_combo = dict.fromkeys(bars, 0)

    def signals(self, values: dict[str, Any], symbol: str, b: Any) -> np.ndarray:
        from artifact_lake.sim.plugins import check_output

        c = self.next_combo[symbol]
        self.next_combo[symbol] = c + 1
        t0 = time.perf_counter()
        stream = self.streams.get(symbol)
        raw = next(stream) if stream is not None else self.plugin(b, values)
        out = check_output(self.plugin, raw, len(b), values)
        self.signal_seconds += time.perf_counter() - t0
        if self.guarded:
            from . import plugins

            t0 = time.perf_counter()
            report = plugins.guard(self.plugin, b, values, out, f"; {symbol}")
            self.log.add(self.plugin.name, len(report["cuts"]))
            if c == 0:
                for ind in self.indicators:
                    full = check_output(ind, ind(b, {}), len(b), {})
                    self.log.add(ind.name, len(plugins.guard(ind, b, {}, full, f"; {symbol}")["cuts"]))
            self.log.seconds += time.perf_counter() - t0
        return out

    def __call__(self, combo: dict[str, Any], symbol: str, b: Any) -> Any:
        from artifact_lake import sim

        values = self.plugin.bind(combo)
        return sim.run(b, self.signals(values, symbol, b), self.execution)


def _signal_backtests(
    spec: ExperimentSpec,
    bars: dict[str, Any],
    progress: Progress | None,
    timings: dict[str, float],
    run_one: Callable[[dict[str, Any], str, Any], Any],
) -> dict[str, pa.Table]:
    import pyarrow as pa

    combos = spec.combos()
    trades: dict[str, list[Any]] = {}
    equity: dict[str, list[Any]] = {k: [] for k in ("combo", "symbol", "ts", "equity", "cash", "position")}
    metrics: list[dict[str, Any]] = []
    total = len(combos) * len(bars)
    done = 0
    sim_time = 0.0
    for c, combo in enumerate(combos):
        for symbol, b in bars.items():
            t0 = time.perf_counter()
            try:
                res = run_one(combo, symbol, b)
            except (ValueError, TypeError) as exc:
                raise SimError(f"combination {c} ({symbol}): {exc}") from exc
            sim_time += time.perf_counter() - t0
            rows = res.trade_rows(b.ts)
            n = len(res.trades)
            for key, col in (("combo", np.full(n, c)), ("symbol", np.full(n, symbol, dtype=object))):
                trades.setdefault(key, []).append(col)
            for key, col in rows.items():
                trades.setdefault(key, []).append(col)
            for key, col in (
                ("combo", np.full(len(b), c)),
                ("symbol", np.full(len(b), symbol, dtype=object)),
                ("ts", b.ts),
                ("equity", res.equity),
                ("cash", res.cash),
                ("position", res.position),
            ):
                equity[key].append(col)
            m = {"combo": c, "symbol": symbol}
            m.update({k: float(res.metrics[k]) for k in METRIC_COLUMNS})
            m["n_trades"] = int(res.metrics["n_trades"])  # closed trades (backtesting.py's "# Trades")
            m["open_trades"] = int(res.metrics["open_trades"])  # a position still open at the last bar
            m.update({k: combo[k] for k in spec.swept})
            metrics.append(m)
            done += 1
            if progress is not None:
                progress(done, total, f"combo {c + 1}/{len(combos)} {symbol}")
    timings["simulate"] = sim_time
    return {
        "trades": _trades_table(trades),
        "equity": _equity_table(equity),
        "metrics": pa.Table.from_pylist(metrics),
    }


def _cat(parts: list[Any], dtype: Any = None) -> np.ndarray:
    if not parts:
        return np.array([], dtype=dtype)
    return np.concatenate(parts)


def _ts(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    mask = values == np.iinfo(np.int64).min
    return pa.array(values.astype(np.int64), pa.timestamp("us", tz="UTC"), mask=mask)


def _trades_table(cols: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    if not cols:
        cols = {
            "combo": [],
            "symbol": [],
            "side": [],
            "size": [],
            "entry_ts": [],
            "exit_ts": [],
            "entry_price": [],
            "exit_price": [],
            "fees": [],
            "pnl": [],
            "exit_reason": [],
            "entry_idx": [],
            "exit_idx": [],
            "return": [],
            "mae": [],
            "mfe": [],
        }
    exit_price = _cat(cols["exit_price"], np.float64)
    return pa.table(
        {
            "combo": pa.array(_cat(cols["combo"], np.int64), pa.int64()),
            "symbol": pa.array(_cat(cols["symbol"], object), pa.string()),
            "side": pa.array(_cat(cols["side"], np.int8), pa.int8()),
            "size": pa.array(_cat(cols["size"], np.float64), pa.float64()),
            "entry_ts": _ts(_cat(cols["entry_ts"], np.int64)),
            "exit_ts": _ts(_cat(cols["exit_ts"], np.int64)),
            "entry_price": pa.array(_cat(cols["entry_price"], np.float64), pa.float64()),
            "exit_price": pa.array(exit_price, pa.float64(), mask=np.isnan(exit_price)),
            "fees": pa.array(_cat(cols["fees"], np.float64), pa.float64()),
            "pnl": pa.array(_cat(cols["pnl"], np.float64), pa.float64()),
            "exit_reason": pa.array(_cat(cols["exit_reason"], object), pa.string()),
            "entry_idx": pa.array(_cat(cols["entry_idx"], np.int64), pa.int64()),
            "exit_idx": pa.array(_cat(cols["exit_idx"], np.int64), pa.int64()),
            "return": pa.array(_cat(cols["return"], np.float64), pa.float64()),
            "mae": pa.array(_cat(cols["mae"], np.float64), pa.float64()),
            "mfe": pa.array(_cat(cols["mfe"], np.float64), pa.float64()),
        }
    )


def _equity_table(cols: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "combo": pa.array(_cat(cols["combo"], np.int64), pa.int64()),
            "symbol": pa.array(_cat(cols["symbol"], object), pa.string()),
            "ts": _ts(_cat(cols["ts"], np.int64)),
            "equity": pa.array(_cat(cols["equity"], np.float64), pa.float64()),
            "cash": pa.array(_cat(cols["cash"], np.float64), pa.float64()),
            "position": pa.array(_cat(cols["position"], np.float64), pa.float64()),
        }
    )


def _alert_replay(
    lake: Lake, spec: ExperimentSpec, progress: Progress | None, timings: dict[str, float]
) -> dict[str, pa.Table]:
    import pyarrow as pa

    from artifact_lake import sim

    t0 = time.perf_counter()
    bars = _bars_by_symbol(lake, spec.inputs["ohlcv"], [])
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
                    "entry_ts": _ts(rows["entry_ts"]),
                    "entry_price": pa.array(rows["entry_price"], pa.float64()),
                    "exit_ts": _ts(rows["exit_ts"]),
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
            ("symbol", np.full(k, "*", dtype=object)),
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
        "equity": _equity_table(equity),
        "metrics": pa.Table.from_pylist(metrics),
    }


def conform_results(lake: Lake, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Every result conformed and checked against its type before anything is published."""
    from artifact_lake.schemas import find_violations, first_error
    from artifact_lake.schemas.validate import conform

    out = {}
    for role, table in tables.items():
        schema = lake.registry.get(RESULT_TYPES[role])
        conformed = conform(table, schema, f"result {role!r}")
        bad = find_violations(conformed, schema)
        if bad:
            raise SimError(
                f"the simulator produced an invalid {role!r} table: {first_error(conformed, bad, schema, role)}"
            )
        out[role] = conformed
    return out


def _device(spec: ExperimentSpec) -> str:
    if spec.kind != "train":
        return "cpu"
    from .train import ppo_config, require_torch

    require_torch()
    from artifact_lake.sim.ppo import pick_device

    return pick_device(ppo_config(spec.doc["trainer"], int(spec.doc["seed"])).device).type


def spec_plugins(spec: ExperimentSpec) -> list[Any]:
    """The user plugins (not built-ins) ``spec`` runs: its strategy and the indicators that strategy calls."""
    from . import plugins
    from .strategies import OWN_KINDS

    if spec.kind != "backtest" or spec.doc.get("strategy", {}).get("name") in OWN_KINDS:
        return []
    plugin = signal_plugin(spec.doc["strategy"]["name"])
    return [p for p in [plugin, *plugins.used_indicators(plugin)] if not p.builtin]


def current_plugin_hashes(spec: ExperimentSpec) -> dict[str, str]:
    """The code hash of every user plugin ``spec`` runs, as installed now."""
    from . import plugins

    return {p.name: plugins.closure(p).hash for p in spec_plugins(spec)}


def precheck(lake: Lake, spec: ExperimentSpec) -> None:
    """Refuse, before any run is recorded, input that never could run (a crafted policy)."""
    if spec.kind == "backtest" and spec.doc.get("strategy", {}).get("name") == "policy":
        from .train import check_policy

        check_policy(lake, spec.inputs["policy"], spec.doc.get("execution", {}))


def execute(lake: Lake, ref: str, *, force: bool = False, progress: Progress | None = None) -> tracker.Run:
    """Run experiment ``ref`` and publish its results; reuse a succeeded run of the same code unless ``force``.

    The results and the run's ``succeeded`` status commit in one transaction: a run that fails, runs out of
    disk or is killed publishes none of them (a killed one shows as ``interrupted``).
    """
    events = openlineage.run_events(lake)  # before any work: configured without the extra, the lake stays unchanged
    exp = tracker.get_experiment(lake.db, ref)
    if not force:
        hashes = current_plugin_hashes(exp.spec)
        for run in tracker.runs_of(lake.db, exp.id):
            recorded = {name: rec.get("hash") for name, rec in run.plugins.items()}
            if run.status == "succeeded" and run.code_version == tracker.code_version() and recorded == hashes:
                present = all(
                    lake.db.execute("SELECT 1 FROM artifacts WHERE id = ?", (i,)).fetchone()
                    for i in run.results.values()
                )
                if present:
                    return tracker.Run(**{**run.to_dict(), "reused": True})
    precheck(lake, exp.spec)
    lake.require_writable("experiments execute")
    device = _device(exp.spec)
    with tracker.run_lock(lake.root) as lock:
        run = tracker.new_run(lake.db, exp.id, device=device, lock=lock)
        frozen = sorted({i for ids in exp.spec.inputs.values() for i in ids})
        events.start(f"experiment/{exp.spec.name}", run_id=run.id, inputs=frozen)
        started = time.perf_counter()
        try:
            computed = compute(lake, exp.spec, progress)
            done = _publish(lake, exp, run.id, computed, started)
        except LakeError as exc:
            tracker.finish_run(lake.db, run.id, status="failed", duration=time.perf_counter() - started, error=str(exc))
            events.fail(exc)
            raise
        except Exception as exc:
            tracker.finish_run(
                lake.db,
                run.id,
                status="failed",
                duration=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}",
            )
            events.fail(exc)
            raise
    # after the commit: a lost COMPLETE event is a warning, never lost results
    events.complete([(i, f"exp/{exp.spec.name}/{role}") for role, i in done.results.items()])
    return done


def _publish(lake: Lake, exp: tracker.Experiment, run_id: str, computed: Computed, started: float) -> tracker.Run:
    """Every result and the run's success in one manifest transaction."""
    from artifact_lake.artifact_store.batch import Item, publish_many

    t0 = time.perf_counter()
    tables = conform_results(lake, computed.tables)
    inputs = sorted({i for ids in exp.spec.inputs.values() for i in ids})
    items = []
    for role, table in tables.items():
        meta: dict[str, Any] = {"experiment": exp.id, "role": role}
        if role == "policy":
            from .train import policy_meta

            meta.update(policy_meta(exp.spec))
        items.append(Item(table, RESULT_TYPES[role], name=f"exp/{exp.spec.name}/{role}", inputs=inputs, meta=meta))
    roles = list(tables)
    from .plugins import source_table

    sources = list(computed.code.values())  # each distinct closure is one `source` artifact (content-addressed)
    for c in sources:
        meta = {"plugin": c.plugin, "kind": c.kind, "code_hash": c.hash, "origin": c.origin}
        items.append(Item(source_table(c), "source", name=f"source/{c.plugin}", meta=meta))

    def record_success(published: list[Any]) -> None:
        results = {role: rec.id for role, rec in zip(roles, published[: len(roles)], strict=True)}
        source_ids = [rec.id for rec in published[len(roles) :]]
        used = {c.plugin: c.record() | {"source": sid} for c, sid in zip(sources, source_ids, strict=True)}
        for result in results.values():  # lineage: every result <- the code that made it
            for sid in source_ids:
                lake.db.execute(
                    "INSERT OR IGNORE INTO edges (child, parent, run) SELECT c.pk, p.pk, ? FROM artifacts c, artifacts p"
                    " WHERE c.id = ? AND p.id = ?",
                    (run_id, result, sid),
                )
        computed.timings["publish"] = time.perf_counter() - t0
        tracker.finish_run(
            lake.db,
            run_id,
            status="succeeded",
            duration=time.perf_counter() - started,
            results=results,
            timings=computed.timings,
            plugins=used,
            checks=computed.checks,
            in_tx=True,
        )
        tracker.claim_results(lake.db, run_id, results.values(), inputs)

    publish_many(lake, items, run=run_id, in_transaction=record_success)
    return tracker.get_run(lake.db, run_id)


def create(
    lake: Lake,
    raw: dict[str, Any],
    *,
    name: str | None = None,
    replace: bool = False,
    max_combinations: int | None = None,
) -> tuple[tracker.Experiment, bool]:
    """Check and freeze a raw spec and record the experiment (idempotent).

    A name held by an experiment of a different spec is refused unless ``replace``; a sweep of more than
    ``max_combinations`` (default :data:`spec.MAX_COMBINATIONS`) combinations is refused before it is expanded.
    """
    from .spec import freeze

    spec = freeze(raw, lake, name=name, max_combinations=max_combinations)
    if lake.read_only:  # the spec was checked first: a bad one is named as such, even here
        known = lake.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone()
        if known and lake.db.execute("SELECT 1 FROM experiments WHERE id = ?", (spec.id,)).fetchone():
            return tracker.get_experiment(lake.db, spec.id), False
        lake.require_writable("experiments create")
    return tracker.put_experiment(lake.db, spec, replace=replace)
