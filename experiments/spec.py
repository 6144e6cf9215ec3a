"""Experiment specs: a TOML contract users and scripts write (see docs/experiments.md).

``create`` parses the file, checks every key (unknown keys, wrong types, missing roles: one line naming the
key), freezes every input reference to its full artifact id, and hashes the canonical JSON of the result:
the experiment id. Execution settings keep only what the user wrote; defaults come from the code when the
experiment runs, so a change of the simulator's defaults shows up when a result is reproduced.

Rules checked at create, so that nothing that cannot run or cannot be published is recorded:
* a name is one path component of letters, digits and ``. _ : = + -`` (results are named
  ``exp/<name>/<role>``), at most 100 characters;
* a sweep is counted, never expanded, and refused above ``max_combinations`` (:data:`MAX_COMBINATIONS`);
* ``strategy.symbols`` (``env.symbol`` for training) must name symbols the ohlcv inputs hold;
* a policy backtest's ``tensors`` input must fit the network its meta describes (see ``train.check_policy``).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from .errors import SpecError

if TYPE_CHECKING:
    from artifact_lake.artifact_store import Lake

KINDS = ("backtest", "train")
MAX_COMBINATIONS = 10_000
"""Default limit on a sweep's combinations at create (``--max-combinations`` raises it)."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+-]{0,99}$")
TOP_KEYS = {
    "name",
    "kind",
    "seed",
    "inputs",
    "strategy",
    "execution",
    "sweep",
    "results",
    "env",
    "reward",
    "trainer",
    "portfolio",
}
RESULTS_KEYS: dict[str, tuple[type, ...]] = {
    "equity": (str,),
    "best": (int,),
    "by": (str,),
    "ascending": (bool,),
    "pin": (list,),
}
"""The ``[results]`` section of a sweep (signal or portfolio strategy): which combinations keep per-bar equity and
trades (fills and positions for a portfolio); metrics are kept for every combination. See :class:`Keep`."""
AUTO_ALL = 100
"""Without a ``[results]`` section a sweep of at most this many combinations keeps everything; a larger one
keeps the best :attr:`Keep.best` by Sharpe per symbol."""
_NO_PORTFOLIO_METRICS = ("win_rate", "profit_factor")
"""Metrics columns that are NaN for every portfolio (it has no round trips): no ``[results] by`` of one."""


def results_metrics(portfolio: bool) -> tuple[str, ...]:
    """The metrics ``[results] by`` may name: the metrics columns, or for a portfolio strategy those that
    apply to a portfolio plus ``sim.PORTFOLIO_METRIC_NAMES``."""
    from ._tables import METRIC_COLUMNS

    if not portfolio:
        return METRIC_COLUMNS
    from artifact_lake.sim import PORTFOLIO_METRIC_NAMES

    return tuple(k for k in METRIC_COLUMNS if k not in _NO_PORTFOLIO_METRICS) + PORTFOLIO_METRIC_NAMES


PORTFOLIO_KEYS: dict[str, tuple[type, ...]] = {"direction": (str,), "min_trade": (int, float)}
"""The ``[portfolio]`` section (portfolio strategies only): ``run_portfolio``'s direction and min_trade."""

# strategy name -> (required input roles, {param: (type, default)}); type is a tuple of accepted Python types
_NUM = (int, float)
# The lake's own kinds of work that are no signal plugin: strategy name -> (required input roles,
# {param: (type, default)}); type is a tuple of accepted Python types. Every other strategy name resolves among
# the registered plugins (``sim.plugins``; the built-ins sma_cross, rsi_threshold and breakout are plugins too).
STRATEGIES: dict[str, tuple[tuple[str, ...], dict[str, tuple[tuple[type, ...], Any]]]] = {
    "alert_replay": (
        ("ohlcv", "alerts"),
        {
            "take_profit": ((list,), []),
            "take_profit_sizes": ((list,), []),
            "stop_loss": (_NUM, None),
            "trailing_stop": (_NUM, None),
            "max_hold_bars": ((int,), 0),
            "latency_bars": ((int,), 0),
            "sizing": ((str,), "fraction"),
            "size": (_NUM, 0.1),
            "max_concurrent": ((int,), 10),
            "require_coverage": ((bool,), False),
        },
    ),
    "policy": (("ohlcv", "policy"), {"symbols": ((list,), [])}),  # a trained policy, greedily
}
ROLE_TYPES = {"ohlcv": "ohlcv", "alerts": "alerts", "policy": "tensors"}


def _fail(key: str, message: str) -> SpecError:
    return SpecError(f"spec key {key!r}: {message}")


def _unknown(where: str, key: str, allowed: set[str] | dict[str, Any]) -> SpecError:
    hint = difflib.get_close_matches(key, sorted(allowed), n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(allowed))})"
    return SpecError(f"unknown spec key {where}{key!r}{extra}")


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("number" if t is float else t.__name__ for t in types if not (t is int and float in types))


def plugin_params(plugin: Any) -> dict[str, tuple[Any, Any]]:
    """A plugin's spec keys in the shape of :data:`STRATEGIES`: its parameters (by their ``Param``) and ``symbols``."""
    out: dict[str, tuple[Any, Any]] = {p.name: (p, p.default) for p in plugin.params}
    out["symbols"] = ((list,), [])
    return out


def _check_param(key: str, value: Any, kind: Any) -> None:
    """``kind`` is a tuple of accepted types, or a plugin's ``Param`` (its annotation, Literal choices)."""
    if isinstance(kind, tuple):
        _check_value(key, value, kind)
    elif (why := kind.refusal(value)) is not None:
        raise _fail(key, why)


def _check_value(key: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise _fail(key, f"must be {_type_name(types)}, not {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed, checked and frozen spec."""

    doc: dict[str, Any]
    """The canonical spec: frozen input ids, only keys the user wrote."""

    @property
    def id(self) -> str:
        return blake3.blake3(canonical_json(self.doc).encode()).hexdigest()

    @property
    def name(self) -> str:
        return str(self.doc.get("name") or self.id[:12])

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def inputs(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.doc["inputs"].items()}

    @property
    def n_combos(self) -> int:
        """How many combinations the sweep has, counted without expanding it."""
        return math.prod(len(v) for v in self.doc.get("sweep", {}).values())

    def iter_combos(self) -> Iterator[dict[str, Any]]:
        """One strategy-parameter dict per sweep combination (keys in sorted order; values as written)."""
        base = dict(self.doc.get("strategy", {}))
        sweep = self.doc.get("sweep", {})
        keys = sorted(sweep)
        for values in itertools.product(*(sweep[k] for k in keys)) if keys else [()]:
            combo = dict(base)
            combo.update(zip(keys, values, strict=True))
            yield combo

    def combos(self) -> list[dict[str, Any]]:
        """:meth:`iter_combos` as a list."""
        return list(self.iter_combos())

    @property
    def swept(self) -> list[str]:
        return sorted(self.doc.get("sweep", {}))


@dataclass(frozen=True)
class Keep:
    """Which (combination, symbol) pairs of a sweep keep per-bar equity and trades (a portfolio strategy: which
    combinations keep equity, fills and positions, its one symbol being ``*``); the spec's ``[results]``
    section, or its default (:data:`AUTO_ALL`), so the choice is part of the experiment's id."""

    equity: str = "best"
    """``all`` (every combination), or ``best``: the ``best`` highest (``ascending``: lowest) by the metric
    ``by`` on each symbol (NaN last, ties to the lower combination), plus every combination ``pin`` names."""
    best: int = 10
    by: str = "sharpe"
    ascending: bool = False
    pin: tuple[tuple[tuple[str, Any], ...], ...] = ()
    """Tables of strategy parameters; a pin names every combination whose values equal them."""

    @classmethod
    def of(cls, spec: ExperimentSpec) -> Keep:
        raw = spec.doc.get("results")
        if raw is None:
            return cls("all") if spec.n_combos <= AUTO_ALL else cls()
        pins = tuple(tuple(sorted(p.items())) for p in raw.get("pin", []))
        fields_ = {k: v for k, v in raw.items() if k != "pin"}
        return cls(**fields_, pin=pins)

    def pinned(self, combo: dict[str, Any]) -> bool:
        return any(all(combo.get(k) == v for k, v in p) for p in self.pin)


def canonical_json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_spec(text: str, source: str = "spec") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from exc


def load_spec_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read the spec ({exc})") from exc
    return parse_spec(text, str(p))


def check_experiment_name(name: str) -> None:
    """Refuse a name that cannot name results (``exp/<name>/<role>``) or a file: ``my exp``, ``../../etc``."""
    if not NAME_RE.match(name) or ".." in name:
        raise _fail(
            "name",
            f"{name!r} cannot name an experiment: use 1 to 100 letters, digits and . _ : = + - starting with a"
            " letter or digit (no spaces, no '/', no '..')",
        )


def input_symbols(lake: Lake, ohlcv_ids: list[str]) -> list[str]:
    """The distinct symbols of the ohlcv artifacts (only their symbol column, from checked bytes)."""
    import pyarrow.compute as pc

    found: set[str] = set()
    for artifact_id in ohlcv_ids:
        found.update(pc.unique(lake.read(artifact_id, columns=["symbol"]).column("symbol")).to_pylist())
    return sorted(found)


def check_symbols(lake: Lake, ohlcv_ids: list[str], wanted: list[str], key: str) -> None:
    """Refuse symbols the ohlcv inputs do not hold, naming them and the ones there are."""
    there = input_symbols(lake, ohlcv_ids)
    missing = [s for s in wanted if s not in there]
    if missing:
        raise _fail(key, f"{', '.join(missing)} not in the ohlcv inputs ({', '.join(there)})")


def _freeze_inputs(inputs: Any, roles: tuple[str, ...], lake: Lake) -> dict[str, list[str]]:
    from artifact_lake.artifact_store import NotFound
    from artifact_lake.schemas.errors import LakeError

    if not isinstance(inputs, dict):
        raise _fail("inputs", f"must be a table of role = [references]; this spec needs {', '.join(roles)}")
    for role in inputs:
        if role not in roles:
            raise _unknown("inputs.", role, set(roles))
    out: dict[str, list[str]] = {}
    for role in roles:
        refs = inputs.get(role)
        if refs is None:
            raise _fail(f"inputs.{role}", f"missing: the strategy needs an artifact of type {ROLE_TYPES[role]!r}")
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise _fail(f"inputs.{role}", "must be a reference or a list of references")
        if role == "policy" and len(refs) != 1:
            raise _fail("inputs.policy", f"a policy backtest takes one policy, not {len(refs)}")
        ids = []
        for ref in refs:
            try:
                artifact = lake.get(ref)
            except NotFound as exc:
                raise _fail(f"inputs.{role}", str(exc)) from exc
            except LakeError as exc:
                raise _fail(f"inputs.{role}", str(exc)) from exc
            if artifact.type != ROLE_TYPES[role]:
                raise _fail(f"inputs.{role}", f"{ref!r} is a {artifact.type!r} artifact, not {ROLE_TYPES[role]!r}")
            ids.append(artifact.id)
        out[role] = sorted(set(ids))
    return out
