"""The numba portfolio kernel: several symbols, one cash account, target weights (docs/portfolio.md).

numpy in, numpy out; no Python objects, no IO. Every output is preallocated by the caller
(:func:`artifact_lake.sim.portfolio.run_portfolio`).

Bar k is processed in this order:

1. with ``fill_at = next_open``, the weights row decided ``1 + latency`` bars earlier is rebalanced at bar
   k's open (symbols without a bar at k are valued at their last close and not traded);
2. every symbol with a real bar at k takes its close as its last known close;
3. with ``fill_at = close``, the weights row decided ``latency`` bars earlier is rebalanced at bar k's close;
4. equity = cash + sum(position x last close) is recorded with cash, positions, gross and net exposure and
   the streaming metrics; at equity <= 0 every position is closed at its last close and trading stops
   (``status = bankrupt``).

A rebalance: the equity is valued at the fill prices; the explicit weights (NaN = leave that symbol as it
is) are scaled down so the gross exposure (explicit weights plus the untouched positions) stays within
``leverage``; each symbol's wanted units are ``weight x equity / price`` (whole units truncate toward 0);
changes under ``min_trade x equity`` in notional are skipped (full exits never are); the participation
cap clips a fill to that fraction of the bar's volume (full exits are never held back; the rest is
dropped). Then every sell fills, in symbol order, and only then every buy, in symbol order; a buy is shrunk
so that cash stays >= -(leverage - 1) x equity (>= 0 without leverage): cash is never overdrawn.

Float round-off: every sum runs in bar and symbol order, so results are bit-identical for the same inputs.
"""

from __future__ import annotations

import math

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


@njit(cache=True)
def _fill_nb(fills, n_f, k, j, delta, price, fee_rate, reason):
    """Record one fill; returns (cash change, fee)."""
    fee = abs(delta) * price * fee_rate
    if n_f < fills.shape[0]:  # numba does not check bounds; the caller sizes for every possible fill
        f = fills[n_f]
        f["bar"] = k
        f["size"] = delta
        f["price"] = price
        f["fees"] = fee
        f["symbol"] = np.int32(j)
        f["reason"] = np.int32(reason)
    return -(delta * price + fee), fee


@njit(cache=True)
def _rebalance_nb(
    k, px, mask, volume, wrow, pos, last, pv, delta, cash, fills, n_f, bk,
    fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
):  # fmt: skip
    """Rebalance at bar ``k`` to the weights ``wrow`` at the prices ``px[k]`` (own bar) or the last close.
    Returns (cash, number of fills). ``bk``: [traded notional, fees, skipped orders]."""
    m = pos.shape[0]
    equity = cash
    for j in range(m):
        pv[j] = px[k, j] if mask[k, j] else last[j]
        if pos[j] != 0.0:
            equity += pos[j] * pv[j]
    if not equity > 0.0:
        return cash, n_f
    held = 0.0
    wsum = 0.0
    for j in range(m):
        w = wrow[j]
        if math.isnan(w):
            if pos[j] != 0.0:
                held += abs(pos[j] * pv[j])
        else:
            wsum += abs(w)
    room = max(leverage * equity - held, 0.0)
    scale = 1.0
    if wsum * equity > room:
        scale = room / (wsum * equity)
    for j in range(m):
        delta[j] = 0.0
        w = wrow[j]
        if math.isnan(w):
            continue
        if not mask[k, j]:
            bk[2] += 1.0  # no bar: no trading in this symbol now
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
    for j in range(m):  # sells first: they free the cash the buys use
        d = delta[j]
        if d < 0.0:
            price = pv[j] * (1.0 - slip_rate)
            dc, fee = _fill_nb(fills, n_f, k, j, d, price, fee_rate, REBALANCE)
            cash += dc
            n_f += 1
            pos[j] += d
            bk[0] += abs(d) * price
            bk[1] += fee
    floor_cash = -max(leverage - 1.0, 0.0) * equity
    for j in range(m):
        d = delta[j]
        if d > 0.0:
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
            dc, fee = _fill_nb(fills, n_f, k, j, d, price, fee_rate, REBALANCE)
            cash += dc
            n_f += 1
            pos[j] += d
            bk[0] += d * price
            bk[1] += fee
    return cash, n_f


@njit(cache=True)
def simulate_portfolio_nb(
    open_, close, volume, mask, weights,
    cash0, fill_at, latency, fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
    equity_out, cash_out, positions_out, gross_out, net_out, fills, metrics, extra,
):  # fmt: skip
    """Run one portfolio backtest. Returns (number of fills, status).

    ``open_``, ``close``, ``volume``, ``weights``: (bars, symbols) float64; prices are read only where
    ``mask`` (bool, a real bar) is True. ``weights[i]`` is decided at bar i's close (NaN = leave the symbol
    as it is). ``metrics`` gets the single-symbol metric set (``sim.records.METRIC_NAMES``, where it
    applies), ``extra`` the portfolio ones.
    """
    n, m = close.shape
    pos = np.zeros(m)
    last = np.full(m, np.nan)  # last known close per symbol
    pv = np.empty(m)
    delta = np.empty(m)
    bk = np.zeros(3)
    cash = cash0
    n_f = 0
    status = STATUS.ok
    at_open = fill_at == FILL_AT.next_open
    delay = 1 + latency if at_open else latency
    prev_eq = cash0
    peak_eq = cash0
    max_dd = 0.0
    dd_bars = 0
    max_dd_bars = 0
    r_sum = 0.0
    r_sq = 0.0
    down_sq = 0.0
    exposed = 0
    holdings_sum = 0.0
    gross_sum = 0.0
    net_sum = 0.0
    rebalances = 0
    eq = cash0
    for k in range(n):
        r = k - delay
        if status == STATUS.ok and at_open and r >= 0:
            if _has_order_nb(weights, r):
                rebalances += 1
                cash, n_f = _rebalance_nb(
                    k, open_, mask, volume, weights[r], pos, last, pv, delta, cash, fills, n_f, bk,
                    fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
                )  # fmt: skip
        if not at_open:
            for j in range(m):
                if mask[k, j]:
                    last[j] = close[k, j]
            if status == STATUS.ok and r >= 0 and _has_order_nb(weights, r):
                rebalances += 1
                cash, n_f = _rebalance_nb(
                    k, close, mask, volume, weights[r], pos, last, pv, delta, cash, fills, n_f, bk,
                    fee_rate, slip_rate, units_mode, leverage, min_trade, participation,
                )  # fmt: skip
        eq = cash
        gross = 0.0
        net = 0.0
        held = 0
        for j in range(m):  # one pass: the last close (fills at the open), the valuation, the positions row
            if at_open and mask[k, j]:
                last[j] = close[k, j]
            q = pos[j]
            positions_out[k, j] = q
            if q != 0.0:
                v = q * last[j]
                eq += v
                gross += abs(v)
                net += v
                held += 1
        if status == STATUS.ok and not eq > 0.0:
            status = STATUS.bankrupt
            for j in range(m):  # close everything at its last close, with fees and slippage
                q = pos[j]
                if q != 0.0:
                    price = last[j] * (1.0 - slip_rate) if q > 0 else last[j] * (1.0 + slip_rate)
                    dc, fee = _fill_nb(fills, n_f, k, j, -q, price, fee_rate, BANKRUPT)
                    cash += dc
                    n_f += 1
                    bk[0] += abs(q) * price
                    bk[1] += fee
                    pos[j] = 0.0
                    positions_out[k, j] = 0.0
            eq = cash
            gross = 0.0
            net = 0.0
            held = 0
        equity_out[k] = eq
        cash_out[k] = cash
        gross_out[k] = gross / eq if eq > 0.0 else np.nan
        net_out[k] = net / eq if eq > 0.0 else np.nan
        if held > 0:
            exposed += 1
        holdings_sum += held
        gross_sum += gross_out[k] if eq > 0.0 else 0.0
        net_sum += net_out[k] if eq > 0.0 else 0.0
        if k > 0:  # returns from bar 1 on, as the single-symbol kernel counts them
            rr = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
            r_sum += rr
            r_sq += rr * rr
            down_sq += rr * rr if rr < 0 else 0.0
        peak_eq, max_dd, dd_bars, max_dd_bars = _drawdown_nb(eq, peak_eq, max_dd, dd_bars, max_dd_bars)
        prev_eq = eq
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
def scan_weights_nb(weights, long_only):
    """One pass over ``weights``: (rows holding an order, first bad row, its column, why) where why is 0 (none),
    1 (infinite) or 2 (short while ``long_only``); a NaN is no order."""
    rows = 0
    for r in range(weights.shape[0]):
        has = False
        for j in range(weights.shape[1]):
            v = weights[r, j]
            if math.isnan(v):
                continue
            has = True
            if math.isinf(v):
                return rows, r, j, 1
            if long_only and v < 0.0:
                return rows, r, j, 2
        if has:
            rows += 1
    return rows, -1, -1, 0


@njit(cache=True)
def _has_order_nb(weights, r):
    for j in range(weights.shape[1]):
        if not math.isnan(weights[r, j]):
            return True
    return False
