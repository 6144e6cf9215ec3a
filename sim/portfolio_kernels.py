"""The numba portfolio kernel: several symbols, one cash account, target weights (docs/portfolio.md).

numpy in, numpy out; no Python objects, no IO. Every output is preallocated by the caller
(:func:`artifact_lake.sim.portfolio.run_portfolio`).

Bar k is processed in this order:

1. with ``fill_at = next_open``, the weights row decided ``1 + latency`` bars earlier is rebalanced at bar
   k's open (symbols without a bar at k are valued at their last close and not traded);
2. every symbol with a real bar at k takes its close as its last known close;
3. with ``fill_at = close``, the weights row decided ``latency`` bars earlier is rebalanced at bar k's close;
4. equity = cash + sum(position x last close) is recorded with cash, positions, gross and net exposure; at
   equity <= 0 every position is closed at its last close and trading stops (``status = bankrupt``).

The metrics' sums over bars (returns, drawdown, average exposures) are taken after the last bar, in bar
order, from the recorded equity and exposures.

A rebalance: the equity is valued at the fill prices; the explicit weights (NaN = leave that symbol as it
is) are scaled down so the gross exposure (explicit weights plus the untouched positions) stays within
``leverage``; each symbol's wanted units are ``weight x equity / price`` (whole units truncate toward 0);
changes under ``min_trade x equity`` in notional are skipped (full exits never are); the participation
cap clips a fill to that fraction of the bar's volume (full exits are never held back; the rest is
dropped). Then every sell fills, in symbol order, and only then every buy, in symbol order; a buy is shrunk
so that cash stays >= -(leverage - 1) x equity (>= 0 without leverage): cash is never overdrawn.

Float round-off: every sum runs in bar and symbol order, so results are bit-identical for the same inputs.

Speed (issue 14: within 2x of a bare loop): most bars hold no order, so a bar's cost is its valuation, one
pass over the symbols that reads the closes and the positions and writes the positions row. The weights
are read once, by :func:`scan_weights_nb`, which flags the rows holding an order; a row where every symbol
has a bar is valued at the closes without updating the last closes; while no position is short, gross
exposure is the net one and needs no sum of its own (a negative value, checked per bar, brings the sum
back). A rebalance lists its sells and buys instead of branching on each sign, and no array is handed to a
function once per fill (reference counts).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from .kernels import _drawdown_nb
from .records import FILL_AT, STATUS, UNITS

_TINY = 1e-12

# 8-byte fields first, then two int32: 40 bytes, no padding (all bytes are data: byte-level determinism)
fill_dt = np.dtype(
    [
        ("bar", np.int64),  # the bar it filled in
        ("size", np.float64),  # signed units: > 0 bought, < 0 sold
        ("price", np.float64),  # the fill price, slippage included
        ("fees", np.float64),
        ("symbol", np.int32),  # column of the panel
        ("reason", np.int32),  # 0 rebalance, 1 bankrupt (closed at the last close)
    ]
)
assert fill_dt.itemsize == 40

REBALANCE, BANKRUPT = 0, 1

# Indices into the extra metrics (after the ``METRIC_NAMES`` set): see ``PORTFOLIO_METRIC_NAMES``
N_EXTRA = 6

# numba's ``_nrt`` option (not in its type stubs), for the helpers the bar loop calls: no reference counting
# of the arrays they are handed. The kernel keeps them alive across the calls, and the counts (two atomic
# operations per array and call; the rebalance takes ~15 arrays) cost as much as the rest of a rebalance's
# bookkeeping. Such a function cannot allocate (numba refuses to compile an allocation in it).
_NO_REFCOUNTS: dict[str, Any] = {"_nrt": False}


@njit(cache=True)
def _write_fill_nb(f, k, j, delta, price, fee, reason):
    """Write one fill into the record ``f``: every field (the buffer is not zeroed).

    Takes the record, not the fills array: an array handed to a function is reference-counted at each call,
    two atomic operations per fill in the loops that fill them."""
    f["bar"] = k
    f["size"] = delta
    f["price"] = price
    f["fees"] = fee
    f["symbol"] = np.int32(j)
    f["reason"] = np.int32(reason)


@njit(cache=True, **_NO_REFCOUNTS)
def _rebalance_nb(
    k, px, mask, volume, wrow, pos, last, pv, delta, sells, buys, cash, fills, n_f, bk,
    fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
):  # fmt: skip
    """Rebalance at bar ``k`` to the weights ``wrow`` at the prices ``px[k]`` (own bar) or the last close.
    Returns (cash, number of fills). ``bk``: [traded notional, fees, skipped orders].

    ``pv``, ``delta``, ``sells``, ``buys``: scratch, one slot per symbol. One pass values the book, sums the
    exposure the order leaves alone and the weights; one finds the wanted changes and lists the symbols to
    sell and to buy; then the sells fill, then the buys, each without a branch on the sign. The running sums
    live in locals (``bk`` is written back once) and every sum keeps the symbol order."""
    m = pos.shape[0]
    n_cap = fills.shape[0]
    equity = cash
    held = 0.0
    wsum = 0.0
    for j in range(m):  # independent sums: they overlap in the pipeline
        p = px[k, j] if mask[k, j] else last[j]
        pv[j] = p
        q = pos[j]
        w = wrow[j]
        if q != 0.0:
            equity += q * p
        if math.isnan(w):
            if q != 0.0:
                held += abs(q * p)
        else:
            wsum += abs(w)
    if not equity > 0.0:
        return cash, n_f
    room = max(leverage * equity - held, 0.0)
    scale = 1.0
    if wsum * equity > room:
        scale = room / (wsum * equity)
    traded = bk[0]
    fees = bk[1]
    skipped = bk[2]
    n_sell = 0
    n_buy = 0
    for j in range(m):  # the wanted change per symbol; the symbols to sell and to buy, in symbol order
        delta[j] = 0.0
        w = wrow[j]
        if math.isnan(w):
            continue
        if not mask[k, j]:
            skipped += 1.0  # no bar: no trading in this symbol now
            continue
        p = pv[j]
        want = w * scale * equity / p
        if units_mode == UNITS.whole:
            want = float(math.trunc(want))
        d = want - pos[j]
        if abs(d) <= _TINY * max(1.0, abs(want)):
            continue
        full_exit = want == 0.0
        if not full_exit:
            if abs(d) * p < min_trade * equity:
                continue
            if not math.isnan(participation):
                cap = participation * volume[k, j]
                if units_mode == UNITS.whole:
                    cap = math.floor(cap)
                if abs(d) > cap:
                    d = cap if d > 0 else -cap
        delta[j] = d
        # no branch on the sign (a coin flip when weights drift): write the index, count it where it belongs
        sells[n_sell] = j
        n_sell += d < 0.0
        buys[n_buy] = j
        n_buy += d > 0.0
    for i in range(n_sell):  # sells first: they free the cash the buys use
        j = sells[i]
        d = delta[j]
        price = pv[j] * (1.0 - slip_rate)
        fee = abs(d) * price * fee_rate
        if n_f < n_cap:  # numba does not check bounds; the caller sizes for every possible fill
            _write_fill_nb(fills[n_f], k, j, d, price, fee, REBALANCE)
        cash += -(d * price + fee)
        n_f += 1
        pos[j] += d
        traded += abs(d) * price
        fees += fee
    floor_cash = -max(leverage - 1.0, 0.0) * equity
    for i in range(n_buy):
        j = buys[i]
        d = delta[j]
        price = pv[j] * (1.0 + slip_rate)
        unit_cost = price * (1.0 + fee_rate)
        avail = cash - floor_cash
        if d * price + d * price * fee_rate > avail:
            d = max(avail, 0.0) / unit_cost
            if units_mode == UNITS.whole:
                d = math.floor(d)
            while d > 0.0 and cash - (d * price + d * price * fee_rate) < floor_cash:
                d = math.floor(d - 1.0) if units_mode == UNITS.whole else d * (1.0 - 4e-16)
        if d <= 0.0:
            continue
        fee = abs(d) * price * fee_rate
        if n_f < n_cap:  # numba does not check bounds; the caller sizes for every possible fill
            _write_fill_nb(fills[n_f], k, j, d, price, fee, REBALANCE)
        cash += -(d * price + fee)
        n_f += 1
        pos[j] += d
        traded += d * price
        fees += fee
    bk[0] = traded
    bk[1] = fees
    bk[2] = skipped
    return cash, n_f


@njit(cache=True, **_NO_REFCOUNTS)
def _count_held_nb(pos):
    """(positions that are not 0, short positions)."""
    held = 0
    shorts = 0
    for j in range(pos.shape[0]):
        held += pos[j] != 0.0
        shorts += pos[j] < 0.0
    return held, shorts


@njit(cache=True, **_NO_REFCOUNTS)
def _sync_last_nb(close, stale, last):
    """``last`` after a run of full rows ending at ``stale``: that row's closes (every symbol had a bar)."""
    for j in range(last.shape[0]):
        last[j] = close[stale, j]


@njit(cache=True)
def simulate_portfolio_nb(
    open_, close, volume, mask, weights, orders,
    cash0, fill_at, latency, fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
    equity_out, cash_out, positions_out, gross_out, net_out, fills, metrics, extra,
):  # fmt: skip
    """Run one portfolio backtest. Returns (number of fills, status).

    ``open_``, ``close``, ``volume``, ``weights``: (bars, symbols) float64; prices are read only where
    ``mask`` (bool, a real bar) is True. ``weights[i]`` is decided at bar i's close (NaN = leave the symbol
    as it is); ``orders[i]`` (bool) says whether row i holds an order (:func:`scan_weights_nb`): a bar
    without one only values the book. ``metrics`` gets the single-symbol metric set
    (``sim.records.METRIC_NAMES``, where it applies), ``extra`` the portfolio ones.

    A row where every symbol has a bar is valued at its closes directly and leaves ``last`` stale; ``stale``
    is that row, and ``last`` is brought up to date from it only where it is read (a rebalance, a row with a
    missing bar, a bankruptcy): per bar, the common case is one pass that reads the closes and the
    positions and writes the positions row.
    """
    n, m = close.shape
    pos = np.zeros(m)
    last = np.full(m, np.nan)  # last known close per symbol (up to date where stale < 0)
    stale = -1
    pv = np.empty(m)
    delta = np.empty(m)
    sells = np.empty(m, np.int64)
    buys = np.empty(m, np.int64)
    bk = np.zeros(3)
    cash = cash0
    n_f = 0
    status = STATUS.ok
    at_open = fill_at == FILL_AT.next_open
    delay = 1 + latency if at_open else latency
    exposed = 0
    holdings_sum = 0  # an integer: the same value as a float sum of counts
    rebalances = 0
    held = 0  # positions that are not 0, and how many of them are short: they change only at fills
    shorts = 0
    eq = cash0
    for k in range(n):
        r = k - delay
        if status == STATUS.ok and r >= 0 and orders[r]:
            rebalances += 1
            if stale >= 0:
                _sync_last_nb(close, stale, last)
                stale = -1
            if at_open:  # at the open, before this bar's close is known
                px = open_
            else:
                for j in range(m):
                    if mask[k, j]:
                        last[j] = close[k, j]
                px = close
            cash, n_f = _rebalance_nb(
                k, px, mask, volume, weights[r], pos, last, pv, delta, sells, buys, cash, fills, n_f, bk,
                fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
            )  # fmt: skip
            held, shorts = _count_held_nb(pos)
        full = True
        for j in range(m):
            full &= mask[k, j]
        eq = cash
        gross = 0.0
        net = 0.0
        if full and shorts == 0:  # no missing bar, no short: value at the closes, leave last stale
            stale = k
            neg = False
            if held == m:  # the common case: every symbol held, no branch per symbol
                for j in range(m):  # two running sums, not three: gross == net while no value is negative
                    q = pos[j]
                    v = q * close[k, j]
                    eq += v
                    net += v
                    neg |= not v >= 0.0  # a negative (or NaN) value: gross needs its own sum after all
                    positions_out[k, j] = q
            else:
                for j in range(m):
                    q = pos[j]
                    if q != 0.0:
                        v = q * close[k, j]
                        eq += v
                        net += v
                        neg |= not v >= 0.0
                    positions_out[k, j] = q
            gross = net
            if neg:
                gross = 0.0
                for j in range(m):
                    q = pos[j]
                    if q != 0.0:
                        gross += abs(q * close[k, j])
        elif full:  # every symbol has a bar: value at the closes, leave last stale
            stale = k
            for j in range(m):
                q = pos[j]
                if q != 0.0:
                    v = q * close[k, j]
                    eq += v
                    gross += abs(v)
                    net += v
                positions_out[k, j] = q
        else:
            if stale >= 0:
                _sync_last_nb(close, stale, last)
                stale = -1
            for j in range(m):  # one pass: the last close, the valuation, the positions row
                if mask[k, j]:
                    last[j] = close[k, j]
                q = pos[j]
                if q != 0.0:
                    v = q * last[j]
                    eq += v
                    gross += abs(v)
                    net += v
                positions_out[k, j] = q
        if status == STATUS.ok and not eq > 0.0:
            status = STATUS.bankrupt
            if stale >= 0:
                _sync_last_nb(close, stale, last)
                stale = -1
            for j in range(m):  # close everything at its last close, with fees and slippage
                q = pos[j]
                if q != 0.0:
                    price = last[j] * (1.0 - slip_rate) if q > 0 else last[j] * (1.0 + slip_rate)
                    fee = abs(q) * price * fee_rate
                    if n_f < fills.shape[0]:
                        _write_fill_nb(fills[n_f], k, j, -q, price, fee, BANKRUPT)
                    cash += -(-q * price + fee)
                    n_f += 1
                    bk[0] += abs(q) * price
                    bk[1] += fee
                    pos[j] = 0.0
                    positions_out[k, j] = 0.0
            eq = cash
            gross = 0.0
            net = 0.0
            held = 0
            shorts = 0
        equity_out[k] = eq
        cash_out[k] = cash
        gross_out[k] = gross / eq if eq > 0.0 else np.nan
        net_out[k] = net / eq if eq > 0.0 else np.nan
        exposed += held > 0
        holdings_sum += held
    gross_sum, net_sum, r_sum, r_sq, down_sq, max_dd, max_dd_bars = _bar_metrics_nb(
        equity_out, gross_out, net_out, cash0
    )
    open_pos = 0
    for j in range(m):
        if pos[j] != 0.0:
            open_pos += 1
    metrics[0] = eq
    metrics[1] = eq / cash0 - 1.0
    metrics[2] = n_f  # fills (a portfolio has no round trips)
    metrics[3] = np.nan  # win rate: needs round trips
    metrics[4] = np.nan  # profit factor: needs round trips
    metrics[5] = max_dd
    metrics[6] = max_dd_bars
    metrics[7] = exposed / n if n > 0 else 0.0
    metrics[8] = bk[0] / cash0
    r_n = n - 1
    mean = r_sum / r_n if r_n > 0 else np.nan
    metrics[9] = mean
    metrics[10] = math.sqrt(max(r_sq - r_sum * mean, 0.0) / (r_n - 1)) if r_n > 1 else np.nan
    metrics[11] = math.sqrt(down_sq / r_n) if r_n > 0 else np.nan
    metrics[12] = bk[1]
    metrics[13] = open_pos
    extra[0] = holdings_sum / n if n > 0 else 0.0
    extra[1] = gross_sum / n if n > 0 else 0.0
    extra[2] = net_sum / n if n > 0 else 0.0
    extra[3] = rebalances
    extra[4] = bk[2]
    extra[5] = n_f
    return n_f, status


@njit(cache=True)
def _bar_metrics_nb(equity, gross, net, cash0):
    """The sums over bars behind the metrics, in bar order, from the per-bar outputs: (exposures' sums,
    returns' sum, sum of squares and of squared losses, worst drawdown, its length in bars).

    A pass of its own, after the bars: inside the bar loop these sums wait on each bar's valuation and
    stall the next one."""
    prev_eq = cash0
    peak_eq = cash0
    max_dd = 0.0
    dd_bars = 0
    max_dd_bars = 0
    r_sum = 0.0
    r_sq = 0.0
    down_sq = 0.0
    gross_sum = 0.0
    net_sum = 0.0
    for k in range(equity.shape[0]):
        eq = equity[k]
        gross_sum += gross[k] if eq > 0.0 else 0.0
        net_sum += net[k] if eq > 0.0 else 0.0
        if k > 0:  # returns from bar 1 on, as the single-symbol kernel counts them
            rr = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
            r_sum += rr
            r_sq += rr * rr
            loss = min(0.0, rr)  # rr if rr < 0 else 0.0 (NaN too), a select: the sign is a coin flip
            down_sq += loss * loss
        peak_eq, max_dd, dd_bars, max_dd_bars = _drawdown_nb(eq, peak_eq, max_dd, dd_bars, max_dd_bars)
        prev_eq = eq
    return gross_sum, net_sum, r_sum, r_sq, down_sq, max_dd, max_dd_bars


@njit(cache=True)
def scan_weights_nb(weights, long_only, orders):
    """One pass over ``weights``: (rows holding an order, first bad row, its column, why) where why is 0 (none),
    1 (infinite) or 2 (short while ``long_only``); a NaN is no order. ``orders[r]`` (bool, n) is set to whether
    row r holds an order, so the kernel never reads a row without one.

    Most rows hold no order (all NaN, nothing to check): a row's weights are counted first, in a loop without
    branches (it vectorizes), and only a row holding an order is checked, while it is still in cache."""
    rows = 0
    n, m = weights.shape
    for r in range(n):
        cnt = 0
        for j in range(m):
            v = weights[r, j]
            cnt += v == v  # not NaN
        if cnt == 0:
            orders[r] = False
            continue
        bad = 0
        for j in range(m):
            v = weights[r, j]
            bad += (abs(v) == math.inf) | (long_only & (v < 0.0))
        if bad:
            for j in range(m):
                v = weights[r, j]
                if math.isinf(v):
                    return rows, r, j, 1
                if long_only and v < 0.0:
                    return rows, r, j, 2
        orders[r] = True
        rows += 1
    return rows, -1, -1, 0
