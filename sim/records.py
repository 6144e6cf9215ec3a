"""Enums (int NamedTuples usable inside numba) and structured record dtypes of the simulator.

Invariant: every code in these enums is stable; results store the names (``EXIT_REASONS``) so a stored
trade never depends on the numbering.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FillAt(NamedTuple):
    next_open: int = 0
    close: int = 1


class Units(NamedTuple):
    fractional: int = 0
    whole: int = 1


class Sizing(NamedTuple):
    all_in: int = 0
    fraction: int = 1
    notional: int = 2


class Remainder(NamedTuple):
    cancel: int = 0
    carry: int = 1


class Mode(NamedTuple):
    signal: int = 0
    """target +1 / -1 / 0 means go long / short / flat with the sizing rule; NaN holds."""
    target: int = 1
    """target in [-1, 1] is the wanted position as a fraction of equity; NaN holds."""


class Exit(NamedTuple):
    open: int = 0
    signal: int = 1
    stop_loss: int = 2
    take_profit: int = 3
    trailing_stop: int = 4
    max_hold: int = 5
    end: int = 6
    bankrupt: int = 7


class Status(NamedTuple):
    ok: int = 0
    bankrupt: int = 1


FILL_AT = FillAt()
UNITS = Units()
SIZING = Sizing()
REMAINDER = Remainder()
MODE = Mode()
EXIT = Exit()
STATUS = Status()
EXIT_REASONS = tuple(Exit._fields)

# 8-byte fields first, then two int32: 88 bytes with no padding, so a record's bytes are all data
# (padding would hold whatever memory held before and break byte-level determinism).
trade_dt = np.dtype(
    [
        ("entry_idx", np.int64),
        ("exit_idx", np.int64),  # -1 while open
        ("size", np.float64),  # units entered in total
        ("entry_price", np.float64),  # volume-weighted over entry fills
        ("exit_price", np.float64),  # volume-weighted over exit fills; NaN while open
        ("fees", np.float64),
        ("pnl", np.float64),  # net of fees; marked to the last close while open
        ("ret", np.float64),  # pnl / (size * entry_price)
        ("mae", np.float64),  # worst adverse excursion, fraction of entry price (<= 0)
        ("mfe", np.float64),  # best favourable excursion, fraction of entry price (>= 0)
        ("side", np.int32),  # 1 long, -1 short
        ("exit_reason", np.int32),  # an Exit code
    ]
)
assert trade_dt.itemsize == 88

# Summary metrics computed inside the kernel, in this order (one float64 each). ``n_trades`` counts closed
# trades, as backtesting.py's ``# Trades`` does; a position still open at the end is ``open_trades`` (0 or 1).
METRIC_NAMES = (
    "final_equity",
    "total_return",
    "n_trades",
    "win_rate",
    "profit_factor",
    "max_drawdown",
    "max_drawdown_bars",
    "exposure",
    "turnover",
    "mean_return",
    "std_return",
    "downside_std",
    "fees",
    "open_trades",
)
N_METRICS = len(METRIC_NAMES)
