"""The plugin registry: strategies and indicators as plain functions, registered by decorators.

A decorator only records metadata (name, kind, parameters read from the signature) in :data:`REGISTRY` and
returns the function unchanged, so a plugin stays a plain, testable function::

    @indicator
    def zscore(bars: Bars, n: int = 20) -> np.ndarray: ...

    @strategy(check=my_check)
    def bollinger(bars: Bars, n: int = 20, k: float = 2.0, direction: Literal["long", "short"] = "long"): ...

The first parameter is the bars (:class:`~artifact_lake.sim.Bars`); every other parameter is a spec key.
Annotations ``int``, ``float``, ``bool``, ``str`` and ``Literal[...]`` (choices) give its type, its default
makes it optional. The output contract: one float per bar (NaN = no order, 0 = flat, +/-1 and fractions = a
target position); :func:`check_output` enforces it.

sim imports nothing from the lake: discovery (entry points, paths), code hashing and publishing live in
``artifact_lake.experiments.plugins``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

import numpy as np

KINDS = ("strategy", "indicator", "portfolio_strategy")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TYPES: dict[Any, str] = {int: "int", float: "float", bool: "bool", str: "str"}

F = TypeVar("F", bound=Callable[..., Any])
SweepFn = Callable[[Any, Sequence[Mapping[str, Any]]], Iterator[np.ndarray]]
CheckFn = Callable[..., None]


class PluginDefinitionError(TypeError):
    """A decorated function that cannot be a plugin (bad name, parameter without a supported annotation)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a plugin, read from its signature."""

    name: str
    type: str
    """``int``, ``float``, ``bool`` or ``str``."""
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()

    def refusal(self, value: Any) -> str | None:
        """Why ``value`` is refused (``must be int, not str 'x'``), or None when it is accepted."""
        if self.accepts(value):
            return None
        kind = "number" if self.type == "float" else self.type
        if self.choices and Param(self.name, self.type).accepts(value):
            kind = "one of " + ", ".join(repr(c) for c in self.choices)
        return f"must be {kind}, not {type(value).__name__} {value!r}"

    def accepts(self, value: Any) -> bool:
        if self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        return ok and (not self.choices or value in self.choices)

    def describe(self) -> str:
        if self.choices:
            return " or ".join(repr(c) for c in self.choices)
        return "number" if self.type == "float" else self.type

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "choices": list(self.choices),
        }


@dataclass(frozen=True)
class Plugin:
    """A registered strategy or indicator."""

    name: str
    kind: str
    func: Callable[..., Any]
    params: tuple[Param, ...]
    doc: str = ""
    check: CheckFn | None = None
    """Optional: raises ValueError for a parameter combination the plugin cannot run."""
    sweep: SweepFn | None = None
    """Optional fast path for a whole sweep: ``sweep(bars, combos)`` yields one output per combination, each
    equal to the per-combination call."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """The lake's own hooks: ``grid(bars, combos, execution)``, a built-in's metrics of a whole sweep from a
    grid kernel (used for built-ins only: a user plugin's orders go through the contract and the guard)."""

    @property
    def module(self) -> str:
        return str(getattr(self.func, "__module__", "") or "")

    @property
    def builtin(self) -> bool:
        return self.module.startswith("artifact_lake.")

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: ``values`` over the defaults (keys that are no parameter are dropped)."""
        out = self.defaults()
        out.update({k: v for k, v in values.items() if self.param(k) is not None})
        return out

    def __call__(self, bars: Any, values: Mapping[str, Any]) -> np.ndarray:
        """Call the plugin on ``bars`` with the parameters ``values`` (defaults filled in)."""
        return np.asarray(self.func(bars, **self.bind(values)))


REGISTRY: dict[tuple[str, str], Plugin] = {}
"""(kind, name) -> plugin."""


class DuplicatePlugin(ValueError):
    """Two different functions registered under one name."""


def _param(name: str, annotation: Any, default: Any, where: str) -> Param:
    required = default is inspect.Parameter.empty
    choices: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is Literal:
        choices = tuple(typing.get_args(annotation))
        kinds = {type(c) for c in choices}
        if not choices or len(kinds) != 1 or next(iter(kinds)) not in _TYPES:
            raise PluginDefinitionError(f"{where}: parameter {name!r}: Literal choices must be of one simple type")
        type_name = _TYPES[next(iter(kinds))]
    elif annotation in _TYPES:
        type_name = _TYPES[annotation]
    else:
        raise PluginDefinitionError(
            f"{where}: parameter {name!r} needs an annotation int, float, bool, str or Literal[...], not {annotation!r}"
        )
    value = None if required else default
    probe = Param(name, type_name, value, required, choices)
    if not required and not probe.accepts(default):
        raise PluginDefinitionError(f"{where}: parameter {name!r}: default {default!r} is not {probe.describe()}")
    return probe


def read_params(func: Callable[..., Any]) -> tuple[Param, ...]:
    """The spec parameters of ``func``: every parameter after the first (the bars), from its signature."""
    where = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # an annotation that does not resolve: say which function
        raise PluginDefinitionError(f"{where}: cannot read its annotations ({exc})") from exc
    ps = list(sig.parameters.values())
    if not ps or ps[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise PluginDefinitionError(f"{where}: the first parameter must take the bars")
    out = []
    for p in ps[1:]:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise PluginDefinitionError(f"{where}: *args and **kwargs cannot be spec parameters")
        if p.name in ("name", "symbols"):
            raise PluginDefinitionError(f"{where}: parameter name {p.name!r} is reserved by the spec")
        out.append(_param(p.name, hints.get(p.name, p.annotation), p.default, where))
    return tuple(out)


def _register(
    kind: str,
    func: F,
    name: str | None,
    check: CheckFn | None,
    sweep: SweepFn | None,
    extra: Mapping[str, Any] | None = None,
) -> F:
    pname = name or func.__name__
    if not NAME_RE.match(pname):
        raise PluginDefinitionError(f"plugin name {pname!r}: use letters, digits and _ (not starting with a digit)")
    plugin = Plugin(pname, kind, func, read_params(func), inspect.getdoc(func) or "", check, sweep, extra or {})
    old = REGISTRY.get((kind, pname))
    if old is not None and old.func is not func:
        same_origin = (old.module, getattr(old.func, "__qualname__", "")) == (
            plugin.module,
            getattr(func, "__qualname__", ""),
        )
        if not same_origin:  # the same module loaded again (an edited file) replaces itself; others clash
            raise DuplicatePlugin(f"two {kind} plugins named {pname!r}: {old.module} and {plugin.module}")
    REGISTRY[(kind, pname)] = plugin
    return func


@overload
def strategy(func: F, *, name: str | None = ..., check: CheckFn | None = ..., sweep: SweepFn | None = ...) -> F: ...
@overload
def strategy(
    func: None = ..., *, name: str | None = ..., check: CheckFn | None = ..., sweep: SweepFn | None = ...
) -> Callable[[F], F]: ...
def strategy(
    func: F | None = None,
    *,
    name: str | None = None,
    check: CheckFn | None = None,
    sweep: SweepFn | None = None,
) -> F | Callable[[F], F]:
    """Register ``func(bars, **params) -> one float per bar`` as a strategy; returns ``func`` unchanged.

    ``check(**params)`` may raise ValueError to refuse a combination (at create). ``sweep(bars, combos)`` may
    yield every combination's output at once, sharing work (each must equal the per-combination call).
    """

    def deco(f: F) -> F:
        return _register("strategy", f, name, check, sweep)

    return deco(func) if func is not None else deco


@overload
def indicator(func: F, *, name: str | None = ..., check: CheckFn | None = ...) -> F: ...
@overload
def indicator(func: None = ..., *, name: str | None = ..., check: CheckFn | None = ...) -> Callable[[F], F]: ...
def indicator(func: F | None = None, *, name: str | None = None, check: CheckFn | None = None) -> F | Callable[[F], F]:
    """Register ``func(bars, **params) -> one float per bar`` as an indicator; returns ``func`` unchanged."""

    def deco(f: F) -> F:
        return _register("indicator", f, name, check, None)

    return deco(func) if func is not None else deco


@overload
def portfolio_strategy(
    func: F, *, name: str | None = ..., check: CheckFn | None = ..., sweep: SweepFn | None = ...
) -> F: ...
@overload
def portfolio_strategy(
    func: None = ..., *, name: str | None = ..., check: CheckFn | None = ..., sweep: SweepFn | None = ...
) -> Callable[[F], F]: ...
def portfolio_strategy(
    func: F | None = None,
    *,
    name: str | None = None,
    check: CheckFn | None = None,
    sweep: SweepFn | None = None,
) -> F | Callable[[F], F]:
    """Register ``func(panel, **params) -> (bars, symbols) target weights`` as a portfolio strategy; returns
    ``func`` unchanged. The first parameter is a :class:`~artifact_lake.sim.Panel`; NaN = leave that symbol
    as it is. ``check`` and ``sweep`` as for :func:`strategy`; :func:`check_weights` enforces the output."""

    def deco(f: F) -> F:
        return _register("portfolio_strategy", f, name, check, sweep)

    return deco(func) if func is not None else deco


def get(kind: str, name: str) -> Plugin | None:
    return REGISTRY.get((kind, name))


def plugins(kind: str | None = None) -> list[Plugin]:
    """Registered plugins, by kind then name."""
    return sorted((p for p in REGISTRY.values() if kind in (None, p.kind)), key=lambda p: (p.kind, p.name))


def unregister_module(module: str) -> None:
    """Forget every plugin defined in ``module`` (before that module is loaded again)."""
    for key in [k for k, p in REGISTRY.items() if p.module == module or p.module.startswith(module + ".")]:
        del REGISTRY[key]


def combo_label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()))


def check_output(plugin: Plugin, out: Any, n: int, values: Mapping[str, Any]) -> np.ndarray:
    """The output contract: ``n`` finite-or-NaN floats. Refusals are one line naming plugin, combination, bar."""
    where = f"{plugin.kind} {plugin.name!r} ({combo_label(values)})"
    a = np.asarray(out)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{where}: returned shape {a.shape}, not one value per bar ({n},)")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{where}: returned dtype {a.dtype}, not float")
    a = a.astype(np.float64, copy=False)
    bad = np.flatnonzero(np.isinf(a))
    if bad.size:
        raise ValueError(f"{where}: bar {int(bad[0])} is {a[bad[0]]} (infinite values are not orders)")
    return np.ascontiguousarray(a)


def check_weights(plugin: Plugin, out: Any, shape: tuple[int, int], values: Mapping[str, Any]) -> np.ndarray:
    """The portfolio output contract: a (bars, symbols) float array, finite or NaN."""
    where = f"{plugin.kind} {plugin.name!r} ({combo_label(values)})"
    a = np.asarray(out)
    if a.shape != shape:
        raise ValueError(f"{where}: returned shape {a.shape}, not (bars, symbols) {shape}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{where}: returned dtype {a.dtype}, not float")
    a = a.astype(np.float64, copy=False)
    bad = np.argwhere(np.isinf(a))
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise ValueError(f"{where}: bar {i}, symbol {j} is {a[i, j]} (infinite values are not weights)")
    return np.ascontiguousarray(a)
