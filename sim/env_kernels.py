"""Numba kernels of the trading environment: N environments reset and stepped by one call.

A step at bar t turns the action into an order (a target position as a fraction of equity, with the stop
preset's stop-loss and take-profit) for bar t+1 and runs bar t+1 with the simulator's own helpers, in the
order :func:`sim.kernels.simulate_nb` uses: fill at the open, the trade's stops inside the bar, equity at
the close. An action repeating the previous target places no order (positions are not rebalanced as prices
move). So an episode's equity is what ``sim.run(..., mode="target")`` reports for the same orders.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .kernels import (
    _CARRY,
    _CASH,
    _ENTRY_IDX,
    _IN_UNITS,
    _IN_VALUE,
    _POS,
    _SIDE,
    _SL,
    _TP,
    N_BOOK,
    N_TRADE_STATE,
    _execute_nb,
    _exit_nb,
    _protect_nb,
)  # fmt: skip
from .records import EXIT, MODE, REMAINDER, SIZING, trade_dt

# env state columns
ES_T, ES_START, ES_END, ES_STEPS, ES_PEAK, ES_PREV_EQ, ES_LAST_TGT, ES_A, ES_B, ES_POSFRAC, ES_DONE = range(11)
N_ENV_STATE = 11
# parameter vector
P_CASH, P_FEE, P_SLIP, P_LEVERAGE, P_UNITS, P_W_LOG, P_W_DSR, P_W_DD, P_W_TURN, P_ETA = range(10)
N_PARAMS = 10
N_AGENT = 4  # position fraction, unrealised return, time in position, drawdown
AGENT_BOUND = 10.0  # the agent's state is clipped to [-10, 10] (drawdown to [-1, 0]); features to [-5, 5]
FEATURE_BOUND = 5.0


@njit(cache=True)
def _equity(bk, close_i):
    return bk[_CASH] + bk[_POS] * close_i


@njit(cache=True)
def write_obs_nb(feats, window, close, bk, ts, es, ep_len, out):
    """Observation at the env's current bar: the last ``window`` feature rows, then the agent's state."""
    t = int(es[ES_T])
    f = feats.shape[1]
    k = 0
    for r in range(t - window + 1, t + 1):
        for c in range(f):
            out[k] = feats[r, c]
            k += 1
    eq = _equity(bk, close[t])
    pos = bk[_POS]
    if pos != 0.0 and eq > 0:
        entry = ts[_IN_VALUE] / ts[_IN_UNITS]
        out[k] = min(max(pos * close[t] / eq, -AGENT_BOUND), AGENT_BOUND)
        out[k + 1] = min(max(ts[_SIDE] * (close[t] / entry - 1.0), -AGENT_BOUND), AGENT_BOUND)
        out[k + 2] = min((t - ts[_ENTRY_IDX]) / ep_len, AGENT_BOUND)
    else:
        out[k] = 0.0
        out[k + 1] = 0.0
        out[k + 2] = 0.0
    out[k + 3] = min(max(eq / es[ES_PEAK] - 1.0, -1.0), 0.0) if es[ES_PEAK] > 0 else 0.0


@njit(cache=True)
def reset_nb(j, start, end, bars, feats, window, bk, ts, es, params, ep_len, obs):
    """Put env ``j`` at bar ``start`` with fresh cash; its episode may run to bar ``end``."""
    bk[j, :] = 0.0
    bk[j, _CASH] = params[P_CASH]
    bk[j, _CARRY] = np.nan
    ts[j, :] = 0.0
    es[j, ES_T] = start
    es[j, ES_START] = start
    es[j, ES_END] = end
    es[j, ES_STEPS] = 0
    es[j, ES_PEAK] = params[P_CASH]
    es[j, ES_PREV_EQ] = params[P_CASH]
    es[j, ES_LAST_TGT] = np.nan
    es[j, ES_A] = 0.0
    es[j, ES_B] = 0.0
    es[j, ES_POSFRAC] = 0.0
    es[j, ES_DONE] = 0.0
    write_obs_nb(feats, window, bars[3], bk[j], ts[j], es[j], ep_len, obs[j])


@njit(cache=True)
def step_nb(
    bars,
    feats,
    window,
    bk,
    ts,
    es,
    actions,
    sizes,
    preset_sl,
    preset_tp,
    params,
    ep_len,
    obs,
    reward,
    terminated,
    truncated,
    equity,
    targets,
    stops,
    active,
):
    """Step every env once. ``actions`` is (N, 3): direction (0 short, 1 flat, 2 long), size, stop preset.

    ``targets``/``stops`` (N, 3) receive the order each env placed (target, stop-loss, take-profit; NaN
    target: none), for replaying the episode as a backtest.
    """
    open_, high, low, close, volume = bars[0], bars[1], bars[2], bars[3], bars[4]
    none = np.empty(0, dtype=trade_dt)
    queue = np.zeros((1, 4))  # one order: due bar, target, stop-loss, take-profit
    fee = params[P_FEE]
    slip = params[P_SLIP]
    for j in range(actions.shape[0]):
        if not active[j]:
            continue
        t = int(es[j, ES_T])
        i = t + 1
        tgt = (actions[j, 0] - 1) * sizes[actions[j, 1]]
        sl = preset_sl[actions[j, 2]]
        tp = preset_tp[actions[j, 2]]
        b = bk[j]
        tr = ts[j]
        targets[j] = np.nan
        stops[j, 0] = sl
        stops[j, 1] = tp
        if tgt != es[j, ES_LAST_TGT]:
            es[j, ES_LAST_TGT] = tgt
            targets[j] = tgt
            queue[0, 0] = i
            queue[0, 1] = tgt
            queue[0, 2] = sl
            queue[0, 3] = tp
            _execute_nb(
                b,
                tr,
                none,
                open_[i],
                i,
                volume[i],
                queue,
                0,
                MODE.target,
                fee,
                slip,
                SIZING.all_in,
                1.0,
                int(params[P_UNITS]),
                params[P_LEVERAGE],
                np.nan,
                REMAINDER.cancel,
                False,
            )
        if b[_POS] != 0.0 and not (math.isnan(tr[_SL]) and math.isnan(tr[_TP])):
            _protect_nb(b, tr, none, i, open_[i], high[i], low[i], np.nan, fee, slip, False)
        eq = _equity(b, close[i])
        term = False
        if eq <= 0.0:
            if b[_POS] != 0.0:
                _exit_nb(b, tr, none, close[i], i, EXIT.bankrupt, fee, slip, False)
            eq = b[_CASH]
            term = True
        prev = es[j, ES_PREV_EQ]
        r = eq / prev - 1.0 if prev > 0 else -1.0
        logr = math.log(eq / prev) if eq > 0 and prev > 0 else -10.0
        # Moody and Saffell's differential Sharpe ratio, from moving estimates of the first two moments
        a0 = es[j, ES_A]
        b0 = es[j, ES_B]
        eta = params[P_ETA]
        denom = (b0 - a0 * a0) ** 1.5
        dsr = (b0 * (r - a0) - 0.5 * a0 * (r * r - b0)) / denom if denom > 1e-12 else 0.0
        es[j, ES_A] = a0 + eta * (r - a0)
        es[j, ES_B] = b0 + eta * (r * r - b0)
        peak = max(es[j, ES_PEAK], eq)
        es[j, ES_PEAK] = peak
        posfrac = b[_POS] * close[i] / eq if eq > 0 else 0.0
        turnover = abs(posfrac - es[j, ES_POSFRAC])
        es[j, ES_POSFRAC] = posfrac
        dd = 1.0 - eq / peak if peak > 0 else 0.0
        reward[j] = params[P_W_LOG] * logr + params[P_W_DSR] * dsr - params[P_W_DD] * dd - params[P_W_TURN] * turnover
        es[j, ES_PREV_EQ] = eq
        es[j, ES_T] = i
        es[j, ES_STEPS] += 1
        equity[j] = eq
        terminated[j] = term
        truncated[j] = (not term) and i >= es[j, ES_END]  # END = start + episode length (training)
        write_obs_nb(feats, window, close, b, tr, es[j], ep_len, obs[j])


def new_state(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((n, N_BOOK)), np.zeros((n, N_TRADE_STATE)), np.zeros((n, N_ENV_STATE))
