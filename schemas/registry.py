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

Invariant: a schema's ``fingerprint`` is the blake3 of its canonical definition and of
:data:`CONFORM_VERSION`, so two lakes with the same fingerprint for a type validate and cast data the same
way. A lake remembers which artifact a source file became per fingerprint, so a change to how data is
conformed must bump :data:`CONFORM_VERSION`: files are then conformed again instead of being mapped to what
the old rules made of them.
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
CONFORM_VERSION = 2
"""How ``schemas.conform`` normalises types; 2: ``timestamp[s]``, ``time32[s]``, ``date64`` become the types
Parquet reads back (issue #12, item 5)."""
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


def _flag(path: Path, where: str, value: object) -> bool:
    """A TOML boolean; ``"false"`` (a string, and true in Python) is refused rather than read as true."""
    if not isinstance(value, bool):
        raise _fail(path, f"{where} must be true or false, not {value!r}")
    return value


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
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, "'version' must be a positive integer")
    extra_columns = _flag(path, "'extra_columns'", raw.get("extra_columns", False))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, "'description' must be a string")
    raw_columns = raw.get("columns", [])
    if not isinstance(raw_columns, list) or not all(isinstance(c, dict) for c in raw_columns):
        raise _fail(path, "'columns' must be a list of tables ([[columns]])")
    raw_checks = raw.get("checks", [])
    if not isinstance(raw_checks, list) or not all(isinstance(c, dict) for c in raw_checks):
        raise _fail(path, "'checks' must be a list of tables ([[checks]])")
    columns = []
    for i, col in enumerate(raw_columns):
        _check_keys(path, f"columns[{i}]", col, _COLUMN_KEYS)
        if not isinstance(col.get("name"), str) or not isinstance(col.get("type"), str):
            raise _fail(path, f"columns[{i}] needs a string 'name' and 'type'")
        try:
            parse_type(col["type"])
        except SchemaError as exc:
            raise _fail(path, f"columns[{i}] ({col['name']}): {exc}") from exc
        nullable = _flag(path, f"columns[{i}] ({col['name']}): 'nullable'", col.get("nullable", False))
        text = col.get("description", "")
        if not isinstance(text, str):
            raise _fail(path, f"columns[{i}] ({col['name']}): 'description' must be a string")
        columns.append(Column(col["name"], col["type"], nullable, text))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise _fail(path, "a column is declared twice")
    checks = []
    for i, chk in enumerate(raw_checks):
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
            "conform": CONFORM_VERSION,
            "name": name,
            "version": version,
            "extra_columns": extra_columns,
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
        extra_columns=extra_columns,
        description=description,
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
