"""Numba kernels of the backtest engine: numpy in, numpy out, no Python objects, no IO.

Bar i is processed in this order (the execution model of docs/execution-model.md):

1. orders due at bar i fill at its open (``fill_at = next_open``), slippage against the trader;
2. an open trade's stop-loss / trailing stop / take-profit are checked against the bar's open (gaps fill
   at the open) and then its low/high (fills at the level); when both a stop and the take-profit lie inside
   the bar the stop wins (conservative: the path inside the bar is unknown);
3. the trade's excursions and trailing peak take in the bar's high and low;
4. a trade held ``max_hold`` bars exits at the bar's close;
5. the bar's signal is queued for bar ``i + 1 + latency`` (next_open) or ``i + latency`` (close); orders due
   at the close fill now (``fill_at = close``);
6. equity = cash + position x close is recorded, and the streaming metrics are updated.

The loop does this only on event bars (an order due, a remainder carried, a trade with stops, the end of
a holding time, the last bar with ``close_at_end``). Between events cash and position cannot move: those
bars only record equity and feed the statistics, in tight loops, and flat stretches take O(1) for the
statistics. The results are exactly those of running every bar through the six steps (tested).

Speed notes, measured (docs/benchmarks.md): every array passed to a non-inlined numba helper costs an
atomic reference count pair, so the order path's helpers take few arrays; event bars are scattered, so the
prices of the next orders' bars are prefetched; the held-bar loop lives in its own function, because
inside the big loop LLVM spilled its sums to the stack.

Float round-off: every sum runs in bar order, so results are bit-identical for the same inputs on any
machine, and a sweep combination equals the same run alone (both call :func:`simulate_nb`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.extending import intrinsic

from .records import EXIT, FILL_AT, MODE, N_METRICS, REMAINDER, SIZING, STATUS, UNITS, trade_dt

_EPS = 2.220446049250313e-16  # backtesting.py sizes "all in" as 1 - epsilon of equity
_TINY = 1e-12
_PREFETCH_ORDERS = 4

# Indices into the per-trade state vector ``ts`` (one float64 array keeps the kernel signature small).
# _LOW/_HIGH: the lowest and highest price the trade has seen (its fills and every bar it lived through whole);
# _SL/_TP: the stop-loss and take-profit fractions the trade's opening order carried (NaN: none)
_SIDE, _ENTRY_IDX, _IN_UNITS, _IN_VALUE, _OUT_UNITS, _OUT_VALUE, _FEES, _LOW, _HIGH, _PEAK, _SL, _TP = range(12)
N_TRADE_STATE = 12


@intrinsic
def _prefetch_intrinsic(typingctx, arr, idx):
    """Ask the CPU to start fetching ``arr[idx]`` into cache; no effect on results. Bars between events
    are skipped (flat spans never read prices), so an event bar's prices would otherwise come from DRAM."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        name = "llvm.prefetch.p0" if getattr(ptr.type, "is_opaque", False) else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])  # read, keep, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


def _prefetch_py(arr: np.ndarray, idx: int) -> None:
    """Pure Python (NUMBA_DISABLE_JIT=1): a hint has nothing to do."""


_prefetch: Callable[[Any, Any], None] = (
    _prefetch_py
    if getattr(numba_config, "DISABLE_JIT", False)
    else cast(Callable[[Any, Any], None], _prefetch_intrinsic)
)


@njit(cache=True)
def _close_record_nb(trades, n_tr, ts, exit_idx, reason, record):
    """Write trade ``n_tr``; returns its pnl. The excursions come from the prices the trade has seen."""
    side = ts[_SIDE]
    entry_price = ts[_IN_VALUE] / ts[_IN_UNITS]
    pnl = side * (ts[_OUT_VALUE] - ts[_IN_VALUE]) - ts[_FEES]
    if record and n_tr < trades.shape[0]:  # numba does not check bounds; the caller sizes for every order
        lo = ts[_LOW]
        hi = ts[_HIGH]
        t = trades[n_tr]
        t["entry_idx"] = np.int64(ts[_ENTRY_IDX])
        t["exit_idx"] = exit_idx
        t["side"] = np.int32(side)
        t["size"] = ts[_IN_UNITS]
        t["entry_price"] = entry_price
        t["exit_price"] = ts[_OUT_VALUE] / ts[_OUT_UNITS] if ts[_OUT_UNITS] > 0 else np.nan
        t["fees"] = ts[_FEES]
        t["pnl"] = pnl
        t["ret"] = pnl / ts[_IN_VALUE]
        t["exit_reason"] = np.int32(reason)
        if side > 0:
            t["mae"] = min(lo / entry_price - 1.0, 0.0)
            t["mfe"] = max(hi / entry_price - 1.0, 0.0)
        else:
            t["mae"] = min(1.0 - hi / entry_price, 0.0)
            t["mfe"] = max(1.0 - lo / entry_price, 0.0)
    return pnl


@njit(cache=True)
def _fill_nb(delta, raw_price, i, cash, pos, ts, fee_rate, slip_rate, bk):
    """Trade ``delta`` units at ``raw_price`` (slipped against the trader). Never crosses zero.

    Returns (cash, pos, closed): ``closed`` is True when the fill flattened the position. The book ``bk``
    accumulates the traded notional and the fees.
    """
    sign = 1.0 if delta > 0 else -1.0
    price = raw_price * (1.0 + sign * slip_rate)
    units = abs(delta)
    fee = units * price * fee_rate
    cash -= delta * price + fee
    bk[_NOTIONAL] += units * price
    bk[_FEESUM] += fee
    if pos == 0.0:
        ts[_SIDE] = sign
        ts[_ENTRY_IDX] = i
        ts[_IN_UNITS] = units
        ts[_IN_VALUE] = units * price
        ts[_OUT_UNITS] = 0.0
        ts[_OUT_VALUE] = 0.0
        ts[_FEES] = fee
        ts[_LOW] = price
        ts[_HIGH] = price
        ts[_PEAK] = price
    else:
        ts[_LOW] = min(ts[_LOW], price)
        ts[_HIGH] = max(ts[_HIGH], price)
        if sign == ts[_SIDE]:
            ts[_IN_UNITS] += units
            ts[_IN_VALUE] += units * price
        else:
            ts[_OUT_UNITS] += units
            ts[_OUT_VALUE] += units * price
        ts[_FEES] += fee
    pos += delta
    closed = False
    if abs(pos) <= _TINY * max(1.0, ts[_IN_UNITS]):
        pos = 0.0
        closed = True
    return cash, pos, closed


@njit(cache=True)
def _want_units_nb(mode, tgt, equity, price, fee_rate, sizing, size, units_mode, leverage):
    """Units wanted after an order with target ``tgt`` (signal: -1/0/1; target: fraction of equity)."""
    if mode == MODE.signal:
        if tgt == 0.0:
            return 0.0
        side = 1.0 if tgt > 0 else -1.0
        if sizing == SIZING.all_in:
            num = equity * leverage * (1.0 - _EPS)
            den = price + ((1.0 - _EPS) * price * fee_rate) / (1.0 - _EPS)
        elif sizing == SIZING.fraction:
            num = equity * min(size, leverage)
            den = price * (1.0 + fee_rate)
        else:
            num = min(size, equity * leverage)
            den = price * (1.0 + fee_rate)
        units = num / den
    else:
        side = 1.0 if tgt >= 0 else -1.0
        frac = min(abs(tgt), leverage)
        units = frac * equity / (price * (1.0 + fee_rate))
    if units_mode == UNITS.whole:
        units = math.floor(units)
    if units <= 0.0 or equity <= 0.0:
        return 0.0
    return side * units


# Indices into the book vector ``bk``: cash, position, units still wanted (NaN: none), and trade stats.
# _OSL/_OTP: the stops of the order being filled
_CASH, _POS, _CARRY, _NTR, _NCLOSED, _WINS, _GWIN, _GLOSS, _NOTIONAL, _FEESUM, _EXPOSED, _OSL, _OTP = range(13)
N_BOOK = 13


@njit(cache=True)
def _exit_nb(bk, ts, trades, raw, i, reason, fee_rate, slip_rate, record):
    """Close the whole position at ``raw`` (slipped) and record the trade."""
    bk[_CASH], bk[_POS], _ = _fill_nb(-bk[_POS], raw, i, bk[_CASH], bk[_POS], ts, fee_rate, slip_rate, bk)
    _book_close_nb(bk, ts, trades, i, reason, record)


@njit(cache=True)
def _book_close_nb(bk, ts, trades, i, reason, record):
    pnl = _close_record_nb(trades, int(bk[_NTR]), ts, i, reason, record)
    bk[_EXPOSED] += i - ts[_ENTRY_IDX]  # bars closed with the position open
    bk[_NTR] += 1
    bk[_NCLOSED] += 1
    bk[_CARRY] = np.nan
    if pnl > 0:
        bk[_WINS] += 1
        bk[_GWIN] += pnl
    else:
        bk[_GLOSS] -= pnl


@njit(cache=True)
def _execute_nb(
    bk, ts, trades, raw, i, volume_i, queue, q_head,
    mode, fee_rate, slip_rate, sizing, size, units_mode, leverage, participation, remainder, record,
):  # fmt: skip
    """Fill the orders due at bar ``i`` at price ``raw``; returns the new queue head. ``queue`` rows:
    (due bar, target, stop-loss, take-profit)."""
    while q_head < queue.shape[0] and queue[q_head, 0] <= i:
        tgt = queue[q_head, 1]
        bk[_OSL] = queue[q_head, 2]
        bk[_OTP] = queue[q_head, 3]
        q_head += 1
        bk[_CARRY] = np.nan  # a new order replaces what an older one still wanted
        pos = bk[_POS]
        if mode == MODE.signal:
            if pos == 0.0 and tgt == 0.0:
                continue
            if pos != 0.0 and tgt != 0.0 and (pos > 0) == (tgt > 0):
                continue  # already on that side
        if pos != 0.0 and (mode == MODE.signal or tgt == 0.0 or (tgt > 0) != (pos > 0)):
            _exit_nb(bk, ts, trades, raw, i, EXIT.signal, fee_rate, slip_rate, record)
        sign = 1.0 if tgt > 0 else -1.0
        equity = bk[_CASH] + bk[_POS] * raw
        bk[_CARRY] = _want_units_nb(
            mode, tgt, equity, raw * (1.0 + sign * slip_rate), fee_rate, sizing, size, units_mode, leverage
        )
    want = bk[_CARRY]
    if math.isnan(want):
        return q_head
    pos = bk[_POS]
    delta = want - pos
    if abs(delta) > _TINY * max(1.0, abs(want)):
        if not math.isnan(participation):
            cap = participation * volume_i
            if units_mode == UNITS.whole:
                cap = math.floor(cap)
            if abs(delta) > cap:
                delta = cap if delta > 0 else -cap
        if pos != 0.0 and (pos + delta) * pos < 0:
            delta = -pos  # one fill never crosses zero
        if delta != 0.0:
            bk[_CASH], bk[_POS], closed = _fill_nb(delta, raw, i, bk[_CASH], pos, ts, fee_rate, slip_rate, bk)
            if pos == 0.0:  # this fill opened a trade: it keeps the stops of the order that opened it
                ts[_SL] = bk[_OSL]
                ts[_TP] = bk[_OTP]
            if closed:
                _book_close_nb(bk, ts, trades, i, EXIT.signal, record)
                bk[_CARRY] = want if want != 0.0 else np.nan
    if math.isnan(bk[_CARRY]):
        return q_head
    if abs(bk[_CARRY] - bk[_POS]) <= _TINY * max(1.0, abs(bk[_CARRY])) or remainder == REMAINDER.cancel:
        bk[_CARRY] = np.nan
    return q_head


@njit(cache=True)
def _protect_nb(bk, ts, trades, i, open_i, high_i, low_i, trailing, fee_rate, slip_rate, record):
    """Stop-loss (the trade's own), trailing stop and take-profit (the trade's own) inside bar ``i``."""
    stop_loss = ts[_SL]
    take_profit = ts[_TP]
    side = ts[_SIDE]
    entry = ts[_IN_VALUE] / ts[_IN_UNITS]
    stop = np.nan
    stop_reason = EXIT.stop_loss
    if not math.isnan(stop_loss):
        stop = entry * (1.0 - side * stop_loss)
    if not math.isnan(trailing):
        trail = ts[_PEAK] * (1.0 - side * trailing)
        if math.isnan(stop) or (side > 0 and trail > stop) or (side < 0 and trail < stop):
            stop = trail
            stop_reason = EXIT.trailing_stop
    take = entry * (1.0 + side * take_profit) if not math.isnan(take_profit) else np.nan
    px = np.nan
    reason = EXIT.open
    if not math.isnan(stop) and (open_i <= stop if side > 0 else open_i >= stop):
        px, reason = open_i, stop_reason  # gapped through the stop: filled at the open
    elif not math.isnan(take) and (open_i >= take if side > 0 else open_i <= take):
        px, reason = open_i, EXIT.take_profit
    elif not math.isnan(stop) and (low_i <= stop if side > 0 else high_i >= stop):
        px, reason = stop, stop_reason  # checked before the take-profit: the conservative tie rule
    elif not math.isnan(take) and (high_i >= take if side > 0 else low_i <= take):
        px, reason = take, EXIT.take_profit
    if math.isnan(px):
        return
    ts[_LOW] = min(ts[_LOW], px)
    ts[_HIGH] = max(ts[_HIGH], px)
    _exit_nb(bk, ts, trades, px, i, reason, fee_rate, slip_rate, record)


@njit(cache=True)
def _drawdown_nb(e, peak_eq, max_dd, dd_bars, max_dd_bars):
    """One bar's equity ``e`` into the drawdown: its peak, the worst drawdown, and how long (in bars) the
    longest stretch below a peak lasted. Selects, not branches (new highs come and go unpredictably), and
    a division only on a new worst drawdown."""
    dd_bars = 0 if e > peak_eq else dd_bars + 1
    peak_eq = max(peak_eq, e)
    if e < peak_eq * (1.0 + max_dd):
        max_dd = e / peak_eq - 1.0
    under = dd_bars if e < peak_eq else 0
    max_dd_bars = max(under, max_dd_bars)
    return peak_eq, max_dd, dd_bars, max_dd_bars


@njit(cache=True)
def _bar_stats_nb(e, prev_eq, r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars):
    """One held bar's equity ``e`` into the return sums and the drawdown (``prev_eq`` > 0: the bar before
    kept the position, or is an event that did). No branch but the rare new worst drawdown."""
    r = e / prev_eq - 1.0
    r_sum += r
    r_sq += r * r
    down_sq += r * r if r < 0 else 0.0
    peak_eq, max_dd, dd_bars, max_dd_bars = _drawdown_nb(e, peak_eq, max_dd, dd_bars, max_dd_bars)
    return r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars


@njit(cache=True)
def _held_span_nb(
    close, low, high, start, stop, cash, pos, record, equity_out, cash_out, position_out,
    prev_eq, peak_eq, max_dd, dd_bars, max_dd_bars, r_sum, r_sq, down_sq, lo, hi,
):  # fmt: skip
    """Bars ``start..stop-1`` with a position that nothing changes: equity moves with the close. Stops
    before a bar whose equity falls to 0 or below (bankruptcy is an event); returns that bar (or ``stop``),
    the statistics, and (with ``record``) the trade's lowest low and highest high, for its excursions.

    A function of its own: inside the big loop LLVM spilled the sums to the stack. The loop runs over
    slices from 0, so LLVM can drop numba's negative-index fix-ups from every access."""
    c = close[start:stop]
    m = c.shape[0]
    j = 0
    if record:
        lw = low[start:stop]
        hg = high[start:stop]
        eo = equity_out[start:stop]
        co = cash_out[start:stop]
        po = position_out[start:stop]
        while j < m:
            e = cash + pos * c[j]
            if e <= 0.0:
                break
            eo[j] = e
            co[j] = cash
            po[j] = pos
            lo = min(lo, lw[j])
            hi = max(hi, hg[j])
            r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars = _bar_stats_nb(
                e, prev_eq, r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars
            )
            prev_eq = e
            j += 1
    else:
        while j < m:
            e = cash + pos * c[j]
            if e <= 0.0:
                break
            r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars = _bar_stats_nb(
                e, prev_eq, r_sum, r_sq, down_sq, peak_eq, max_dd, dd_bars, max_dd_bars
            )
            prev_eq = e
            j += 1
    return start + j, prev_eq, peak_eq, max_dd, dd_bars, max_dd_bars, r_sum, r_sq, down_sq, lo, hi


@njit(cache=True)
def _flat_stats_nb(bars, r_n, dd_bars, max_dd_bars, under):
    """The statistics after ``bars`` more bars at an unchanged equity: returns of exactly 0 (they add
    nothing to the sums), the drawdown's duration goes on when equity is below its peak."""
    r_n += bars
    dd_bars += bars
    if under and dd_bars > max_dd_bars:
        max_dd_bars = dd_bars
    return r_n, dd_bars, max_dd_bars


@njit(cache=True)
def order_bars_nb(target, mode):
    """The bars that carry an order (target not NaN), in order, and the first bar whose value the mode does
    not allow (-1 if none): signal mode takes -1, 0 and 1; target mode takes [-1, 1]."""
    n = target.shape[0]
    idx = np.empty(n, dtype=np.int64)  # only the pages written are ever touched
    k = 0
    bad = -1
    for i in range(n):
        v = target[i]
        if not math.isnan(v):
            idx[k] = i
            k += 1
            if bad < 0 and ((v != 0.0 and v != 1.0 and v != -1.0) if mode == MODE.signal else not abs(v) <= 1.0):
                bad = i
    return idx[:k].copy(), bad


@njit(cache=True)
def simulate_nb(
    open_, high, low, close, volume, target, order_bars,
    mode, cash0, fill_at, latency, fee_rate, slip_rate,
    stop_loss, take_profit, trailing, sizing, size, units_mode, leverage,
    participation, remainder, max_hold, close_at_end,
    trades, equity_out, cash_out, position_out, metrics, record, order_sl, order_tp,
):  # fmt: skip
    """Run one backtest over one instrument. Returns (number of trades, status).

    ``target``: per-bar order (NaN = none), see :class:`sim.records.Mode`; ``order_bars``: the bars where it
    is not NaN (:func:`order_bars_nb`). Stop levels are fractions of the entry price (NaN = off);
    ``participation`` is the largest fill as a fraction of the bar's volume (NaN = no cap); ``max_hold`` in
    bars (0 = off). ``trades``, ``equity_out``, ``cash_out`` and ``position_out`` are written only with
    ``record``. ``order_sl``/``order_tp`` (per bar, or empty to use the scalars) are the stops the order of
    that bar gives the trade it opens.

    The loop runs from event to event. A bar is an event when an order is due, a remainder is carried, the
    open trade has stops to check, its holding time ends, or it is the last bar with ``close_at_end``. The
    bars between two events are quiet: cash and position do not move, so they only record equity and feed
    the statistics, in tight loops (flat spans in O(1) for the statistics).
    """
    n = close.shape[0]
    bk = np.zeros(N_BOOK)
    bk[_CASH] = cash0
    bk[_CARRY] = np.nan
    ts = np.zeros(N_TRADE_STATE)
    per_order = order_sl.shape[0] > 0
    status = STATUS.ok
    has_trail = not math.isnan(trailing)
    at_open = fill_at == FILL_AT.next_open
    delay = 1 + latency if at_open else latency
    # every order is known up front: the queue holds them all, due at their bar + delay (first in first out)
    q_tail = order_bars.shape[0]
    queue = np.empty((q_tail, 4))  # due bar (exact in a float), target, stop-loss, take-profit
    for k in range(q_tail):
        if k + _PREFETCH_ORDERS < q_tail:
            _prefetch(target, order_bars[k + _PREFETCH_ORDERS])
        b = order_bars[k]
        queue[k, 0] = b + delay
        queue[k, 1] = target[b]
        queue[k, 2] = order_sl[b] if per_order else stop_loss
        queue[k, 3] = order_tp[b] if per_order else take_profit
    q_head = 0
    pf = 0  # the next order whose bar's prices are to be prefetched
    # Hot state lives in locals: bk and ts may alias the outputs, so LLVM would reload them after every store.
    # They are synced around the helpers, which run only on fills and exits.
    cash = cash0
    pos = 0.0
    carrying = False
    t_entry = 0
    t_peak = 0.0
    t_stops = False  # the open trade has a stop-loss, take-profit or trailing stop
    eq = cash0
    # return and drawdown statistics, streamed in bar order (plain sums: no division on a loop-carried chain)
    prev_eq = cash0
    peak_eq = cash0
    max_dd = 0.0
    dd_bars = 0
    max_dd_bars = 0
    r_n = 0
    r_sum = 0.0
    r_sq = 0.0
    down_sq = 0.0
    i = 0
    while i < n:
        # -- the event bar i --------------------------------------------------------------------------------
        # The fills at the open and at the close are written out twice on purpose: folding them into one
        # helper that returns the loop's state made a 10M-bar run 10 % slower (measured), inlined or not.
        if at_open and (carrying or (q_head < q_tail and queue[q_head, 0] <= i)):
            bk[_CASH] = cash
            bk[_POS] = pos
            ts[_PEAK] = t_peak
            q_head = _execute_nb(
                bk,
                ts,
                trades,
                open_[i],
                i,
                volume[i],
                queue,
                q_head,
                mode,
                fee_rate,
                slip_rate,
                sizing,
                size,
                units_mode,
                leverage,
                participation,
                remainder,
                record,
            )
            cash = bk[_CASH]
            pos = bk[_POS]
            carrying = not math.isnan(bk[_CARRY])
            t_entry = int(ts[_ENTRY_IDX])
            t_peak = ts[_PEAK]
            t_stops = has_trail or not (math.isnan(ts[_SL]) and math.isnan(ts[_TP]))
        if pos != 0.0 and (at_open or t_entry != i):
            # the trade lives through this bar (entered before it, or at its open)
            if t_stops:
                bk[_CASH] = cash
                bk[_POS] = pos
                ts[_PEAK] = t_peak
                _protect_nb(bk, ts, trades, i, open_[i], high[i], low[i], trailing, fee_rate, slip_rate, record)
                cash = bk[_CASH]
                pos = bk[_POS]
                carrying = carrying and pos != 0.0
                if pos != 0.0 and has_trail:
                    t_peak = max(t_peak, high[i]) if pos > 0 else min(t_peak, low[i])
            if pos != 0.0 and record:  # the trade lives through the whole bar: its excursions see it
                ts[_LOW] = min(ts[_LOW], low[i])
                ts[_HIGH] = max(ts[_HIGH], high[i])
            if pos != 0.0 and max_hold > 0 and i - t_entry >= max_hold:
                bk[_CASH] = cash
                bk[_POS] = pos
                _exit_nb(bk, ts, trades, close[i], i, EXIT.max_hold, fee_rate, slip_rate, record)
                cash = bk[_CASH]
                pos = 0.0
                carrying = False
        if not at_open and (carrying or (q_head < q_tail and queue[q_head, 0] <= i)):
            bk[_CASH] = cash
            bk[_POS] = pos
            ts[_PEAK] = t_peak
            q_head = _execute_nb(
                bk,
                ts,
                trades,
                close[i],
                i,
                volume[i],
                queue,
                q_head,
                mode,
                fee_rate,
                slip_rate,
                sizing,
                size,
                units_mode,
                leverage,
                participation,
                remainder,
                record,
            )
            cash = bk[_CASH]
            pos = bk[_POS]
            carrying = not math.isnan(bk[_CARRY])
            t_entry = int(ts[_ENTRY_IDX])
            t_peak = ts[_PEAK]
            t_stops = has_trail or not (math.isnan(ts[_SL]) and math.isnan(ts[_TP]))
        eq = cash + pos * close[i]
        if pos != 0.0 and ((close_at_end and i == n - 1) or eq <= 0.0):
            why = EXIT.bankrupt if eq <= 0.0 else EXIT.end
            bk[_CASH] = cash
            bk[_POS] = pos
            _exit_nb(bk, ts, trades, close[i], i, why, fee_rate, slip_rate, record)
            cash = bk[_CASH]
            pos = 0.0
            eq = cash
            if why == EXIT.bankrupt:
                status = STATUS.bankrupt
        if record:
            equity_out[i] = eq
            cash_out[i] = cash
            position_out[i] = pos
        if i > 0:
            r_n += 1
            if eq != prev_eq:  # a flat bar's return is exactly 0: it adds nothing to the sums, skip the division
                r = eq / prev_eq - 1.0 if prev_eq > 0 else 0.0
                r_sum += r
                r_sq += r * r
                if r < 0:
                    down_sq += r * r
        prev_eq = eq
        peak_eq, max_dd, dd_bars, max_dd_bars = _drawdown_nb(eq, peak_eq, max_dd, dd_bars, max_dd_bars)
        i += 1
        # -- the quiet bars up to the next event ----------------------------------------------------------
        if status == STATUS.bankrupt:
            stop = n  # nothing fills after a bankruptcy: the rest of the run is flat at this equity
        elif carrying or (pos != 0.0 and t_stops):
            continue  # every bar is an event
        else:
            stop = int(queue[q_head, 0]) if q_head < q_tail else n
            if pos != 0.0:
                if max_hold > 0:
                    stop = min(stop, t_entry + max_hold)
                if close_at_end:
                    stop = min(stop, n - 1)
            stop = min(stop, n)
            if stop <= i:
                continue
            # fetch the prices of the next few orders' bars: a flat span is too short to hide DRAM latency
            pf = max(pf, q_head)
            while pf < q_tail and pf < q_head + _PREFETCH_ORDERS:
                b = int(queue[pf, 0])
                if b < n:
                    _prefetch(open_, b)
                    _prefetch(close, b)
                    _prefetch(high, b)
                    _prefetch(low, b)
                    _prefetch(volume, b)
                pf += 1
        if pos != 0.0:
            # cash and position hold; equity moves with the close. A bar whose equity falls to 0 or below is
            # an event (bankruptcy): the span ends before it.
            k, prev_eq, peak_eq, max_dd, dd_bars, max_dd_bars, r_sum, r_sq, down_sq, lo, hi = _held_span_nb(
                close, low, high, i, stop, cash, pos, record, equity_out, cash_out, position_out,
                prev_eq, peak_eq, max_dd, dd_bars, max_dd_bars, r_sum, r_sq, down_sq, ts[_LOW], ts[_HIGH],
            )  # fmt: skip
            ts[_LOW] = lo
            ts[_HIGH] = hi
            r_n += k - i
            eq = prev_eq
            i = k
        else:
            if record:  # slice fills are memsets; index loops are not (numba's negative-index checks)
                equity_out[i:stop] = cash
                cash_out[i:stop] = cash
                position_out[i:stop] = 0.0
            r_n, dd_bars, max_dd_bars = _flat_stats_nb(stop - i, r_n, dd_bars, max_dd_bars, eq < peak_eq)
            i = stop
    bk[_CASH] = cash
    bk[_POS] = pos
    n_tr = int(bk[_NTR])
    if pos != 0.0:
        # still open: recorded as "open", marked to the last close without an exit fee
        bk[_EXPOSED] += n - ts[_ENTRY_IDX]
        if record and n_tr < trades.shape[0]:
            ts[_OUT_VALUE] += abs(pos) * close[n - 1]
            ts[_OUT_UNITS] += abs(pos)
            _close_record_nb(trades, n_tr, ts, -1, EXIT.open, record)
            trades[n_tr]["exit_price"] = np.nan
        n_tr += 1
    n_closed = bk[_NCLOSED]
    metrics[0] = eq
    metrics[1] = eq / cash0 - 1.0
    metrics[2] = n_closed  # closed trades, as backtesting.py's "# Trades"; the open one is counted apart
    metrics[13] = 1.0 if pos != 0.0 else 0.0
    metrics[3] = bk[_WINS] / n_closed if n_closed > 0 else np.nan
    metrics[4] = bk[_GWIN] / bk[_GLOSS] if bk[_GLOSS] > 0 else (np.inf if bk[_GWIN] > 0 else np.nan)
    metrics[7] = bk[_EXPOSED] / n if n > 0 else 0.0
    metrics[8] = bk[_NOTIONAL] / cash0
    metrics[12] = bk[_FEESUM]
    mean = r_sum / r_n if r_n > 0 else np.nan
    metrics[5] = max_dd
    metrics[6] = max_dd_bars
    metrics[9] = mean
    metrics[10] = math.sqrt(max(r_sq - r_sum * mean, 0.0) / (r_n - 1)) if r_n > 1 else np.nan
    metrics[11] = math.sqrt(down_sq / r_n) if r_n > 0 else np.nan
    return n_tr, status


# -- indicators and signal generators ---------------------------------------------------------------


@njit(cache=True)
def rolling_mean_nb(x, window):
    """Trailing mean over ``window`` bars (NaN before), with a compensated running sum so long series
    do not drift (the same technique as pandas' rolling mean)."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    s = 0.0
    c = 0.0
    for i in range(n):
        y = x[i] - c
        t = s + y
        c = (t - s) - y
        s = t
        if i >= window:
            y = -x[i - window] - c
            t = s + y
            c = (t - s) - y
            s = t
        if i >= window - 1:
            out[i] = s / window
    return out


@njit(cache=True)
def cross_targets_nb(fast, slow, direction):
    """Orders from crossings of ``fast`` over ``slow`` (strict, as backtesting.py's ``crossover``).

    direction 1 long only (up: +1, down: 0), -1 short only (down: -1, up: 0), 0 both (up: +1, down: -1).
    """
    n = fast.shape[0]
    out = np.full(n, np.nan)
    for i in range(1, n):
        a0 = fast[i - 1]
        b0 = slow[i - 1]
        a1 = fast[i]
        b1 = slow[i]
        if a0 < b0 and a1 > b1:
            out[i] = 1.0 if direction >= 0 else 0.0
        elif a0 > b0 and a1 < b1:
            out[i] = 0.0 if direction == 1 else -1.0
    return out


@njit(cache=True)
def rsi_nb(close, period):
    """Wilder's RSI (NaN for the first ``period`` bars)."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        d = close[i] - close[i - 1]
        if d > 0:
            gain += d
        else:
            loss -= d
    gain /= period
    loss /= period
    out[period] = 100.0 if loss == 0 else 100.0 - 100.0 / (1.0 + gain / loss)
    for i in range(period + 1, n):
        d = close[i] - close[i - 1]
        g = d if d > 0 else 0.0
        lo = -d if d < 0 else 0.0
        gain = (gain * (period - 1) + g) / period
        loss = (loss * (period - 1) + lo) / period
        out[i] = 100.0 if loss == 0 else 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@njit(cache=True)
def threshold_targets_nb(value, lower, upper, direction):
    """Orders when ``value`` crosses below ``lower`` (oversold: long) or above ``upper`` (overbought)."""
    n = value.shape[0]
    out = np.full(n, np.nan)
    for i in range(1, n):
        a = value[i - 1]
        b = value[i]
        if math.isnan(a) or math.isnan(b):
            continue
        if a >= lower and b < lower:
            out[i] = 1.0 if direction >= 0 else 0.0
        elif a <= upper and b > upper:
            out[i] = 0.0 if direction == 1 else -1.0
    return out


@njit(cache=True)
def breakout_targets_nb(high, low, close, window, direction):
    """Orders when the close breaks the highest high (up) or lowest low (down) of the previous ``window`` bars."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    for i in range(window, n):
        hi = high[i - window]
        lo = low[i - window]
        for k in range(i - window + 1, i):
            hi = max(hi, high[k])
            lo = min(lo, low[k])
        if close[i] > hi:
            out[i] = 1.0 if direction >= 0 else 0.0
        elif close[i] < lo:
            out[i] = 0.0 if direction == 1 else -1.0
    return out


@njit(cache=True, parallel=True)
def rolling_means_nb(close, windows):
    """One row per window: the moving averages a grid shares, each computed once, in parallel."""
    out = np.empty((windows.shape[0], close.shape[0]))
    for j in prange(windows.shape[0]):
        out[j] = rolling_mean_nb(close, windows[j])
    return out


@njit(cache=True, parallel=True)
def sma_grid_nb(
    open_, high, low, close, volume, means, fast_row, slow_row, direction,
    cash0, fill_at, latency, fee_rate, slip_rate,
    stop_loss, take_profit, trailing, sizing, size, units_mode, leverage,
    participation, remainder, max_hold, close_at_end,
):  # fmt: skip
    """Metrics of every (fast, slow) SMA-cross combination in parallel; ``means`` holds each distinct
    window's average once (``fast_row``/``slow_row`` index it). Each combination runs the same
    :func:`simulate_nb` as a single backtest, so its metrics are identical to running it alone.
    """
    k = fast_row.shape[0]
    out = np.empty((k, N_METRICS))
    status = np.zeros(k, dtype=np.int64)
    none = np.empty(0, dtype=trade_dt)
    empty = np.empty(0)
    for j in prange(k):
        tgt = cross_targets_nb(means[fast_row[j]], means[slow_row[j]], direction)
        _, st = simulate_nb(
            open_,
            high,
            low,
            close,
            volume,
            tgt,
            order_bars_nb(tgt, MODE.signal)[0],
            MODE.signal,
            cash0,
            fill_at,
            latency,
            fee_rate,
            slip_rate,
            stop_loss,
            take_profit,
            trailing,
            sizing,
            size,
            units_mode,
            leverage,
            participation,
            remainder,
            max_hold,
            close_at_end,
            none,
            empty,
            empty,
            empty,
            out[j],
            False,
            empty,
            empty,
        )
        status[j] = st
    return out, status


@njit(cache=True, parallel=True)
def targets_grid_nb(
    open_, high, low, close, volume, targets, mode,
    cash0, fill_at, latency, fee_rate, slip_rate,
    stop_loss, take_profit, trailing, sizing, size, units_mode, leverage,
    participation, remainder, max_hold, close_at_end,
):  # fmt: skip
    """Metrics of every row of ``targets`` (one combination's per-bar orders each) in parallel, without
    per-bar outputs. Returns (metrics, status, bad): ``bad[j]`` is the first bar of row ``j`` whose value the
    mode does not allow (-1 if none; that row is not simulated). Each row runs the same :func:`simulate_nb`
    as a single backtest, so its metrics are identical to running it alone, whatever the rows beside it.
    """
    k = targets.shape[0]
    out = np.full((k, N_METRICS), np.nan)
    status = np.zeros(k, dtype=np.int64)
    bad = np.full(k, -1, dtype=np.int64)
    none = np.empty(0, dtype=trade_dt)
    empty = np.empty(0)
    for j in prange(k):
        tgt = targets[j]
        order_bars, first_bad = order_bars_nb(tgt, mode)
        if first_bad >= 0:
            bad[j] = first_bad
            continue
        _, st = simulate_nb(
            open_, high, low, close, volume, tgt, order_bars, mode,
            cash0, fill_at, latency, fee_rate, slip_rate,
            stop_loss, take_profit, trailing, sizing, size, units_mode, leverage,
            participation, remainder, max_hold, close_at_end,
            none, empty, empty, empty, out[j], False, empty, empty,
        )  # fmt: skip
        status[j] = st
    return out, status, bad
