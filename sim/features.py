"""Causal features for the trading environment: every value at bar t uses bars 0..t only.

Catalogue (names used in ``features=``): ``logret`` (log return), ``vol`` (rolling std of log returns
over 20 bars), ``sma<N>`` (close / SMA(N) - 1), ``ema<N>`` (close / EMA(N) - 1), ``rsi`` (RSI(14) / 100 -
0.5), ``atr`` (ATR(14) / close). Normalisation statistics (mean, std per feature) are fitted on the
training split and then frozen, like a fitted scaler; they travel with a trained policy.

A feature is ``name`` or ``name(args)`` with positional and keyword literal arguments (ints, floats, strings,
booleans: ``"zscore(n=20)"``, ``"rsi(14)"``, ``"sma(n=50)"``), parsed with :func:`ast.literal_eval` on each
argument (nothing is evaluated). A name is resolved against the built-in features first (``vol(n)``,
``rsi(n)``, ``atr(n)``, ``sma(n)``, ``ema(n)`` take a window), then against the registered indicators
(:mod:`sim.plugins`): an indicator's output, one float per bar, is a feature column like a built-in one
(computed on the whole series, which is causal when the indicator is: the experiments' look-ahead guard
checks user indicators) and normalised with the same frozen train-split statistics.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from . import plugins as registry
from .kernels import rolling_mean_nb, rsi_nb

DEFAULT_FEATURES = ("logret", "vol", "sma20", "ema50", "rsi", "atr")


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


BUILTINS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "logret": (),
    "vol": (("n", 20),),
    "rsi": (("n", 14),),
    "atr": (("n", 14),),
    "sma": (("n", None),),
    "ema": (("n", None),),
}
"""Built-in features with their window parameter (None: required); ``sma<N>``/``ema<N>`` also work."""
_LITERALS = (int, float, str, bool)


@dataclass(frozen=True)
class Feature:
    """One parsed and resolved feature: a built-in (``kind="builtin"``) or a registered indicator."""

    spec: str
    name: str
    kind: str
    """``builtin`` or ``indicator``."""
    values: tuple[tuple[str, Any], ...] = ()
    """Every parameter's value (defaults filled in), in the order of the signature."""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.values)

    def plugin(self) -> registry.Plugin | None:
        return registry.get("indicator", self.name) if self.kind == "indicator" else None


def parse_feature(spec: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """``"name"`` or ``"name(1, k=2.0, s='x')"`` as (name, positional args, keyword args); nothing is evaluated."""
    if not isinstance(spec, str):
        raise ValueError(f"feature {spec!r}: must be a string such as 'rsi' or 'zscore(n=20)'")
    text = spec.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"feature {spec!r}: not a name or name(args) with literal arguments") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"feature {spec!r}: not a name or name(args) with literal arguments")

    def lit(arg: ast.expr) -> Any:
        try:
            value = ast.literal_eval(arg)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None
        if not isinstance(value, _LITERALS):
            raise ValueError(
                f"feature {spec!r}: argument {ast.unparse(arg)!r} is not a literal int, float, string or bool"
            )
        return value

    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError(f"feature {spec!r}: ** arguments are not literals")
        kwargs[kw.arg] = lit(kw.value)
    return node.func.id, [lit(a) for a in node.args], kwargs


def _known() -> str:
    indicators = [p.name for p in registry.plugins("indicator") if p.name not in BUILTINS]
    shown = "logret, vol, rsi, atr, sma<N>, ema<N>, sma(n), ema(n)"
    return f"built-in: {shown}; indicators: {', '.join(indicators) or '(none registered)'}"


def resolve_feature(spec: Any) -> Feature:
    """Parse ``spec`` and resolve it against the built-in features, then the registered indicators."""
    name, args, kwargs = parse_feature(spec)
    m = re.fullmatch(r"(sma|ema)(\d+)", name)
    if m and not args and not kwargs:
        name, args = m.group(1), [int(m.group(2))]
    if name in BUILTINS:
        params = BUILTINS[name]
        if len(args) > len(params):
            raise ValueError(f"feature {spec!r}: {name} takes {len(params)} argument(s), not {len(args)}")
        values: dict[str, Any] = {}
        for (pname, _), a in zip(params, args, strict=False):
            values[pname] = a
        for k, v in kwargs.items():
            if k not in dict(params):
                raise ValueError(f"feature {spec!r}: {name} has no parameter {k!r}")
            if k in values:
                raise ValueError(f"feature {spec!r}: parameter {k!r} given twice")
            values[k] = v
        for pname, default in params:
            if pname not in values:
                if default is None:
                    raise ValueError(f"feature {spec!r}: {name} needs its window, e.g. {name}(20)")
                values[pname] = default
            v = values[pname]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"feature {spec!r}: {pname} must be an int >= 1, not {v!r}")
        return Feature(str(spec), name, "builtin", tuple((p, values[p]) for p, _ in params))
    plugin = registry.get("indicator", name)
    if plugin is None:
        raise ValueError(f"unknown feature {name!r} ({_known()})")
    where = f"feature {spec!r}"
    if len(args) > len(plugin.params):
        raise ValueError(f"{where}: indicator {name!r} takes {len(plugin.params)} argument(s), not {len(args)}")
    given: dict[str, Any] = {p.name: a for p, a in zip(plugin.params, args, strict=False)}
    for k, v in kwargs.items():
        if plugin.param(k) is None:
            known = ", ".join(p.name for p in plugin.params) or "none"
            raise ValueError(f"{where}: indicator {name!r} has no parameter {k!r} (its parameters: {known})")
        if k in given:
            raise ValueError(f"{where}: parameter {k!r} given twice")
        given[k] = v
    for p in plugin.params:
        if p.name in given:
            why = p.refusal(given[p.name])
            if why:
                raise ValueError(f"{where}: parameter {p.name!r} {why}")
        elif p.required:
            raise ValueError(f"{where}: indicator {name!r} needs parameter {p.name!r}")
    bound = plugin.bind(given)
    if plugin.check is not None:
        try:
            plugin.check(**bound)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return Feature(str(spec), name, "indicator", tuple((p.name, bound[p.name]) for p in plugin.params))


def resolve_features(names: Sequence[Any]) -> tuple[Feature, ...]:
    out = tuple(resolve_feature(f) for f in names)
    if not out:
        raise ValueError("features must name at least one feature")
    return out


def check_features(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    resolve_features(names)
    return tuple(names)


def indicator_plugins(names: Sequence[Any]) -> list[registry.Plugin]:
    """The registered indicator plugins ``names`` use (each once, by name)."""
    found = {}
    for f in resolve_features(names):
        p = f.plugin()
        if p is not None:
            found[p.name] = p
    return [found[k] for k in sorted(found)]


def _builtin_column(f: Feature, high: np.ndarray, low: np.ndarray, close: np.ndarray, lr: np.ndarray) -> np.ndarray:
    n = int(f.params.get("n", 0))
    col: Any
    if f.name == "logret":
        col = lr
    elif f.name == "vol":
        col = rolling_std_nb(lr, n)
    elif f.name == "rsi":
        col = rsi_nb(close, n) / 100.0 - 0.5
    elif f.name == "atr":
        col = atr_nb(high, low, close, n) / close
    elif f.name == "sma":
        col = close / rolling_mean_nb(close, n) - 1.0
    else:
        col = close / ema_nb(close, n) - 1.0
    return np.asarray(col, dtype=np.float64)


def raw_features(bars: Any, names: Sequence[Any]) -> np.ndarray:
    """(n, F) raw features of ``bars`` (:class:`sim.Bars`), NaN where a window has not filled yet."""
    high = np.asarray(bars.high, dtype=np.float64)
    low = np.asarray(bars.low, dtype=np.float64)
    close = np.asarray(bars.close, dtype=np.float64)
    cols = []
    lr = logret_nb(close)
    for f in resolve_features(names):
        plugin = f.plugin()
        if plugin is None:
            cols.append(_builtin_column(f, high, low, close, lr))
        else:
            cols.append(registry.check_output(plugin, plugin(bars, f.params), len(close), f.params))
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
