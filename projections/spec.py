"""Projection specs: TOML files naming the input roles, typed parameters and the SQL that builds the
relations. Built-in specs ship in ``projections/specs/``; a lake adds its own in
``<lake>/projections/specs/`` (a lake spec may not shadow a built-in one)::

    name = "ohlcv"
    version = 1                     # bump when the meaning of the SQL changes
    relations = ["ohlcv", "gaps"]   # what the SQL must create
    [[inputs]]
    role = "ohlcv"                  # the SQL reads it as the view input_ohlcv
    type = "ohlcv"                  # artifact type every input of the role must have
    many = true                     # several artifacts allowed (their union)
    [params.timeframe]
    type = "duration"               # duration | integer | number | text
    default = ""                    # "" = null
    [sql]
    text = "CREATE TABLE ohlcv AS SELECT ... FROM input_ohlcv ..."

Parameters reach the SQL only through the one-row table ``_params`` (a duration ``x`` as ``x_us``,
microseconds), filled with bound values: user text never becomes SQL.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durations import parse_duration
from .errors import ProjectionError, UnknownSpec

BUILTIN_DIR = Path(__file__).parent / "specs"
PARAM_TYPES = {"duration": "BIGINT", "integer": "BIGINT", "number": "DOUBLE", "text": "VARCHAR"}


@dataclass(frozen=True)
class Role:
    role: str
    type: str
    many: bool


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | int | float
    description: str

    @property
    def column(self) -> str:
        return f"{self.name}_us" if self.type == "duration" else self.name

    def value(self, raw: Any) -> int | float | str | None:
        """The canonical value of ``raw`` (a CLI string or a Python value); "" is null."""
        if raw is None or raw == "":
            return None
        try:
            if self.type == "duration":
                return parse_duration(raw)
            if self.type == "integer":
                return int(raw)
            if self.type == "number":
                return float(raw)
            return str(raw)
        except ValueError as exc:
            raise ProjectionError(f"parameter {self.name!r}: {exc}") from exc


@dataclass(frozen=True)
class Spec:
    name: str
    version: int
    description: str
    inputs: tuple[Role, ...]
    params: tuple[Param, ...]
    relations: tuple[str, ...]
    sql: str
    source: str

    def role(self, name: str) -> Role | None:
        return next((r for r in self.inputs if r.role == name), None)

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, int | float | str | None]:
        """Defaults filled in and values made canonical; unknown names refused with a suggestion."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        for key in given:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                extra = (
                    f"; did you mean {hint[0]!r}?"
                    if hint
                    else (f"; it takes {', '.join(sorted(known))}" if known else "; it takes none")
                )
                raise ProjectionError(f"spec {self.name!r} has no parameter {key!r}{extra}")
        return {name: p.value(given.get(name, p.default)) for name, p in sorted(known.items())}


def load_spec(path: Path) -> Spec:
    def fail(msg: str) -> ProjectionError:
        return ProjectionError(f"projection spec {path}: {msg}")

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise fail(f"cannot read: {exc}") from exc
    allowed = {"name", "version", "description", "inputs", "params", "relations", "sql"}
    for key in raw:
        if key not in allowed:
            raise fail(f"unknown key {key!r}")
    if raw.get("name") != path.stem:
        raise fail(f"'name' must be {path.stem!r}, the file's name")
    if not isinstance(raw.get("version"), int):
        raise fail("'version' must be an integer")
    inputs, params_raw, relations = raw.get("inputs", []), raw.get("params", {}), raw.get("relations", [])
    if not isinstance(inputs, list) or not all(isinstance(r, dict) for r in inputs):
        raise fail(f"'inputs' must be a list of [[inputs]] tables (role, type), not {inputs!r}")
    if not isinstance(params_raw, dict) or not all(isinstance(p, dict) for p in params_raw.values()):
        raise fail("'params' must be a table of [params.NAME] tables (type, default, description)")
    if not isinstance(relations, list) or not all(isinstance(r, str) and r for r in relations):
        raise fail(f"'relations' must be a list of table names, not {relations!r}")
    roles = []
    for i, r in enumerate(inputs):
        if not isinstance(r.get("role"), str) or not r["role"].isidentifier() or not isinstance(r.get("type"), str):
            raise fail(f"inputs[{i}] needs 'role' (an identifier) and 'type'")
        roles.append(Role(r["role"], r["type"], bool(r.get("many", False))))
    params = []
    for name, p in sorted(params_raw.items()):
        if not name.isidentifier() or p.get("type") not in PARAM_TYPES:
            raise fail(f"params.{name}: name must be an identifier and type one of {', '.join(PARAM_TYPES)}")
        params.append(Param(name, p["type"], p.get("default", ""), str(p.get("description", ""))))
    sql = raw.get("sql", {}).get("text") if isinstance(raw.get("sql"), dict) else raw.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise fail("'sql.text' must hold the SQL")
    return Spec(
        name=raw["name"],
        version=raw["version"],
        description=str(raw.get("description", "")).strip(),
        inputs=tuple(roles),
        params=tuple(params),
        relations=tuple(relations),
        sql=sql,
        source=str(path),
    )


def spec_paths(lake_specs: Path | None) -> dict[str, Path]:
    paths = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}
    if lake_specs is not None and lake_specs.is_dir():
        for p in sorted(lake_specs.glob("*.toml")):
            if p.stem in paths:
                raise ProjectionError(f"projection spec {p}: {p.stem!r} is built in and cannot be redefined")
            paths[p.stem] = p
    return paths


def get_spec(name: str, lake_specs: Path | None = None) -> Spec:
    paths = spec_paths(lake_specs)
    if name not in paths:
        hint = difflib.get_close_matches(name, sorted(paths), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f"; known specs: {', '.join(sorted(paths))}"
        raise UnknownSpec(f"unknown projection spec {name!r}{extra}")
    return load_spec(paths[name])
