"""Orchestration around the kernels: validate inputs, make them contiguous float64, run, wrap results.

Errors are plain ``ValueError`` / ``TypeError`` naming the argument (sim imports nothing from the lake;
experiments re-raises them as its own errors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from . import kernels as _kernels
from .records import EXIT_REASONS, FILL_AT, METRIC_NAMES, MODE, N_METRICS, REMAINDER, SIZING, UNITS, trade_dt

K: Any = _kernels  # numba dispatchers: called with the argument lists they were compiled for
SECONDS_PER_YEAR = 365.25 * 86400


@dataclass(frozen=True)
class Execution:
    """The execution model. Every field has a documented default; see docs/execution-model.md."""

    cash: float = 10_000.0
    """Starting cash."""
    fill: str = "next_open"
    """``next_open``: an order from bar i fills at bar i+1's open; ``close``: at bar i's close."""
    latency_bars: int = 0
    """Extra bars between the signal and the fill."""
    fee_bps: float = 0.0
    """Fee in basis points of notional, at entry and at exit."""
    slippage_bps: float = 0.0
    """Fill price moved against the trader, in basis points."""
    stop_loss: float | None = None
    """Stop as a fraction of the entry price (0.02 = 2 % below a long's entry); None = off."""
    take_profit: float | None = None
    """Take-profit as a fraction of the entry price; None = off."""
    trailing_stop: float | None = None
    """Trailing stop as a fraction below the best price since entry (above, for shorts); None = off."""
    sizing: str = "all_in"
    """``all_in`` (all equity), ``fraction`` (``size`` x equity) or ``notional`` (``size`` in cash)."""
    size: float = 1.0
    """Argument of ``sizing``."""
    units: str = "whole"
    """``whole`` units (floored, as backtesting.py) or ``fractional``."""
    leverage: float = 1.0
    """Cap on position notional as a multiple of equity."""
    participation: float | None = None
    """Largest fill as a fraction of the bar's volume; None = no cap. Full exits are never held back."""
    remainder: str = "cancel"
    """What a capped fill does with the rest: ``cancel`` or ``carry`` (keeps filling on the next bars)."""
    max_hold_bars: int = 0
    """Exit at the close of the bar where a trade has been held this many bars; 0 = off."""
    close_at_end: bool = False
    """Close an open position at the last bar's close (with fees); else it is marked to that close."""
    periods_per_year: float | None = None
    """Bars a year, to annualise Sharpe and Sortino; None = a year of 365.25 days over the bar spacing (24/7)."""

    def __post_init__(self) -> None:
        choices: dict[str, Any] = {"fill": FILL_AT, "sizing": SIZING, "units": UNITS, "remainder": REMAINDER}
        for name, enum in choices.items():
            value = getattr(self, name)
            if value not in enum._fields:
                raise ValueError(f"execution.{name} must be one of {', '.join(enum._fields)}, not {value!r}")
        if not (isinstance(self.cash, (int, float)) and self.cash > 0 and math.isfinite(self.cash)):
            raise ValueError(f"execution.cash must be a positive number, not {self.cash!r}")
        for name in ("latency_bars", "max_hold_bars"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"execution.{name} must be a whole number >= 0, not {v!r}")
        for name in ("fee_bps", "slippage_bps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 10_000):
                raise ValueError(f"execution.{name} must be between 0 and 10000, not {v!r}")
        for name in ("stop_loss", "take_profit", "trailing_stop", "participation"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v and math.isfinite(v)):
                raise ValueError(f"execution.{name} must be a positive fraction or None, not {v!r}")
        if self.stop_loss is not None and self.stop_loss >= 1:
            raise ValueError(
                f"execution.stop_loss must be below 1 (a fraction of the entry price), not {self.stop_loss!r}"
            )
        ppy = self.periods_per_year
        if ppy is not None and not (isinstance(ppy, (int, float)) and ppy > 0 and math.isfinite(ppy)):
            raise ValueError(f"execution.periods_per_year must be a positive number or None, not {ppy!r}")
        if not (isinstance(self.size, (int, float)) and self.size > 0):
            raise ValueError(f"execution.size must be positive, not {self.size!r}")
        if not (isinstance(self.leverage, (int, float)) and self.leverage > 0):
            raise ValueError(f"execution.leverage must be positive, not {self.leverage!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Execution:
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                import difflib

                hint = difflib.get_close_matches(key, sorted(known), n=1)
                raise ValueError(
                    f"unknown execution setting {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def kernel_args(self) -> tuple[Any, ...]:
        """The execution arguments of :func:`sim.kernels.simulate_nb`, in order (after ``mode``)."""

        def opt(v: float | None) -> float:
            return np.nan if v is None else float(v)

        return (
            float(self.cash),
            getattr(FILL_AT, self.fill),
            int(self.latency_bars),
            self.fee_bps / 10_000.0,
            self.slippage_bps / 10_000.0,
            opt(self.stop_loss),
            opt(self.take_profit),
            opt(self.trailing_stop),
            getattr(SIZING, self.sizing),
            float(self.size),
            getattr(UNITS, self.units),
            float(self.leverage),
            opt(self.participation),
            getattr(REMAINDER, self.remainder),
            int(self.max_hold_bars),
            bool(self.close_at_end),
        )


@dataclass(frozen=True)
class Bars:
    """Validated per-bar arrays of one instrument (contiguous float64; ts in int64 microseconds)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def slice(self, start: int, stop: int) -> Bars:
        """Bars ``start`` up to (not including) ``stop``."""
        return Bars(*(getattr(self, f)[start:stop] for f in ("ts", "open", "high", "low", "close", "volume")))

    @classmethod
    def from_arrays(
        cls,
        ts: Any,
        open: Any,
        high: Any,
        low: Any,
        close: Any,
        volume: Any | None = None,  # noqa: A002
    ) -> Bars:
        t = np.ascontiguousarray(ts)
        if t.dtype.kind == "M":
            t = t.astype("datetime64[us]").astype(np.int64)
        if t.ndim != 1 or t.dtype.kind not in "iu":
            raise TypeError("ts must be a 1-d array of integer microseconds or datetime64")
        t = t.astype(np.int64, copy=False)
        n = t.shape[0]
        out = {}
        for name, arr in (("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)):
            if arr is None:
                a = np.full(n, np.inf)
            else:
                a = np.ascontiguousarray(arr, dtype=np.float64)
            if a.ndim != 1 or a.shape[0] != n:
                raise ValueError(f"{name} has {a.shape[0] if a.ndim == 1 else a.shape} values but ts has {n}")
            bad = ~np.isfinite(a) if name != "volume" else np.isnan(a)
            if name != "volume":
                bad |= a <= 0
            else:
                bad |= a < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}[{i}] is {float(a[i])!r}: prices must be finite and > 0, volume >= 0")
            out[name] = a
        if n and np.any(np.diff(t) <= 0):
            i = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
            raise ValueError(f"ts must strictly increase: ts[{i}] = {t[i]} follows {t[i - 1]}")
        return cls(t, out["open"], out["high"], out["low"], out["close"], out["volume"])

    @classmethod
    def from_table(cls, table: Any) -> Bars:
        """From a pyarrow Table or polars DataFrame with ts, open, high, low, close[, volume] of one symbol."""
        if type(table).__module__.split(".")[0] == "polars":
            table = table.to_arrow()
        missing = [c for c in ("ts", "open", "high", "low", "close") if c not in table.column_names]
        if missing:
            raise ValueError(f"table lacks column(s) {', '.join(missing)}")
        import pyarrow as pa

        table = table.combine_chunks()  # one buffer per column: numpy views instead of copies per chunk

        def col(name: str) -> np.ndarray:
            arr = table.column(name).chunk(0) if table.column(name).num_chunks else pa.array([], pa.float64())
            out: np.ndarray = arr.to_numpy(zero_copy_only=False)
            return out

        ts_col = table.column("ts")
        if pa.types.is_timestamp(ts_col.type):
            ts_col = ts_col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        # an Array's to_numpy (a ChunkedArray's goes through pandas: 0.4 s of imports in a fresh process)
        ts = ts_col.chunk(0).to_numpy() if ts_col.num_chunks else np.zeros(0, dtype=np.int64)
        volume = col("volume") if "volume" in table.column_names else None
        return cls.from_arrays(ts, col("open"), col("high"), col("low"), col("close"), volume)


@dataclass(frozen=True)
class Result:
    """One backtest: trades (record array), per-bar equity, cash and position, summary metrics."""

    trades: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    position: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    status: int = 0

    def trade_rows(self, ts: np.ndarray) -> dict[str, np.ndarray]:
        """Trades as columns with timestamps and reason names, for tables."""
        t = self.trades
        exit_idx = t["exit_idx"]
        exit_ts = np.where(exit_idx >= 0, ts[np.clip(exit_idx, 0, None)], np.iinfo(np.int64).min)
        return {
            "entry_ts": ts[t["entry_idx"]],
            "exit_ts": exit_ts,
            "entry_idx": t["entry_idx"],
            "exit_idx": exit_idx,
            "side": t["side"],
            "size": t["size"],
            "entry_price": t["entry_price"],
            "exit_price": t["exit_price"],
            "fees": t["fees"],
            "pnl": t["pnl"],
            "return": t["ret"],
            "exit_reason": np.array([EXIT_REASONS[r] for r in t["exit_reason"]], dtype=object),
            "mae": t["mae"],
            "mfe": t["mfe"],
        }


def warm() -> None:
    """Start numba in this process (its type registries and the first cached kernel): the first kernel call
    of a process pays this once (~0.3 s; more where SciPy is installed, which numba imports to look for BLAS),
    so callers that time their phases call it first."""
    K.rolling_mean_nb(np.ones(2), 1)


def bar_seconds(ts: np.ndarray) -> float:
    """The typical bar length: the median gap over the first 10,001 bars (cheap on 10M bars, and robust
    to weekends and holes)."""
    if ts.shape[0] < 2:
        return float("nan")
    return float(np.median(np.diff(ts[:10_001]))) / 1e6


def summarize(
    raw: np.ndarray, ts: np.ndarray, cash0: float, periods_per_year: float | None = None, *, step: float | None = None
) -> dict[str, float]:
    """Kernel metrics plus the annualised ones (CAGR, Sharpe, Sortino, drawdown duration in days).

    Sharpe and Sortino scale by ``periods_per_year`` (a trading calendar's bars a year, given by the caller),
    else by calendar time over the bar spacing; CAGR and drawdown days always use calendar time. ``step`` is
    :func:`bar_seconds` of ``ts`` when the caller has it (a grid summarizes many runs over the same bars)."""
    m = dict(zip(METRIC_NAMES, (float(v) for v in raw), strict=True))
    step = bar_seconds(ts) if step is None else step
    ppy = periods_per_year if periods_per_year is not None else (SECONDS_PER_YEAR / step if step > 0 else math.nan)
    years = (ts[-1] - ts[0]) / 1e6 / SECONDS_PER_YEAR if ts.shape[0] > 1 else 0.0
    final = m["final_equity"]
    m["cagr"] = float("nan")
    if years > 0 and final > 0:
        try:
            m["cagr"] = math.exp(math.log(final / cash0) / years) - 1.0
        except OverflowError:  # a gain over minutes compounds past any float
            m["cagr"] = float("inf")
    std, down = m["std_return"], m["downside_std"]
    m["sharpe"] = m["mean_return"] / std * math.sqrt(ppy) if std and std > 0 else float("nan")
    m["sortino"] = m["mean_return"] / down * math.sqrt(ppy) if down and down > 0 else float("nan")
    step_days = step / 86400 if ts.shape[0] > 1 else 0.0
    m["max_drawdown_days"] = m["max_drawdown_bars"] * step_days
    return m


def _target_array(target: Any, n: int) -> np.ndarray:
    t = np.ascontiguousarray(target, dtype=np.float64)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"target has {t.shape} values but there are {n} bars")
    return t


def run(
    bars: Bars,
    target: Any,
    execution: Execution | None = None,
    *,
    mode: str = "signal",
    stop_loss: Any = None,
    take_profit: Any = None,
) -> Result:
    """Backtest one instrument. ``target`` per bar (NaN = no order): in ``signal`` mode +1 / -1 / 0 mean go
    long / short / flat with the sizing rule; in ``target`` mode a value in [-1, 1] is the wanted position
    as a fraction of equity. ``stop_loss``/``take_profit`` per bar (NaN: none) give each order's trade its
    own stops, instead of the execution's.

    Example::

        bars = Bars.from_table(table)
        res = run(bars, sma_cross(bars.close, 10, 20), Execution(fee_bps=20))
        res.metrics["total_return"]
    """
    ex = execution or Execution()
    if mode not in MODE._fields:
        raise ValueError(f"mode must be one of {', '.join(MODE._fields)}, not {mode!r}")
    n = len(bars)
    tgt = _target_array(target, n)
    order_bars, bad = K.order_bars_nb(tgt, getattr(MODE, mode))
    if bad >= 0:
        allowed = "-1, 0, 1 or NaN" if mode == "signal" else "in [-1, 1] or NaN"
        raise ValueError(f"in {mode} mode target values must be {allowed}; bar {bad} has {tgt[bad]!r}")
    order_sl = np.empty(0) if stop_loss is None else _target_array(stop_loss, n)
    order_tp = np.empty(0) if take_profit is None else _target_array(take_profit, n)
    if (stop_loss is None) != (take_profit is None):
        order_sl = order_sl if stop_loss is not None else np.full(n, np.nan if ex.stop_loss is None else ex.stop_loss)
        order_tp = (
            order_tp if take_profit is not None else np.full(n, np.nan if ex.take_profit is None else ex.take_profit)
        )
    trades = np.zeros(order_bars.size + 1, dtype=trade_dt)  # every trade is opened by an order
    equity = np.empty(n)
    cash = np.empty(n)
    position = np.empty(n)
    raw = np.empty(N_METRICS)
    n_tr, status = K.simulate_nb(
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        tgt,
        order_bars,
        getattr(MODE, mode),
        *ex.kernel_args(),
        trades,
        equity,
        cash,
        position,
        raw,
        True,
        order_sl,
        order_tp,
    )
    metrics = summarize(raw, bars.ts, ex.cash, ex.periods_per_year)
    return Result(trades[:n_tr].copy(), equity, cash, position, metrics, int(status))


def run_grid(
    bars: Bars, fasts: Any, slows: Any, execution: Execution | None = None, *, direction: str = "long"
) -> list[dict[str, float]]:
    """Metrics of every SMA-cross (fast, slow) pair in one parallel kernel call; each equals :func:`run` alone."""
    ex = execution or Execution()
    f = np.ascontiguousarray(fasts, dtype=np.int64)
    s = np.ascontiguousarray(slows, dtype=np.int64)
    if f.shape != s.shape or f.ndim != 1:
        raise ValueError("fasts and slows must be 1-d and of one length")
    if (f < 1).any() or (s < 1).any():
        raise ValueError("SMA windows must be >= 1")
    windows, rows = np.unique(np.concatenate([f, s]), return_inverse=True)
    results = []
    # the shared averages take windows x bars x 8 bytes: done in slices of combinations to bound memory
    per_slice = max(1, int(256e6 // max(8 * len(bars), 1)))
    for a in range(0, len(f), per_slice):
        b = min(a + per_slice, len(f))
        fr, sr = rows[a:b], rows[len(f) + a : len(f) + b]
        used, local = np.unique(np.concatenate([fr, sr]), return_inverse=True)
        means = K.rolling_means_nb(bars.close, windows[used])
        raw, status = K.sma_grid_nb(
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            bars.volume,
            means,
            local[: len(fr)],
            local[len(fr) :],
            _direction(direction),
            *ex.kernel_args(),
        )
        ppy, step = ex.periods_per_year, bar_seconds(bars.ts)
        results += [
            summarize(raw[j], bars.ts, ex.cash, ppy, step=step) | {"status": int(status[j])} for j in range(len(fr))
        ]
    return results


def run_many(
    bars: Bars, targets: Any, execution: Execution | None = None, *, mode: str = "signal"
) -> list[dict[str, float]]:
    """Metrics of one backtest per row of ``targets`` (combinations x bars), in parallel and without per-bar
    outputs; row ``j``'s metrics (and ``status``) equal :func:`run` of that row alone.

    A row with a value the mode does not allow raises ``ValueError`` naming the row and the bar."""
    ex = execution or Execution()
    if mode not in MODE._fields:
        raise ValueError(f"mode must be one of {', '.join(MODE._fields)}, not {mode!r}")
    t = np.ascontiguousarray(targets, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != len(bars):
        raise ValueError(f"targets must be (rows, {len(bars)} bars), not {t.shape}")
    raw, status, bad = K.targets_grid_nb(
        bars.open, bars.high, bars.low, bars.close, bars.volume, t, getattr(MODE, mode), *ex.kernel_args()
    )
    wrong = np.flatnonzero(bad >= 0)
    if wrong.size:
        j = int(wrong[0])
        allowed = "-1, 0, 1 or NaN" if mode == "signal" else "in [-1, 1] or NaN"
        raise ValueError(f"row {j}: in {mode} mode target values must be {allowed}; bar {bad[j]} has {t[j, bad[j]]!r}")
    ppy, step = ex.periods_per_year, bar_seconds(bars.ts)
    return [summarize(raw[j], bars.ts, ex.cash, ppy, step=step) | {"status": int(status[j])} for j in range(t.shape[0])]


def _direction(direction: str) -> int:
    codes = {"long": 1, "short": -1, "both": 0}
    if direction not in codes:
        raise ValueError(f"direction must be long, short or both, not {direction!r}")
    return codes[direction]
