"""Build, find and drop projections: disposable DuckDB databases made from frozen artifact sets.

Invariants:
* The key is the blake3 of (spec name, version and SQL, canonical parameters, the sorted input ids of
  every role, :data:`CODE_VERSION`). The same key always means the same relations.
* A build happens in ``tmp/`` and is published with ``os.link`` into ``projections/<key>.duckdb``: the
  first finished build of a key wins, a concurrent one discards its copy, and a reader never sees a
  half-built file. A projection found by key is reused as it is.
* Inputs are read by DuckDB straight from the verified object files (file hash checked first); the input
  views are dropped at the end, so the database holds no paths into the lake.
* Several ``ohlcv`` artifacts in one role are unioned with one rule: identical (symbol, ts) rows collapse,
  differing ones are an error naming both artifacts, the symbol and the time. Other roles with several
  artifacts are unioned with identical rows collapsed.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from artifact_lake.artifact_store import CorruptArtifact
from artifact_lake.artifact_store import Lake as _StoreLake
from artifact_lake.artifact_store.hashing import file_hash
from artifact_lake.artifact_store.objects import fsync_dir, object_path, stage_lock

from .errors import ProjectionError, QueryError
from .spec import PARAM_TYPES, Spec, get_spec

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# 2: files are written in DuckDB's v1.1.0 storage format (any client from 1.1 on opens them)
CODE_VERSION = 2
# DuckDB 1.1's storage format, which every client from 1.1 on reads. Builds write it so a
# projection opens in the DuckDB CLI, DBeaver or an older Python client, not only in the version that built it.
STORAGE_VERSION = "v1.1.0"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_META = "_projection"


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    import duckdb

    config: dict[str, Any] = {} if read_only else {"storage_compatibility_version": STORAGE_VERSION}
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Projection:
    """A built projection. Open it read-only with :meth:`connect`, or query with :meth:`arrow` / :meth:`polars`."""

    key: str
    path: Path
    spec: str
    inputs: dict[str, list[str]]
    params: dict[str, Any]
    reused: bool = False
    relations: list[str] = field(default_factory=list)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only DuckDB connection (writes fail)."""
        return _connect(self.path, read_only=True)

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run read-only ``sql`` (with bound ``params``) and return a pyarrow Table."""
        import duckdb

        con = self.connect()
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {_first_line(exc)}") from exc
        finally:
            con.close()

    def polars(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """Run read-only ``sql`` and return a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.arrow(sql, params))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": str(self.path),
            "spec": self.spec,
            "inputs": self.inputs,
            "params": self.params,
            "reused": self.reused,
            "relations": self.relations,
        }


def projection_key(spec: Spec, params: Mapping[str, Any], inputs: Mapping[str, Sequence[str]]) -> str:
    doc = {
        "spec": spec.name,
        "version": spec.version,
        "sql": spec.sql,
        "params": dict(sorted(params.items())),
        "inputs": {role: sorted(ids) for role, ids in sorted(inputs.items())},
        "code": CODE_VERSION,
    }
    return blake3.blake3(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _resolve_inputs(lake: _StoreLake, spec: Spec, inputs: Mapping[str, Any]) -> dict[str, list[str]]:
    import difflib

    out: dict[str, list[str]] = {}
    roles = {r.role for r in spec.inputs}
    for role, refs in inputs.items():
        if role not in roles:
            hint = difflib.get_close_matches(role, sorted(roles), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else f"; it takes {', '.join(sorted(roles))}"
            raise ProjectionError(f"spec {spec.name!r} has no input role {role!r}{extra}")
        refs = [refs] if isinstance(refs, str) else list(refs)
        out[role] = sorted({lake.resolve(ref) for ref in refs})
    for r in spec.inputs:
        ids = out.get(r.role, [])
        if not ids:
            raise ProjectionError(f"spec {spec.name!r} needs input role {r.role!r} (an artifact of type {r.type!r})")
        if len(ids) > 1 and not r.many:
            raise ProjectionError(f"input role {r.role!r} of spec {spec.name!r} takes one artifact, got {len(ids)}")
        for artifact_id in ids:
            got = lake.get(artifact_id).type
            if got != r.type:
                raise ProjectionError(
                    f"input role {r.role!r} needs an artifact of type {r.type!r}, but {artifact_id[:12]} is {got!r}"
                )
    return out


def _verify_inputs(lake: _StoreLake, ids: Sequence[str]) -> None:
    """The cheap verify: every object exists and its bytes hash to the recorded file hash."""
    for artifact_id in ids:
        path = object_path(lake.root, artifact_id)
        art = lake.get(artifact_id)
        if not path.exists():
            raise CorruptArtifact(f"input {artifact_id} has no object file {path} (run: lake verify)")
        if file_hash(path) != art.file_hash:
            raise CorruptArtifact(
                f"input {artifact_id} is corrupt: {path} changed since it was published (run: lake verify)"
            )


def _files(lake: _StoreLake, ids: Sequence[str]) -> str:
    paths = []
    for artifact_id in ids:
        assert _HEX64.match(artifact_id), artifact_id  # lake-made paths only: nothing from the user is spliced
        paths.append("'" + str(object_path(lake.root, artifact_id)).replace("'", "''") + "'")
    return "[" + ", ".join(paths) + "]"


def _input_view(con: duckdb.DuckDBPyConnection, lake: _StoreLake, role: str, type_: str, ids: list[str]) -> None:
    files = _files(lake, ids)
    source = f"read_parquet({files}, filename = true)"
    if len(ids) == 1:
        con.execute(f"CREATE TEMP VIEW input_{role} AS SELECT * EXCLUDE (filename) FROM {source}")
        return
    if type_ != "ohlcv":
        con.execute(f"CREATE TEMP VIEW input_{role} AS SELECT DISTINCT * EXCLUDE (filename) FROM {source}")
        return
    art = "regexp_extract(filename, '([0-9a-f]{64})\\.parquet$', 1)"
    ranges = con.execute(
        f"SELECT {art} AS a, symbol, min(epoch_us(ts)) AS lo, max(epoch_us(ts)) AS hi FROM {source} GROUP BY ALL ORDER BY symbol, lo"
    ).fetchall()
    overlap = any(prev[1] == cur[1] and cur[2] <= prev[3] for prev, cur in zip(ranges, ranges[1:], strict=False))
    if not overlap:
        con.execute(f"CREATE TEMP VIEW input_{role} AS SELECT * EXCLUDE (filename) FROM {source}")
        return
    clash = con.execute(
        f"""SELECT symbol, strftime(ts, '%Y-%m-%dT%H:%M:%S+00:00'), arg_min({art}, {art}) AS a1, arg_max({art}, {art}) AS a2
            FROM {source} GROUP BY symbol, ts
            HAVING count(DISTINCT (open, high, low, close, volume)) > 1
            ORDER BY symbol, ts LIMIT 1"""
    ).fetchone()
    if clash is not None:
        symbol, ts, a1, a2 = clash
        raise ProjectionError(
            f"ohlcv inputs disagree at {symbol} {ts}: artifacts {a1[:12]} and {a2[:12]} hold different "
            "candles for it (drop one of them, or publish a corrected one)"
        )
    con.execute(
        f"CREATE TEMP VIEW input_{role} AS SELECT DISTINCT ON (symbol, ts) * EXCLUDE (filename) FROM {source} "
        "ORDER BY symbol, ts"
    )


class Projections:
    """The projections of one lake: build (or reuse), list, show, drop."""

    def __init__(self, lake: _StoreLake) -> None:
        self.lake = lake
        self.dir = lake.root / "projections"
        self.specs_dir = self.dir / "specs"

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.duckdb"

    def build(self, spec_name: str, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Projection:
        """The projection of ``spec_name`` over ``inputs`` (role -> refs), built unless its key exists."""
        spec = get_spec(spec_name, self.specs_dir)
        ids = _resolve_inputs(self.lake, spec, inputs)
        resolved = spec.resolve_params(dict(params or {}))
        key = projection_key(spec, resolved, ids)
        target = self.path(key)
        if target.exists():
            return Projection(key, target, spec.name, ids, resolved, reused=True, relations=list(spec.relations))
        _verify_inputs(self.lake, [i for role_ids in ids.values() for i in role_ids])
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = stage_lock(self.lake.root)
        staged = lock.path.with_suffix(".duckdb")
        try:
            self._build_into(staged, spec, ids, resolved, key)
            with open(staged, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(staged, target)  # never replaces: the first finished build of a key wins
            except FileExistsError:
                pass
            fsync_dir(self.dir)
        finally:
            for leftover in (staged, staged.with_name(staged.name + ".wal")):
                leftover.unlink(missing_ok=True)
            lock.discard()
        return Projection(key, target, spec.name, ids, resolved, reused=False, relations=list(spec.relations))

    def _build_into(self, path: Path, spec: Spec, ids: dict[str, list[str]], params: dict[str, Any], key: str) -> None:
        import duckdb

        con = _connect(path, read_only=False)
        try:
            cols = [p for p in spec.params]
            if cols:
                con.execute(
                    "CREATE TABLE _params AS SELECT "
                    + ", ".join(f"?::{PARAM_TYPES[p.type]} AS {p.column}" for p in cols),
                    [params[p.name] for p in cols],
                )
            else:
                con.execute("CREATE TABLE _params AS SELECT 1 AS _none")
            for role in spec.inputs:
                _input_view(con, self.lake, role.role, role.type, ids[role.role])
            try:
                con.execute(spec.sql)
            except duckdb.Error as exc:
                raise ProjectionError(f"spec {spec.name!r}: the SQL failed: {_first_line(exc)}") from exc
            made = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
            missing = [r for r in spec.relations if r not in made]
            if missing:
                raise ProjectionError(f"spec {spec.name!r}: the SQL did not create {', '.join(missing)}")
            for role in spec.inputs:
                con.execute(f"DROP VIEW input_{role.role}")
            con.execute(
                f"CREATE TABLE {_META} AS SELECT ? AS key, ? AS spec, ? AS version, ? AS sql, ? AS params, ? AS inputs, "
                "? AS code_version, ? AS duckdb_version, now() AS built",
                [
                    key,
                    spec.name,
                    spec.version,
                    spec.sql,
                    json.dumps(params, sort_keys=True),
                    json.dumps(ids, sort_keys=True),
                    CODE_VERSION,
                    duckdb.__version__,
                ],
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every projection file with what it says about itself (unreadable files are listed as such)."""
        out = []
        for p in sorted(self.dir.glob("*.duckdb")):
            out.append(self.show(p.stem))
        return out

    def show(self, key: str) -> dict[str, Any]:
        """Key, spec, parameters, inputs, relations with row counts, size: read from the file itself."""
        import duckdb

        path = self._find(key)
        try:
            con = _connect(path, read_only=True)
        except duckdb.Error as exc:
            return {"key": path.stem, "path": str(path), "error": _first_line(exc)}
        try:
            # times as text: DuckDB would need pytz to hand a TIMESTAMPTZ to Python
            row = con.execute(
                f"SELECT key, spec, version, params, inputs, code_version, CAST(built AS VARCHAR) FROM {_META}"
            ).fetchone()
            if row is None:
                return {"key": path.stem, "path": str(path), "error": "no metadata"}
            rels = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY table_name"
                ).fetchall()
            ]
            counts = {r: int(con.execute(f'SELECT count(*) FROM "{r}"').fetchone()[0]) for r in rels}  # type: ignore[index]
        finally:
            con.close()
        assert row is not None
        return {
            "key": row[0],
            "path": str(path),
            "spec": row[1],
            "version": row[2],
            "params": json.loads(row[3]),
            "inputs": json.loads(row[4]),
            "code_version": row[5],
            "built": str(row[6]),
            "relations": counts,
            "bytes": path.stat().st_size,
        }

    def get(self, key: str) -> Projection:
        info = self.show(key)
        if "error" in info:
            raise ProjectionError(f"projection {key}: cannot be opened ({info['error']}); drop it and build again")
        return Projection(
            info["key"],
            Path(info["path"]),
            info["spec"],
            info["inputs"],
            info["params"],
            reused=True,
            relations=sorted(info["relations"]),
        )

    def _find(self, key: str) -> Path:
        key = key.strip()
        if not re.fullmatch(r"[0-9a-f]{6,64}", key):
            raise ProjectionError(f"not a projection key: {key!r} (see: lake projection list)")
        found = sorted(self.dir.glob(f"{key}*.duckdb"))
        if not found:
            raise ProjectionError(f"no projection {key!r} (see: lake projection list)")
        if len(found) > 1:
            raise ProjectionError(
                f"projection key prefix {key!r} matches {len(found)} projections; give more characters"
            )
        return found[0]

    def drop(self, key: str | None = None) -> builtins.list[str]:
        """Delete one projection (by key or prefix) or, with ``key=None``, all of them. Nothing is lost."""
        paths = [self._find(key)] if key is not None else sorted(self.dir.glob("*.duckdb"))
        for p in paths:
            p.unlink(missing_ok=True)
            p.with_name(p.name + ".wal").unlink(missing_ok=True)
        return [p.stem for p in paths]


class Lake(_StoreLake):
    """A lake with projections: ``lake.projection(spec, inputs, params)``. Open with ``Lake.open(path)``."""

    @property
    def projections(self) -> Projections:
        return Projections(self)

    def projection(self, spec: str, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Projection:
        """Build (or reuse) the projection of ``spec`` over ``inputs`` ({role: ref or [refs]}).

        Example::

            p = Lake.open("lake").projection("ohlcv", {"ohlcv": ["btc-1m", "eth-1m"]})
            p.arrow("SELECT symbol, count(*) FROM ohlcv GROUP BY symbol")
        """
        return self.projections.build(spec, inputs, params)
