"""Strategies as small, pure signal generators: arrays in, per-bar orders out (NaN = none).

Signals are decided on bar i's close and filled by the execution model (next open by default).
``direction``: ``long`` (enter long, exit to flat), ``short`` (enter short, exit to flat) or ``both``
(always in the market after the first signal, reversing on each).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from . import kernels as _kernels
from .engine import Bars, _direction, run_grid
from .plugins import _register, indicator, strategy

K: Any = _kernels


def _prices(x: np.ndarray, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d")
    return a


def _window(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a whole number >= 1, not {n!r}")
    return int(n)


def sma(close: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average over ``n`` bars (NaN before the window fills)."""
    out: np.ndarray = K.rolling_mean_nb(_prices(close, "close"), _window(n, "window"))
    return out


def sma_cross(close: np.ndarray, fast: int, slow: int, direction: str = "long") -> np.ndarray:
    """Orders on crossings of SMA(fast) over SMA(slow) (strict, as backtesting.py's ``crossover``)."""
    fast, slow = _window(fast, "fast"), _window(slow, "slow")
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be below slow ({slow})")
    c = _prices(close, "close")
    out: np.ndarray = K.cross_targets_nb(K.rolling_mean_nb(c, fast), K.rolling_mean_nb(c, slow), _direction(direction))
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's relative strength index."""
    out: np.ndarray = K.rsi_nb(_prices(close, "close"), _window(period, "period"))
    return out


def rsi_threshold(
    close: np.ndarray, period: int = 14, lower: float = 30.0, upper: float = 70.0, direction: str = "long"
) -> np.ndarray:
    """Long when RSI crosses below ``lower`` (oversold), out or short when it crosses above ``upper``."""
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower!r}, upper={upper!r}")
    out: np.ndarray = K.threshold_targets_nb(rsi(close, period), float(lower), float(upper), _direction(direction))
    return out


def breakout(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 20, direction: str = "long") -> np.ndarray:
    """Long when the close breaks above the previous ``n`` bars' highest high; out (or short) below their lowest low."""
    out: np.ndarray = K.breakout_targets_nb(
        _prices(high, "high"), _prices(low, "low"), _prices(close, "close"), _window(n, "n"), _direction(direction)
    )
    return out


# -- the built-ins as plugins of the registry (sim.plugins): the executor has no special path for them ----------
Direction = Literal["long", "short", "both"]


def _check_windows(**windows: int) -> None:
    for key, n in windows.items():
        _window(n, key)


def _sma_cross_check(fast: int = 10, slow: int = 20, direction: str = "long") -> None:
    _check_windows(fast=fast, slow=slow)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be below slow ({slow})")


def _sma_cross_sweep(bars: Bars, combos: Sequence[Mapping[str, Any]]) -> Iterator[np.ndarray]:
    """Every combination's orders, computing each distinct moving average once (equal to :func:`sma_cross`)."""
    c = _prices(bars.close, "close")
    means: dict[int, np.ndarray] = {}

    def mean(n: int) -> np.ndarray:
        if n not in means:
            means[n] = K.rolling_mean_nb(c, _window(n, "window"))
        return means[n]

    for values in combos:
        _sma_cross_check(values["fast"], values["slow"])
        yield K.cross_targets_nb(mean(values["fast"]), mean(values["slow"]), _direction(values["direction"]))


def _sma_cross_grid(bars: Bars, combos: Sequence[Mapping[str, Any]], execution: Any) -> list[dict[str, float]]:
    """Metrics of every combination through the grid kernel (:func:`run_grid`), one call per direction;
    each equals the combination run alone."""
    out: list[dict[str, float]] = [{} for _ in combos]
    for direction in sorted({str(v["direction"]) for v in combos}):
        at = [j for j, v in enumerate(combos) if v["direction"] == direction]
        for j in at:
            _sma_cross_check(combos[j]["fast"], combos[j]["slow"])
        found = run_grid(
            bars, [combos[j]["fast"] for j in at], [combos[j]["slow"] for j in at], execution, direction=direction
        )
        for j, m in zip(at, found, strict=True):
            out[j] = m
    return out


def sma_cross_plugin(bars: Bars, fast: int = 10, slow: int = 20, direction: Direction = "long") -> np.ndarray:
    """Orders on crossings of SMA(fast) over SMA(slow) (strict, as backtesting.py's ``crossover``)."""
    return sma_cross(bars.close, fast, slow, direction)


_register("strategy", sma_cross_plugin, "sma_cross", _sma_cross_check, _sma_cross_sweep, {"grid": _sma_cross_grid})


def _rsi_check(period: int = 14, lower: float = 30.0, upper: float = 70.0, direction: str = "long") -> None:
    _check_windows(period=period)
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower!r}, upper={upper!r}")


@strategy(name="rsi_threshold", check=_rsi_check)
def rsi_threshold_plugin(
    bars: Bars, period: int = 14, lower: float = 30.0, upper: float = 70.0, direction: Direction = "long"
) -> np.ndarray:
    """Long when RSI crosses below ``lower`` (oversold), out or short when it crosses above ``upper``."""
    return rsi_threshold(bars.close, period, lower, upper, direction)


def _breakout_check(n: int = 20, direction: str = "long") -> None:
    _check_windows(n=n)


@strategy(name="breakout", check=_breakout_check)
def breakout_plugin(bars: Bars, n: int = 20, direction: Direction = "long") -> np.ndarray:
    """Long when the close breaks above the previous ``n`` bars' highest high; out (or short) below their lowest low."""
    return breakout(bars.high, bars.low, bars.close, n, direction)


@indicator(name="sma", check=lambda n=20: _check_windows(n=n))
def sma_indicator(bars: Bars, n: int = 20) -> np.ndarray:
    """Simple moving average of the close over ``n`` bars (NaN before the window fills)."""
    return sma(bars.close, n)


@indicator(name="rsi", check=lambda period=14: _check_windows(period=period))
def rsi_indicator(bars: Bars, period: int = 14) -> np.ndarray:
    """Wilder's relative strength index of the close."""
    return rsi(bars.close, period)
