"""Alert replay: every alert becomes an order, several symbols in one call, and a portfolio over them.

Each alert (ts, symbol, side) enters at the open of the first bar strictly after its ts, plus
``latency_bars``. From there its path is its own: a take-profit ladder (levels and the fraction of the
position each closes), a stop-loss, a trailing stop and a maximum holding time, with the simulator's gap
and tie rules (a stop inside a bar wins over a take-profit in the same bar; a gap fills at the open). The
rest is closed at the last bar's close (``end``).

The portfolio then takes the alerts in order of entry: each gets ``size`` (a fraction of equity, or a
notional), limited by the cash left, unless ``max_concurrent`` positions are already open (``capacity``).
Exits of a position count towards cash and capacity from the first entry strictly after them.
Fees and slippage apply to every fill.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numba import njit, prange

from .records import EXIT, UNITS

FILLED, NO_DATA, CAPACITY, NO_CASH = 0, 1, 2, 3
ALERT_STATUS = ("filled", "no_data", "capacity", "no_cash")


@dataclass(frozen=True)
class AlertPolicy:
    """How every alert is traded and how the portfolio sizes them. All fields have defaults."""

    take_profit: tuple[float, ...] = ()
    """Ladder of take-profit levels as fractions of the entry price, e.g. (0.01, 0.02)."""
    take_profit_sizes: tuple[float, ...] = ()
    """Fraction of the position each level closes (default: equal parts of the whole)."""
    stop_loss: float | None = None
    """Stop as a fraction of the entry price; None = off."""
    trailing_stop: float | None = None
    """Trailing stop as a fraction from the best price since entry; None = off."""
    max_hold_bars: int = 0
    """Exit at the close of the bar where the alert has been held this many bars; 0 = off."""
    latency_bars: int = 0
    """Bars between the first bar after the alert and the entry."""
    cash: float = 10_000.0
    """Starting cash of the portfolio."""
    sizing: str = "fraction"
    """``fraction`` (``size`` x equity at entry) or ``notional`` (``size`` in cash)."""
    size: float = 0.1
    """Argument of ``sizing``."""
    max_concurrent: int = 10
    """Most positions open at once; an alert beyond it is skipped (``capacity``)."""
    units: str = "fractional"
    """``fractional`` or ``whole`` units."""
    fee_bps: float = 0.0
    """Fee in basis points of notional on every fill."""
    slippage_bps: float = 0.0
    """Fill price moved against the trader, in basis points."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tp = tuple(float(x) for x in self.take_profit)
        object.__setattr__(self, "take_profit", tp)
        if any(not (x > 0 and math.isfinite(x)) for x in tp) or list(tp) != sorted(tp):
            raise ValueError(f"take_profit must be increasing positive fractions, not {self.take_profit!r}")
        sizes = tuple(float(x) for x in self.take_profit_sizes) or tuple(1.0 / len(tp) for _ in tp)
        object.__setattr__(self, "take_profit_sizes", sizes)
        if len(sizes) != len(tp):
            raise ValueError("take_profit_sizes needs one fraction per take_profit level")
        if any(x <= 0 for x in sizes) or sum(sizes) > 1 + 1e-9:
            raise ValueError(f"take_profit_sizes must be positive and sum to at most 1, not {sizes!r}")
        for name in ("stop_loss", "trailing_stop"):
            v = getattr(self, name)
            if v is not None and not (0 < v < 1):
                raise ValueError(f"{name} must be a fraction in (0, 1) or None, not {v!r}")
        for name in ("max_hold_bars", "latency_bars"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {v!r}")
        if self.sizing not in ("fraction", "notional"):
            raise ValueError(f"sizing must be fraction or notional, not {self.sizing!r}")
        if self.units not in ("fractional", "whole"):
            raise ValueError(f"units must be fractional or whole, not {self.units!r}")
        if not (self.size > 0 and self.cash > 0):
            raise ValueError("size and cash must be positive")
        if not (isinstance(self.max_concurrent, int) and self.max_concurrent >= 1):
            raise ValueError(f"max_concurrent must be a whole number >= 1, not {self.max_concurrent!r}")
        if self.extra:
            raise ValueError(f"unknown alert setting(s): {', '.join(sorted(self.extra))}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertPolicy:
        known = set(cls.__dataclass_fields__) - {"extra"}
        extra = {k: v for k, v in d.items() if k not in known}
        given: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**given, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


@njit(cache=True, parallel=True)
def alert_paths_nb(
    ts,
    open_,
    high,
    low,
    close,
    offsets,
    a_ts,
    a_sym,
    a_side,
    latency,
    tp_px,
    tp_frac,
    stop_loss,
    trailing,
    max_hold,
    slip_rate,
):
    """Per alert, independently: entry bar and price, then exit legs (bar, price, fraction), reason, excursions."""
    n = a_ts.shape[0]
    k = tp_px.shape[0]
    legs_bar = np.full((n, k + 1), -1, dtype=np.int64)
    legs_px = np.zeros((n, k + 1))
    legs_frac = np.zeros((n, k + 1))
    n_legs = np.zeros(n, dtype=np.int64)
    entry_bar = np.full(n, -1, dtype=np.int64)
    entry_px = np.full(n, np.nan)
    reason = np.zeros(n, dtype=np.int64)
    mae = np.zeros(n)
    mfe = np.zeros(n)
    for a in prange(n):
        s = a_sym[a]
        lo_i = offsets[s]
        hi_i = offsets[s + 1]
        e = lo_i + np.searchsorted(ts[lo_i:hi_i], a_ts[a], side="right") + latency
        if e >= hi_i:
            continue
        side = a_side[a]
        entry = open_[e] * (1.0 + side * slip_rate)
        entry_bar[a] = e
        entry_px[a] = entry
        remaining = 1.0
        peak = entry
        best = entry
        worst = entry
        nxt = 0
        m = 0
        done = False
        for j in range(e, hi_i):
            o = open_[j]
            stop = np.nan
            why = EXIT.stop_loss
            if not math.isnan(stop_loss):
                stop = entry * (1.0 - side * stop_loss)
            if not math.isnan(trailing):
                tr = peak * (1.0 - side * trailing)
                if math.isnan(stop) or (side > 0 and tr > stop) or (side < 0 and tr < stop):
                    stop = tr
                    why = EXIT.trailing_stop
            px = np.nan
            if j > e and not math.isnan(stop) and (o <= stop if side > 0 else o >= stop):
                px = o
            if math.isnan(px) and j > e:
                while nxt < k and (o >= entry * (1 + tp_px[nxt]) if side > 0 else o <= entry * (1 - tp_px[nxt])):
                    legs_bar[a, m] = j
                    legs_px[a, m] = o * (1.0 - side * slip_rate)
                    legs_frac[a, m] = min(tp_frac[nxt], remaining)
                    remaining -= legs_frac[a, m]
                    m += 1
                    nxt += 1
                    best = o if side > 0 else min(best, o)
            if (
                math.isnan(px)
                and remaining > 1e-12
                and not math.isnan(stop)
                and (low[j] <= stop if side > 0 else high[j] >= stop)
            ):
                px = stop  # inside the bar, the stop before any take-profit
            if not math.isnan(px):
                if side > 0:
                    worst = min(worst, px)
                else:
                    worst = max(worst, px)
                legs_bar[a, m] = j
                legs_px[a, m] = px * (1.0 - side * slip_rate)
                legs_frac[a, m] = remaining
                m += 1
                remaining = 0.0
                reason[a] = why
                done = True
                break
            while (
                nxt < k
                and remaining > 1e-12
                and (high[j] >= entry * (1 + tp_px[nxt]) if side > 0 else low[j] <= entry * (1 - tp_px[nxt]))
            ):
                lvl = entry * (1 + side * tp_px[nxt])
                legs_bar[a, m] = j
                legs_px[a, m] = lvl * (1.0 - side * slip_rate)
                legs_frac[a, m] = min(tp_frac[nxt], remaining)
                remaining -= legs_frac[a, m]
                m += 1
                nxt += 1
                if side > 0:
                    best = max(best, lvl)
                else:
                    best = min(best, lvl)
            if remaining <= 1e-12:
                reason[a] = EXIT.take_profit
                done = True
                break
            if side > 0:
                best = max(best, high[j])
                worst = min(worst, low[j])
                peak = max(peak, high[j])
            else:
                best = min(best, low[j])
                worst = max(worst, high[j])
                peak = min(peak, low[j])
            if max_hold > 0 and j - e >= max_hold:
                legs_bar[a, m] = j
                legs_px[a, m] = close[j] * (1.0 - side * slip_rate)
                legs_frac[a, m] = remaining
                m += 1
                remaining = 0.0
                reason[a] = EXIT.max_hold
                done = True
                break
        if not done:
            legs_bar[a, m] = hi_i - 1
            legs_px[a, m] = close[hi_i - 1] * (1.0 - side * slip_rate)
            legs_frac[a, m] = remaining
            m += 1
            reason[a] = EXIT.end
        n_legs[a] = m
        if side > 0:
            mae[a] = min(worst / entry - 1.0, 0.0)
            mfe[a] = max(best / entry - 1.0, 0.0)
        else:
            mae[a] = min(1.0 - worst / entry, 0.0)
            mfe[a] = max(1.0 - best / entry, 0.0)
    return entry_bar, entry_px, legs_bar, legs_px, legs_frac, n_legs, reason, mae, mfe


@njit(cache=True)
def _mark_nb(ts, close, lo_i, hi_i, t):
    """Close of the last bar of a symbol that opened strictly before ``t``."""
    j = lo_i + np.searchsorted(ts[lo_i:hi_i], t, side="left") - 1
    return close[max(j, lo_i)]


@njit(cache=True)
def alert_portfolio_nb(
    ts,
    close,
    offsets,
    a_sym,
    a_side,
    order,
    entry_bar,
    entry_px,
    legs_bar,
    legs_px,
    legs_frac,
    n_legs,
    cash0,
    sizing_fraction,
    size,
    max_concurrent,
    units_mode,
    fee_rate,
):
    """Sizes and admits alerts in entry order. Returns per-alert units, status, fees and pnl."""
    n = a_sym.shape[0]
    units = np.zeros(n)
    status = np.full(n, 1, dtype=np.int64)  # NO_DATA unless admitted or refused below
    fees = np.zeros(n)
    pnl = np.zeros(n)
    cash = cash0
    open_ids = np.empty(n, dtype=np.int64)
    leg_ptr = np.zeros(n, dtype=np.int64)
    remaining = np.zeros(n)
    n_open = 0
    for q in range(order.shape[0] + 1):
        last = q == order.shape[0]
        a = order[q] if not last else -1
        t = ts[entry_bar[a]] if not last else np.iinfo(np.int64).max
        # release legs that happened strictly before this entry
        w = 0
        for p_i in range(n_open):
            p = open_ids[p_i]
            while leg_ptr[p] < n_legs[p] and ts[legs_bar[p, leg_ptr[p]]] < t:
                li = leg_ptr[p]
                u = units[p] * legs_frac[p, li]
                px = legs_px[p, li]
                fee = u * px * fee_rate
                cash += a_side[p] * u * px - fee
                fees[p] += fee
                pnl[p] += a_side[p] * u * (px - entry_px[p]) - fee
                remaining[p] -= legs_frac[p, li]
                leg_ptr[p] += 1
            if leg_ptr[p] < n_legs[p]:
                open_ids[w] = p
                w += 1
        n_open = w
        if last:
            break
        if n_open >= max_concurrent:
            status[a] = 2
            continue
        equity = cash
        for p_i in range(n_open):
            p = open_ids[p_i]
            s = a_sym[p]
            equity += a_side[p] * units[p] * remaining[p] * _mark_nb(ts, close, offsets[s], offsets[s + 1], t)
        notional = size * equity if sizing_fraction else size
        notional = min(notional, cash / (1.0 + fee_rate))
        u = notional / entry_px[a] if notional > 0 else 0.0
        if units_mode == UNITS.whole:
            u = math.floor(u)
        if u <= 0:
            status[a] = 3
            continue
        fee = u * entry_px[a] * fee_rate
        cash -= a_side[a] * u * entry_px[a] + fee
        units[a] = u
        fees[a] = fee
        pnl[a] = -fee
        remaining[a] = 1.0
        status[a] = 0
        open_ids[n_open] = a
        n_open += 1
    return units, status, fees, pnl


@njit(cache=True)
def alert_curve_nb(
    ts,
    close,
    tl_index,
    n_timeline,
    a_sym,
    a_side,
    offsets,
    entry_bar,
    entry_px,
    legs_bar,
    legs_px,
    legs_frac,
    n_legs,
    units,
    fees_rate,
    cash0,
):
    """Portfolio equity, cash and open count on the union timeline of all symbols' bars."""
    cash_delta = np.zeros(n_timeline + 1)
    mtm = np.zeros(n_timeline)
    n_open = np.zeros(n_timeline, dtype=np.int64)
    for a in range(a_sym.shape[0]):
        if units[a] <= 0:
            continue
        side = a_side[a]
        u = units[a]
        e = entry_bar[a]
        cash_delta[tl_index[e]] -= side * u * entry_px[a] + u * entry_px[a] * fees_rate
        rem = 1.0
        li = 0
        end_bar = legs_bar[a, n_legs[a] - 1]
        s_end = offsets[a_sym[a] + 1]
        for b in range(e, end_bar + 1):
            while li < n_legs[a] and legs_bar[a, li] == b:
                uu = u * legs_frac[a, li]
                cash_delta[tl_index[b]] += side * uu * legs_px[a, li] - uu * legs_px[a, li] * fees_rate
                rem -= legs_frac[a, li]
                li += 1
            stop_tl = tl_index[b + 1] if (b < end_bar and b + 1 < s_end) else tl_index[b] + 1
            for j in range(tl_index[b], stop_tl):
                if rem > 1e-12:
                    mtm[j] += side * u * rem * close[b]
                    n_open[j] += 1
    cash = np.empty(n_timeline)
    c = cash0
    for j in range(n_timeline):
        c += cash_delta[j]
        cash[j] = c
    return cash + mtm, cash, n_open


def alert_replay(
    bars: dict[str, Any],
    alerts_ts: Any,
    alerts_symbol: Any,
    alerts_side: Any,
    policy: AlertPolicy | None = None,
) -> dict[str, Any]:
    """Replay alerts over several symbols' bars (``{symbol: sim.Bars}``).

    Returns ``alerts`` (per-alert columns in input order), ``timeline``/``equity``/``cash``/``open`` (the
    portfolio on the union of all bar times) and ``metrics``.
    """
    from .records import EXIT_REASONS

    pol = policy or AlertPolicy()
    symbols = list(bars)
    if not symbols:
        raise ValueError("alert_replay needs the bars of at least one symbol")
    index = {s: i for i, s in enumerate(symbols)}
    a_ts = np.ascontiguousarray(alerts_ts, dtype=np.int64)
    n = a_ts.shape[0]
    sym_names = [str(s) for s in alerts_symbol]
    if len(sym_names) != n or len(alerts_side) != n:
        raise ValueError("alerts_ts, alerts_symbol and alerts_side must have one length")
    unknown = sorted({s for s in sym_names if s not in index})
    a_sym = np.array([index.get(s, -1) for s in sym_names], dtype=np.int64)
    sides = {"buy": 1.0, "long": 1.0, "sell": -1.0, "short": -1.0, 1: 1.0, -1: -1.0}
    try:
        a_side = np.array([sides[s] for s in alerts_side], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"alert side {exc.args[0]!r} is not buy or sell") from None
    offsets = np.zeros(len(symbols) + 1, dtype=np.int64)
    for i, s in enumerate(symbols):
        offsets[i + 1] = offsets[i] + len(bars[s])
    cat = {f: np.concatenate([getattr(bars[s], f) for s in symbols]) for f in ("ts", "open", "high", "low", "close")}
    valid = a_sym >= 0
    slip = pol.slippage_bps / 10_000
    fee = pol.fee_bps / 10_000
    opt = lambda v: np.nan if v is None else float(v)  # noqa: E731
    entry_bar, entry_px, legs_bar, legs_px, legs_frac, n_legs, reason, mae, mfe = alert_paths_nb(
        cat["ts"],
        cat["open"],
        cat["high"],
        cat["low"],
        cat["close"],
        offsets,
        a_ts,
        np.where(valid, a_sym, 0),
        a_side,
        pol.latency_bars,
        np.array(pol.take_profit, dtype=np.float64),
        np.array(pol.take_profit_sizes, dtype=np.float64),
        opt(pol.stop_loss),
        opt(pol.trailing_stop),
        pol.max_hold_bars,
        slip,
    )
    entry_bar[~valid] = -1
    has = entry_bar >= 0
    entry_ts = np.where(has, cat["ts"][np.clip(entry_bar, 0, None)], np.iinfo(np.int64).max)
    order = np.flatnonzero(has)[np.argsort(entry_ts[has], kind="stable")]
    units, status, fees, pnl = alert_portfolio_nb(
        cat["ts"],
        cat["close"],
        offsets,
        np.where(valid, a_sym, 0),
        a_side,
        order,
        entry_bar,
        entry_px,
        legs_bar,
        legs_px,
        legs_frac,
        n_legs,
        float(pol.cash),
        pol.sizing == "fraction",
        float(pol.size),
        pol.max_concurrent,
        getattr(UNITS, pol.units),
        fee,
    )
    timeline = np.unique(cat["ts"])
    tl_index = np.searchsorted(timeline, cat["ts"])
    equity, cash, n_open = alert_curve_nb(
        cat["ts"],
        cat["close"],
        tl_index,
        timeline.shape[0],
        np.where(valid, a_sym, 0),
        a_side,
        offsets,
        entry_bar,
        entry_px,
        legs_bar,
        legs_px,
        legs_frac,
        n_legs,
        units,
        fee,
        float(pol.cash),
    )
    last = np.where(has, legs_bar[np.arange(n), np.clip(n_legs - 1, 0, None)], -1)
    exit_px = np.where(has, (legs_px * legs_frac).sum(axis=1) / np.maximum(legs_frac.sum(axis=1), 1e-300), np.nan)
    gross = np.where(has, a_side * (exit_px / np.where(has, entry_px, 1.0) - 1.0), np.nan)
    net = np.where(has, gross - fee * (1.0 + exit_px / np.where(has, entry_px, 1.0)), np.nan)
    exit_ts = np.where(has, cat["ts"][np.clip(last, 0, None)], np.iinfo(np.int64).min)
    rows = {
        "alert": np.arange(n),
        "symbol": np.array(sym_names, dtype=object),
        "side": a_side.astype(np.int8),
        "status": np.array([ALERT_STATUS[s] for s in status], dtype=object),
        "entry_ts": np.where(has, entry_ts, np.iinfo(np.int64).min),
        "entry_price": entry_px,
        "exit_ts": exit_ts,
        "exit_price": exit_px,
        "exit_reason": np.array([EXIT_REASONS[r] if h else "" for r, h in zip(reason, has, strict=True)], dtype=object),
        "return": gross,
        "net_return": net,
        "mae": np.where(has, mae, np.nan),
        "mfe": np.where(has, mfe, np.nan),
        "bars_to_exit": np.where(has, last - entry_bar, -1),
        "seconds_to_exit": np.where(has, (exit_ts - entry_ts) / 1e6, np.nan),
        "units": units,
        "fees": fees,
        "pnl": pnl,
    }
    rows["status"][~valid] = "no_data"
    metrics = _portfolio_metrics(timeline, equity, n_open, pol.cash, rows)
    return {
        "alerts": rows,
        "timeline": timeline,
        "equity": equity,
        "cash": cash,
        "open": n_open,
        "metrics": metrics,
        "unknown_symbols": unknown,
    }


def _portfolio_metrics(
    timeline: np.ndarray, equity: np.ndarray, n_open: np.ndarray, cash0: float, rows: dict[str, Any]
) -> dict[str, float]:
    from .engine import SECONDS_PER_YEAR

    filled = rows["status"] == "filled"
    pnl = rows["pnl"][filled]
    rets = equity[1:] / equity[:-1] - 1.0 if equity.shape[0] > 1 else np.zeros(0)
    peak = np.maximum.accumulate(np.concatenate([[cash0], equity]))[1:]
    dd = equity / peak - 1.0 if equity.size else np.zeros(0)
    step = float(np.median(np.diff(timeline))) / 1e6 if timeline.shape[0] > 1 else float("nan")
    ppy = SECONDS_PER_YEAR / step if step and step > 0 else float("nan")
    std = float(rets.std(ddof=1)) if rets.size > 1 else float("nan")
    final = float(equity[-1]) if equity.size else cash0
    gains, losses = pnl[pnl > 0].sum(), -pnl[pnl <= 0].sum()
    return {
        "final_equity": final,
        "total_return": final / cash0 - 1.0,
        "n_trades": float(filled.sum()),
        "n_alerts": float(len(filled)),
        "win_rate": float((pnl > 0).mean()) if pnl.size else float("nan"),
        "profit_factor": float(gains / losses) if losses > 0 else (float("inf") if gains > 0 else float("nan")),
        "max_drawdown": float(dd.min()) if dd.size else 0.0,
        "sharpe": float(rets.mean() / std * math.sqrt(ppy)) if std and std > 0 else float("nan"),
        "exposure": float((n_open > 0).mean()) if n_open.size else 0.0,
        "mean_net_return": float(np.nanmean(rows["net_return"][filled])) if filled.any() else float("nan"),
    }
