"""Portfolio backtests: bars of several symbols on one time index, one cash account, target weights.

:class:`Panel` holds the bars; :func:`run_portfolio` validates the weights and settings, makes the arrays
contiguous, calls :func:`sim.portfolio_kernels.simulate_portfolio_nb` and wraps its outputs in a
:class:`PortfolioResult`. See docs/portfolio.md for the rules (missing bars, order of fills, caps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import portfolio_kernels as _pk
from .engine import Bars, Execution, summarize
from .records import FILL_AT, N_METRICS, UNITS

PK: Any = _pk  # numba dispatchers
fill_dt = _pk.fill_dt
FILL_REASONS = ("rebalance", "bankrupt")
PORTFOLIO_METRIC_NAMES = (
    "avg_holdings",
    "avg_gross_exposure",
    "avg_net_exposure",
    "rebalances",
    "skipped_orders",
    "n_fills",
)
_NOT_APPLICABLE = ("stop_loss", "take_profit", "trailing_stop", "sizing", "size", "remainder", "max_hold_bars")
_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Panel:
    """Bars of several symbols on one shared time index: the union of their timestamps.

    ``open``/``high``/``low``/``close``/``volume`` are (bars, symbols) float64; ``mask[i, j]`` is True where
    symbol j has a real bar at ``ts[i]``. A missing bar (mask False, prices NaN) means: no trading in that
    symbol at that time (an order for it is skipped), and the symbol is valued at its last known close.
    Before its first bar a symbol has no price and cannot be held.
    """

    ts: np.ndarray
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), len(self.symbols))

    def last_close(self) -> np.ndarray:
        """The close carried forward over missing bars (NaN before a symbol's first bar): the valuation price.

        Computed once per panel and shared by every call (a sweep calls its strategy once per combination):
        the array is read-only; copy it to change it."""
        cached = self.__dict__.get("_last_close")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        c = np.where(self.mask, self.close, np.nan)
        idx = np.where(self.mask, np.arange(c.shape[0])[:, None], 0)
        np.maximum.accumulate(idx, axis=0, out=idx)
        out: np.ndarray = c[idx, np.arange(c.shape[1])]
        out.flags.writeable = False
        self.__dict__["_last_close"] = out  # a frozen dataclass: its __dict__ still takes a cache
        return out

    def slice(self, start: int, stop: int) -> Panel:
        """Bars ``start`` up to (not including) ``stop`` of every symbol."""
        rows = slice(start, stop)
        arrays = {f: np.ascontiguousarray(getattr(self, f)[rows]) for f in _FIELDS}
        return Panel(self.ts[rows], self.symbols, mask=np.ascontiguousarray(self.mask[rows]), **arrays)

    def bars(self, symbol: str) -> Bars:
        """One symbol's real bars (missing ones left out)."""
        j = self.symbols.index(symbol)
        rows = self.mask[:, j]
        return Bars(self.ts[rows], *(np.ascontiguousarray(getattr(self, f)[rows, j]) for f in _FIELDS))

    @classmethod
    def from_bars(cls, bars: Mapping[str, Bars]) -> Panel:
        """From one :class:`Bars` per symbol (symbols sorted by name)."""
        if not bars:
            raise ValueError("a panel needs at least one symbol")
        symbols = tuple(sorted(bars))
        ts = np.unique(np.concatenate([bars[s].ts for s in symbols]))
        n, m = ts.shape[0], len(symbols)
        arrays = {f: np.full((n, m), np.nan) for f in _FIELDS}
        mask = np.zeros((n, m), dtype=np.bool_)
        for j, s in enumerate(symbols):
            rows = np.searchsorted(ts, bars[s].ts)
            mask[rows, j] = True
            for f in _FIELDS:
                arrays[f][rows, j] = getattr(bars[s], f)
        return cls(ts, symbols, mask=mask, **arrays)

    @classmethod
    def from_table(cls, table: Any) -> Panel:
        """From a pyarrow Table (or polars DataFrame) with ts, symbol, open, high, low, close[, volume], long
        format (one row per symbol and bar). Each symbol's rows are validated as :meth:`Bars.from_table` does."""
        if type(table).__module__.split(".")[0] == "polars":
            table = table.to_arrow()
        if "symbol" not in table.column_names:
            raise ValueError("table lacks column symbol")
        import pyarrow as pa
        import pyarrow.compute as pc

        syms = table.column("symbol").cast(pa.string())
        out: dict[str, Bars] = {}
        for s in pc.unique(syms).to_pylist():
            if s is None:
                raise ValueError("symbol has null values")
            part = table.filter(pc.equal(syms, s))
            part = part.take(pc.sort_indices(part.column("ts")))
            try:
                out[s] = Bars.from_table(part)
            except ValueError as exc:
                raise ValueError(f"symbol {s!r}: {exc}") from exc
        return cls.from_bars(out)


@dataclass(frozen=True)
class PortfolioResult:
    """One portfolio backtest. ``positions`` is (bars, symbols): units held after each bar."""

    panel: Panel
    equity: np.ndarray
    cash: np.ndarray
    positions: np.ndarray
    gross_exposure: np.ndarray
    net_exposure: np.ndarray
    fills: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    status: int = 0

    def position_changes(self) -> dict[str, np.ndarray]:
        """Positions in long format: one row per (bar, symbol) where the position changed."""
        p = self.positions
        prev = np.vstack([np.zeros((1, p.shape[1])), p[:-1]])
        rows, cols = np.nonzero(p != prev)
        return {
            "bar": rows.astype(np.int64),
            "ts": self.panel.ts[rows],
            "symbol": np.array([self.panel.symbols[c] for c in cols], dtype=object),
            "position": p[rows, cols],
        }

    def fill_rows(self) -> dict[str, np.ndarray]:
        """Fills as columns with timestamps and symbol names, for tables."""
        f = self.fills
        return {
            "ts": self.panel.ts[f["bar"]],
            "bar": f["bar"],
            "symbol": np.array([self.panel.symbols[j] for j in f["symbol"]], dtype=object),
            "size": f["size"],
            "price": f["price"],
            "fees": f["fees"],
            "reason": np.array([FILL_REASONS[r] for r in f["reason"]], dtype=object),
        }


def _weights(panel: Panel, weights: Any, direction: str) -> tuple[np.ndarray, np.ndarray, int]:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != panel.shape:
        raise ValueError(f"weights have shape {w.shape}, the panel {panel.shape} (bars, symbols)")
    orders = np.empty(w.shape[0], dtype=np.bool_)  # rows holding an order: the kernel reads only those
    rows, i, j, why = PK.scan_weights_nb(w, direction == "long", orders)  # one pass, no temporary arrays
    if why == 1:
        raise ValueError(f"weights[{i}, {j}] is infinite (NaN leaves a symbol as it is)")
    if why == 2:
        raise ValueError(f"weights[{i}, {j}] = {w[i, j]} is short but direction is 'long'")
    return w, orders, int(rows)


def run_portfolio(
    panel: Panel,
    weights: Any,
    execution: Execution | None = None,
    *,
    direction: str = "long",
    min_trade: float = 0.0,
) -> PortfolioResult:
    """Backtest target ``weights`` ((bars, symbols); NaN = leave as is) over ``panel`` with one cash account.

    From ``execution`` the portfolio uses cash, fill, latency_bars, fee_bps, slippage_bps, units, leverage
    (the gross-exposure cap), participation and periods_per_year; the stop, sizing, remainder and holding
    settings are per-trade rules and must stay at their defaults. ``direction``: ``long`` (weights >= 0) or
    ``both``. ``min_trade``: skip changes smaller than this fraction of equity (no churn)."""
    ex = execution or Execution()
    defaults = {f.name: f.default for f in fields(Execution)}
    for name in _NOT_APPLICABLE:
        if getattr(ex, name) != defaults[name]:
            raise ValueError(f"execution.{name} does not apply to portfolio backtests (docs/portfolio.md)")
    if ex.close_at_end:
        raise ValueError("execution.close_at_end does not apply to portfolio backtests (docs/portfolio.md)")
    if direction not in ("long", "both"):
        raise ValueError(f"direction must be long or both, not {direction!r}")
    if not (isinstance(min_trade, (int, float)) and 0 <= min_trade < 1 and math.isfinite(min_trade)):
        raise ValueError(f"min_trade must be a fraction of equity in [0, 1), not {min_trade!r}")
    w, orders, rows_with_orders = _weights(panel, weights, direction)
    n, m = panel.shape
    if n == 0:
        raise ValueError("the panel has no bars")
    # one fill per symbol and rebalance, + bankrupt; not zeroed: the kernel writes every field of every fill it
    # counts, and only those are kept
    fills = np.empty(rows_with_orders * m + m, dtype=fill_dt)
    equity, cash, gross, net = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    positions = np.empty((n, m))
    raw = np.empty(N_METRICS)
    extra = np.empty(PK.N_EXTRA)
    n_f, status = PK.simulate_portfolio_nb(
        np.ascontiguousarray(panel.open),
        np.ascontiguousarray(panel.close),
        np.ascontiguousarray(panel.volume),  # read only where there is a bar
        np.ascontiguousarray(panel.mask),
        w,
        orders,
        float(ex.cash),
        getattr(FILL_AT, ex.fill),
        int(ex.latency_bars),
        ex.fee_bps / 10_000.0,
        ex.slippage_bps / 10_000.0,
        getattr(UNITS, ex.units),
        float(ex.leverage),
        float(min_trade),
        np.nan if ex.participation is None else float(ex.participation),
        equity,
        cash,
        positions,
        gross,
        net,
        fills,
        raw,
        extra,
    )
    metrics = summarize(raw, panel.ts, ex.cash, ex.periods_per_year)
    metrics |= dict(zip(PORTFOLIO_METRIC_NAMES, (float(v) for v in extra), strict=True))
    # the fills buffer is sized for a fill per symbol at every rebalance; keep a view unless most of it is unused
    kept = fills[:n_f] if 2 * n_f >= fills.shape[0] else fills[:n_f].copy()
    return PortfolioResult(panel, equity, cash, positions, gross, net, kept, metrics, int(status))
