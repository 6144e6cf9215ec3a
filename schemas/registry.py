"""Declarative artifact types: one TOML file per type, loaded into frozen :class:`Schema` values.

Built-in types ship in ``schemas/types/*.toml``. A lake adds its own by dropping ``NAME.toml`` into
``<lake>/schemas/``; a lake file may not redefine a built-in type (ids would stop meaning the same thing
across lakes). A schema file looks like::

    name = "ohlcv"
    version = 1
    description = "..."
    extra_columns = false          # true: columns beyond the declared ones are kept as given

    [[columns]]
    name = "ts"
    type = "timestamp[us, tz=UTC]"
    nullable = false

    [[checks]]
    kind = "increasing"            # see schemas.validate for every kind and its keys
    column = "ts"
    by = ["symbol"]

Invariant: a schema's ``fingerprint`` is the blake3 of its canonical definition, so two lakes with the
same fingerprint for a type validate and cast data the same way.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SchemaError, UnknownType

BUILTIN_DIR = Path(__file__).parent / "types"

CHECK_KEYS: dict[str, set[str]] = {
    "increasing": {"column", "by"},
    "unique": {"columns"},
    "compare": {"left", "op", "right"},
    "finite": {"columns"},
    "range": {"columns", "gt", "ge", "lt", "le"},
    "in_set": {"column", "values"},
    "non_empty": {"columns"},
}
_TOP_KEYS = {"name", "version", "description", "extra_columns", "columns", "checks"}
_COLUMN_KEYS = {"name", "type", "nullable", "description"}


@dataclass(frozen=True)
class Column:
    """One declared column."""

    name: str
    """Column name, exactly as stored."""
    type: str
    """pyarrow type string, e.g. ``float64`` or ``timestamp[us, tz=UTC]``."""
    nullable: bool = False
    """Whether nulls are allowed."""
    description: str = ""
    """What the column holds, for people."""


@dataclass(frozen=True)
class Check:
    """One declarative row check; ``params`` holds the check's keys from the schema file."""

    kind: str
    """One of :data:`CHECK_KEYS`."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """The check's arguments (column names, bounds, allowed values)."""


@dataclass(frozen=True)
class Schema:
    """An artifact type: its columns, checks and version."""

    name: str
    """Type name, e.g. ``ohlcv``."""
    version: int
    """Bumped whenever the meaning of the columns or checks changes; part of every artifact id."""
    columns: tuple[Column, ...]
    """Declared columns in their canonical order."""
    checks: tuple[Check, ...]
    """Row checks every artifact of this type passes."""
    extra_columns: bool
    """Whether columns beyond the declared ones are accepted (kept after them, in the order given)."""
    description: str
    """What an artifact of this type is, for people."""
    fingerprint: str
    """blake3 of the canonical definition."""
    source: str
    """File the schema was loaded from."""

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


def _fail(path: Path, message: str) -> SchemaError:
    return SchemaError(f"schema file {path}: {message}")


def _check_keys(path: Path, where: str, got: Mapping[str, Any], allowed: set[str]) -> None:
    for key in got:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _fail(path, f"unknown key {key!r} in {where}{extra}")


def load_schema_file(path: Path) -> Schema:
    """Parse and check one schema file."""
    from ._types import parse_type
    from .validate import check_definition

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, f"cannot read: {exc}") from exc
    _check_keys(path, "the top level", raw, _TOP_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(path, "'name' must be a non-empty string")
    if name != path.stem:
        raise _fail(path, f"'name' is {name!r} but the file is named {path.name!r}")
    version = raw.get("version")
    if not isinstance(version, int) or version < 1:
        raise _fail(path, "'version' must be a positive integer")
    columns = []
    for i, col in enumerate(raw.get("columns", [])):
        _check_keys(path, f"columns[{i}]", col, _COLUMN_KEYS)
        if not isinstance(col.get("name"), str) or not isinstance(col.get("type"), str):
            raise _fail(path, f"columns[{i}] needs a string 'name' and 'type'")
        try:
            parse_type(col["type"])
        except SchemaError as exc:
            raise _fail(path, f"columns[{i}] ({col['name']}): {exc}") from exc
        columns.append(Column(col["name"], col["type"], bool(col.get("nullable", False)), col.get("description", "")))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise _fail(path, "a column is declared twice")
    checks = []
    for i, chk in enumerate(raw.get("checks", [])):
        kind = chk.get("kind")
        if kind not in CHECK_KEYS:
            hint = difflib.get_close_matches(str(kind), sorted(CHECK_KEYS), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _fail(path, f"checks[{i}]: unknown kind {kind!r}{extra}")
        params = {k: v for k, v in chk.items() if k != "kind"}
        _check_keys(path, f"checks[{i}] ({kind})", params, CHECK_KEYS[kind])
        checks.append(Check(kind, params))
    canonical = json.dumps(
        {
            "name": name,
            "version": version,
            "extra_columns": bool(raw.get("extra_columns", False)),
            "columns": [[c.name, c.type, c.nullable] for c in columns],
            "checks": [[c.kind, dict(sorted(c.params.items()))] for c in checks],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    import blake3

    schema = Schema(
        name=name,
        version=version,
        columns=tuple(columns),
        checks=tuple(checks),
        extra_columns=bool(raw.get("extra_columns", False)),
        description=str(raw.get("description", "")),
        fingerprint=blake3.blake3(canonical.encode()).hexdigest(),
        source=str(path),
    )
    try:
        check_definition(schema)
    except SchemaError as exc:
        raise _fail(path, str(exc)) from exc
    return schema


class Registry:
    """The types known to one lake: the built-ins plus the lake's own ``schemas/`` folder."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._paths: dict[str, Path] = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}
        self._cache: dict[str, Schema] = {}
        if extra_dir is not None and extra_dir.is_dir():
            for p in sorted(extra_dir.glob("*.toml")):
                if p.stem in self._paths:
                    raise SchemaError(f"schema file {p}: type {p.stem!r} is built in and cannot be redefined")
                self._paths[p.stem] = p

    def names(self) -> list[str]:
        return sorted(self._paths)

    def get(self, name: str) -> Schema:
        """The schema of type ``name``; :class:`UnknownType` with a suggestion if there is none."""
        if name not in self._cache:
            path = self._paths.get(name)
            if path is None:
                hint = difflib.get_close_matches(name, self.names(), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; known types: {', '.join(self.names())}"
                raise UnknownType(f"unknown artifact type {name!r}{extra}")
            self._cache[name] = load_schema_file(path)
        return self._cache[name]
