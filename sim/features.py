"""Causal features for the trading environment: every value at bar t uses bars 0..t only.

Catalogue (names used in ``features=``): ``logret`` (log return), ``vol`` (rolling std of log returns
over 20 bars), ``sma<N>`` (close / SMA(N) - 1), ``ema<N>`` (close / EMA(N) - 1), ``rsi`` (RSI(14) / 100 -
0.5), ``atr`` (ATR(14) / close). Normalisation statistics (mean, std per feature) are fitted on the
training split and then frozen, like a fitted scaler; they travel with a trained policy.
"""

from __future__ import annotations

import math
import re

import numpy as np
from numba import njit

from .kernels import rolling_mean_nb, rsi_nb

DEFAULT_FEATURES = ("logret", "vol", "sma20", "ema50", "rsi", "atr")
_PATTERN = re.compile(r"^(logret|vol|rsi|atr|sma\d+|ema\d+)$")


@njit(cache=True)
def logret_nb(close):
    out = np.zeros(close.shape[0])
    for i in range(1, close.shape[0]):
        out[i] = math.log(close[i] / close[i - 1])
    return out


@njit(cache=True)
def rolling_std_nb(x, window):
    n = x.shape[0]
    out = np.full(n, np.nan)
    for i in range(window - 1, n):
        m = 0.0
        for k in range(i - window + 1, i + 1):
            m += x[k]
        m /= window
        v = 0.0
        for k in range(i - window + 1, i + 1):
            v += (x[k] - m) ** 2
        out[i] = math.sqrt(v / window)
    return out


@njit(cache=True)
def ema_nb(x, span):
    out = np.empty(x.shape[0])
    a = 2.0 / (span + 1.0)
    s = x[0]
    for i in range(x.shape[0]):
        s = x[i] if i == 0 else a * x[i] + (1 - a) * s
        out[i] = s
    return out


@njit(cache=True)
def atr_nb(high, low, close, period):
    n = close.shape[0]
    tr = np.empty(n)
    for i in range(n):
        h_l = high[i] - low[i]
        if i == 0:
            tr[i] = h_l
        else:
            tr[i] = max(h_l, abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
    out = np.full(n, np.nan)
    if n < period:
        return out
    s = 0.0
    for i in range(period):
        s += tr[i]
    a = s / period
    out[period - 1] = a
    for i in range(period, n):
        a = (a * (period - 1) + tr[i]) / period
        out[i] = a
    return out


def check_features(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    out = tuple(names)
    for f in out:
        if not _PATTERN.match(f):
            raise ValueError(f"unknown feature {f!r} (logret, vol, rsi, atr, sma<N>, ema<N>)")
    if not out:
        raise ValueError("features must name at least one feature")
    return out


def raw_features(high: np.ndarray, low: np.ndarray, close: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(n, F) raw features, NaN where a window has not filled yet."""
    cols = []
    lr = logret_nb(close)
    for f in check_features(names):
        if f == "logret":
            cols.append(lr)
        elif f == "vol":
            cols.append(rolling_std_nb(lr, 20))
        elif f == "rsi":
            cols.append(rsi_nb(close, 14) / 100.0 - 0.5)
        elif f == "atr":
            cols.append(atr_nb(high, low, close, 14) / close)
        elif f.startswith("sma"):
            cols.append(close / rolling_mean_nb(close, int(f[3:])) - 1.0)
        else:
            cols.append(close / ema_nb(close, int(f[3:])) - 1.0)
    return np.ascontiguousarray(np.stack(cols, axis=1))


def fit_normaliser(raw: np.ndarray, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each feature over bars [0, end) (the training split), ignoring NaNs."""
    part = raw[:end]
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(part, axis=0) if part.size else np.zeros(raw.shape[1])
        std = np.nanstd(part, axis=0) if part.size else np.ones(raw.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return mean, std


def normalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float = 5.0) -> np.ndarray:
    z = (raw - mean) / std
    z = np.where(np.isfinite(z), z, 0.0)
    return np.ascontiguousarray(np.clip(z, -clip, clip), dtype=np.float32)
