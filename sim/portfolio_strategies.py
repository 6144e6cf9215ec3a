"""Built-in portfolio strategies: (bars, symbols) target weights from a :class:`Panel`.

Row i uses only bars up to and including i (it is decided at bar i's close); rows between rebalances are
NaN (leave as is). A symbol is eligible at bar i only if it has a real bar there (it can be traded) and,
for momentum, a close ``lookback`` bars before.
"""

from __future__ import annotations

import numpy as np

from .plugins import portfolio_strategy
from .portfolio import Panel


def _check_every(every: int) -> None:
    if every < 1:
        raise ValueError(f"every must be >= 1, not {every}")


def _rebalance_rows(n: int, every: int) -> np.ndarray:
    return np.arange(0, n, every, dtype=np.int64)


def _check_equal_weight(every: int = 24) -> None:
    _check_every(every)


@portfolio_strategy(check=_check_equal_weight)
def equal_weight(panel: Panel, every: int = 24) -> np.ndarray:
    """Every `every` bars, hold every symbol that has a bar, in equal weights (the benchmark basket)."""
    _check_every(every)
    n, m = panel.shape
    out = np.full((n, m), np.nan)
    rows = _rebalance_rows(n, every)
    live = panel.mask[rows]
    count = live.sum(axis=1, keepdims=True)
    out[rows] = np.where(live, 1.0 / np.maximum(count, 1), np.nan)
    return out


def _check_xs_momentum(lookback: int = 20, top_k: int = 5, every: int = 24) -> None:
    _check_every(every)
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, not {lookback}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, not {top_k}")


@portfolio_strategy(check=_check_xs_momentum)
def xs_momentum(panel: Panel, lookback: int = 20, top_k: int = 5, every: int = 24) -> np.ndarray:
    """Every `every` bars, hold the top_k symbols by lookback return, equal weight; the rest go flat.

    The return is last close over the last close `lookback` bars before; ties go to the lower column.
    Symbols without a bar now, or without a close `lookback` bars ago, are left as they are (NaN)."""
    _check_xs_momentum(lookback, top_k, every)
    n, m = panel.shape
    out = np.full((n, m), np.nan)
    last = panel.last_close()
    for i in _rebalance_rows(n, every):
        if i < lookback:
            continue
        ret = last[i] / last[i - lookback] - 1.0
        ok = panel.mask[i] & np.isfinite(ret)
        if not ok.any():
            continue
        order = np.argsort(np.where(ok, -ret, np.inf), kind="stable")
        k = min(top_k, int(ok.sum()))
        row = np.where(ok, 0.0, np.nan)
        row[order[:k]] = 1.0 / k
        out[i] = row
    return out
