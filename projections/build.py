"""Build, find and drop projections: disposable DuckDB databases made from frozen artifact sets.

Invariants:
* The key is the blake3 of (spec name, version and SQL, canonical parameters, the sorted input ids of
  every role, :data:`CODE_VERSION`). The same key always means the same relations.
* All SQL runs sandboxed (:mod:`._sandbox`): no files, no network, no extensions, settings locked. A build's
  inputs are the verified object files (file hash checked first) handed to DuckDB as pyarrow datasets and
  exposed to the spec's SQL as the views ``input_<role>``; the views are dropped at the end, so the database
  holds no paths into the lake. Every identifier put into SQL is quoted; every value is a parameter.
* A build happens in ``tmp/``, is made read-only and is published with ``os.link`` into
  ``projections/<key>.duckdb`` under the manifest's write lock, together with its record (file hash and
  stat, :mod:`._integrity`): the first finished build of a key wins, a concurrent one discards its copy, and
  a reader never sees a half-built file.
* A build runs under DuckDB's ``memory_limit`` (``$LAKE_PROJECTION_MEMORY``, else half of the machine's
  memory, :func:`._sandbox.memory_limit`) and spills into ``tmp/<prefix>.spill/``, held by the build's
  ``tmp/<prefix>.lock`` and removed when the build ends; after a crash ``lake verify`` reports it as stale
  and ``lake gc`` removes it. So a build larger than memory sorts out of core instead of being killed.
* All inputs of a role are read as one pyarrow dataset (one scan: DuckDB cannot spill a sort fed by a
  UNION ALL of many scans). Several ohlcv inputs are checked for overlap first from their per-symbol time
  ranges, read by pyarrow; only overlapping ones pay for the deduplication.
* Every use checks the file against that record first (stat, and the hash when the stat moved); a file
  the lake did not build, or one changed since, is refused (exit 1) and never opened, also when a build
  would reuse it: it stays as evidence until ``lake projection drop`` removes it.
* Inside :meth:`Lake.scratch_projections` (``reproduce``), projections are built afresh in ``tmp/`` from the
  verified objects, never read from or added to the cache, and removed at the end.
* The ohlcv inputs' trading calendar (their meta, not their ids) is part of the key when it is not ``24/7``;
  its open slots reach the SQL as the Arrow table ``_open_slots`` (symbol, slot_us, slot; empty for ``24/7``),
  registered like the inputs, so ``gaps`` and ``coverage`` count only bars the market was open for.
* Several ``ohlcv`` artifacts in one role are unioned with one rule: identical (symbol, ts) rows collapse,
  differing ones are an error naming both artifacts, the symbol and the time. Other roles with several
  artifacts are unioned with identical rows collapsed.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from artifact_lake.artifact_store import CorruptArtifact
from artifact_lake.artifact_store import Lake as _StoreLake
from artifact_lake.artifact_store import manifest as mf
from artifact_lake.artifact_store.hashing import file_hash
from artifact_lake.artifact_store.ingest.calendars import ALWAYS_OPEN
from artifact_lake.artifact_store.objects import (
    Staged,
    fsync_dir,
    object_path,
    remove_file,
    safe_entries,
    stage_lock,
)
from artifact_lake.artifact_store.records import LeftAlone

from . import _integrity
from ._sandbox import connect as _sandboxed
from ._sandbox import first_line, quote, refused
from .calendars import calendar_of, open_slots
from .errors import ForeignProjection, ProjectionError, QueryError
from .spec import PARAM_TYPES, Spec, get_spec

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from artifact_lake.artifact_store import VerifyReport

# 2: files are written in DuckDB's v1.1.0 storage format (any client from 1.1 on opens them)
# 3: builds sandboxed, inputs handed over as Arrow datasets, files recorded in the manifest (files built by
#    2 have no record: foreign, never reused)
CODE_VERSION = 3
# DuckDB 1.1's storage format, which every client from 1.1 on reads. Builds write it so a
# projection opens in the DuckDB CLI, DBeaver or an older Python client, not only in the version that built it.
STORAGE_VERSION = "v1.1.0"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FILE = re.compile(r"[0-9a-f]{64}\.duckdb")
_META = "_projection"
_SLOTS = "_open_slots"


@dataclass(frozen=True)
class Projection:
    """A built projection. Open it read-only with :meth:`connect`, or query with :meth:`arrow` / :meth:`polars`.

    Every open first checks that the file is still the one the lake built (:class:`ForeignProjection`).
    """

    key: str
    path: Path
    spec: str
    inputs: dict[str, list[str]]
    params: dict[str, Any]
    reused: bool = False
    relations: list[str] = field(default_factory=list)
    record: _integrity.Record | None = field(default=None, repr=False, compare=False)
    """What the lake recorded at the build; None: not checked (never the case for what the lake returns)."""

    def connect(self, *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        """A read-only, sandboxed DuckDB connection (writes, files and settings are refused)."""
        _integrity.check(None, self.path, self.record)
        return _sandboxed(self.path, read_only=True, threads=threads)

    def arrow(self, sql: str, params: Sequence[Any] | None = None, *, deterministic: bool = False) -> pa.Table:
        """Run read-only ``sql`` (with bound ``params``) and return a pyarrow Table.

        ``deterministic`` runs it on one thread: the same file gives the same result bits every time
        (parallel float sums do not), at the cost of speed. Results that are published use it.
        """
        import duckdb

        con = self.connect(threads=1 if deterministic else None)
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            if refused(exc):
                raise QueryError(
                    "query refused: SQL on a projection cannot read or write files, attach databases, load "
                    f"extensions or change settings ({first_line(exc)})"
                ) from exc
            raise QueryError(f"query failed: {first_line(exc)}") from exc
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


def projection_key(
    spec: Spec, params: Mapping[str, Any], inputs: Mapping[str, Sequence[str]], calendar: str = ALWAYS_OPEN
) -> str:
    """The key of a build. ``calendar`` (the ohlcv inputs' trading calendar) counts only when it is not ``24/7``:
    it lives in the artifacts' meta, not their ids, so the same candles on another calendar are another build."""
    doc: dict[str, Any] = {
        "spec": spec.name,
        "version": spec.version,
        "sql": spec.sql,
        "params": dict(sorted(params.items())),
        "inputs": {role: sorted(ids) for role, ids in sorted(inputs.items())},
        "code": CODE_VERSION,
    }
    if calendar != ALWAYS_OPEN:
        doc["calendar"] = calendar
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
        if not path.exists() and not lake._fetch_from_remote(artifact_id):  # records-only: from its remote, checked
            raise CorruptArtifact(f"input {artifact_id} has no object file {path} (run: lake verify)")
        if file_hash(path) != art.file_hash:
            raise CorruptArtifact(
                f"input {artifact_id} is corrupt: {path} changed since it was published (run: lake verify)"
            )


def _calendar(lake: _StoreLake, spec: Spec, ids: Mapping[str, list[str]]) -> str:
    """The one trading calendar of the build's ohlcv inputs (``24/7`` when it has none)."""
    ohlcv = [i for r in spec.inputs if r.type == "ohlcv" for i in ids.get(r.role, [])]
    return calendar_of(lake, ohlcv) if ohlcv else ALWAYS_OPEN


def _sources(
    lake: _StoreLake, spec: Spec, ids: Mapping[str, list[str]], params: Mapping[str, Any], calendar: str
) -> dict[str, Any]:
    """The verified object files of every role as pyarrow datasets (scanned lazily, in batches): one per
    artifact (``_src_<role>_<i>``) and, when they share one schema, one over all of them (``_src_<role>``),
    and the ohlcv inputs' open slots on ``calendar`` as the Arrow table ``_open_slots`` (empty for ``24/7``),
    padded by the largest duration parameter so that alert windows past the data are covered too.

    The one dataset is what the input views read: DuckDB runs a UNION ALL of many scans feeding one sort
    with buffers it cannot spill (10M rows in 10 parts under a 256 MB limit: out of memory; one scan of
    the same files: sorted out of core), and one scan is no slower."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    out: dict[str, Any] = {}
    bars = []
    for role in spec.inputs:
        paths = []
        for artifact_id in ids[role.role]:
            assert _HEX64.match(artifact_id), artifact_id
            paths.append(str(object_path(lake.root, artifact_id)))
        parts = [pads.dataset(path, format="parquet") for path in paths]
        if len({tuple(sorted(d.schema.names)) for d in parts}) > 1:
            raise ProjectionError(f"the {role.role!r} inputs of spec {spec.name!r} do not have the same columns")
        for i, dataset in enumerate(parts):
            out[f"_src_{role.role}_{i}"] = dataset
            if role.type == "ohlcv" and calendar != ALWAYS_OPEN:
                bars.append(dataset.to_table(columns=["symbol", "ts"]))
        first = parts[0].schema.remove_metadata()
        if all(d.schema.remove_metadata().equals(first) for d in parts[1:]):
            out[f"_src_{role.role}"] = pads.dataset(
                paths, format=_symbols_as_dictionary() if role.type == "ohlcv" else "parquet"
            )
    durations = {p.name: params.get(p.name) for p in spec.params if p.type == "duration"}
    pad = max([v for k, v in durations.items() if k != "timeframe" and isinstance(v, int)], default=0)
    timeframe = durations.get("timeframe")
    out[_SLOTS] = open_slots(
        calendar,
        pa.concat_tables(bars)
        if bars
        else pa.table({"symbol": pa.array([], pa.string()), "ts": pa.array([], pa.int64())}),
        timeframe_us=timeframe if isinstance(timeframe, int) else None,
        pad_us=pad,
    )
    return out


def _symbols_as_dictionary() -> Any:
    """How ohlcv objects are read: ``symbol`` as a dictionary (its pages are dictionary-encoded already;
    DuckDB still sees VARCHAR) and column chunks read as they are decoded rather than buffered whole
    (``pre_buffer``): at 10M-30M rows, about 4 % and 2 % less CPU for a build."""
    import pyarrow.dataset as pads

    return pads.ParquetFileFormat(
        read_options=pads.ParquetReadOptions(dictionary_columns=["symbol"]),
        default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False),
    )


def _symbol_ranges(path: str) -> list[tuple[str, int, int]]:
    """(symbol, first ts, last ts in microseconds) of each symbol of one ohlcv object.

    pyarrow reads just the two columns, in batches (memory stays flat), the symbols as a dictionary;
    numpy takes the min and max over each run of one symbol's rows (a few runs per batch when the
    object is sorted by symbol, as published ohlcv usually is). At 10M rows: 0.16 s, against 0.54 s for
    the GROUP BY in DuckDB over the Arrow scan that this replaces; every build of several ohlcv
    artifacts pays it before its first statement.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads

    found: dict[str, tuple[int, int]] = {}
    for batch in pads.dataset(path, format=_symbols_as_dictionary()).to_batches(columns=["symbol", "ts"]):
        if not batch.num_rows:
            continue
        symbols = batch.column(0)
        codes = symbols.indices.to_numpy()
        us = batch.column(1).cast(pa.int64()).to_numpy()
        starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
        lows = np.full(len(symbols.dictionary), np.iinfo(np.int64).max)
        highs = np.full(len(symbols.dictionary), np.iinfo(np.int64).min)
        np.minimum.at(lows, codes[starts], np.minimum.reduceat(us, starts))
        np.maximum.at(highs, codes[starts], np.maximum.reduceat(us, starts))
        for code, symbol in enumerate(symbols.dictionary.to_pylist()):
            lo, hi = int(lows[code]), int(highs[code])
            if lo > hi:
                continue  # in the dictionary, not in this batch
            seen = found.get(symbol)
            found[symbol] = (lo, hi) if seen is None else (min(seen[0], lo), max(seen[1], hi))
    return [(symbol, lo, hi) for symbol, (lo, hi) in found.items()]


def _input_view(
    con: duckdb.DuckDBPyConnection, role: str, type_: str, ids: list[str], sources: Mapping[str, Any]
) -> None:
    view = quote(f"input_{role}")
    parts = [quote(f"_src_{role}_{i}") for i in range(len(ids))]
    if f"_src_{role}" in sources:
        scan = quote(f"_src_{role}")
    else:  # inputs whose schemas differ in order or types: DuckDB matches their columns by name
        scan = "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts) + ")"
    if len(ids) == 1:
        con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {scan}")
        return
    if type_ != "ohlcv":
        con.execute(f"CREATE TEMP VIEW {view} AS SELECT DISTINCT * FROM {scan}")
        return
    ranges = sorted(r for i in range(len(ids)) for r in _symbol_ranges(sources[f"_src_{role}_{i}"].files[0]))
    overlap = any(prev[0] == cur[0] and cur[1] <= prev[2] for prev, cur in zip(ranges, ranges[1:], strict=False))
    if not overlap:
        con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {scan}")
        return
    clash = con.execute(
        f"""SELECT symbol, epoch_us(ts), strftime(ts, '%Y-%m-%dT%H:%M:%S+00:00') FROM {scan} GROUP BY symbol, ts
            HAVING count(DISTINCT (open, high, low, close, volume)) > 1
            ORDER BY symbol, ts LIMIT 1"""
    ).fetchone()
    if clash is not None:
        symbol, us, ts = clash
        held = [
            (
                i,
                con.execute(
                    f"SELECT open, high, low, close, volume FROM {p} WHERE symbol = ? AND epoch_us(ts) = ?",
                    [symbol, us],
                ).fetchone(),
            )
            for i, p in enumerate(parts)
        ]
        held = [(i, candle) for i, candle in held if candle is not None]
        a1 = held[0][0]  # ids are sorted: the smallest id holding the bar, and the first that disagrees with it
        a2 = next((i for i, candle in held if candle != held[0][1]), held[-1][0])
        raise ProjectionError(
            f"ohlcv inputs disagree at {symbol} {ts}: artifacts {ids[a1][:12]} and {ids[a2][:12]} hold different "
            "candles for it (drop one of them, or publish a corrected one)"
        )
    con.execute(f"CREATE TEMP VIEW {view} AS SELECT DISTINCT ON (symbol, ts) * FROM {scan} ORDER BY symbol, ts")


class _Outside:
    """Where a read-only lake's scratch projection is built: a private temporary folder, not in the lake."""

    def __init__(self, key: str) -> None:
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="artifact-lake-reproduce-"))
        self.path = self.folder / f"{key}.lock"

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


class _Scratch:
    """Projections of one ``reproduce``: staged in ``tmp/`` (held, so gc leaves them), or outside a read-only
    lake; removed at the end."""

    def __init__(self) -> None:
        self.built: dict[str, tuple[Projection, Staged | _Outside]] = {}

    def outside(self, key: str) -> _Outside:
        return _Outside(key)

    def discard(self) -> None:
        for proj, lock in self.built.values():
            for leftover in (proj.path, proj.path.with_name(proj.path.name + ".wal")):
                leftover.unlink(missing_ok=True)
            lock.discard()
        self.built.clear()


class Projections:
    """The projections of one lake: build (or reuse), list, show, drop."""

    def __init__(self, lake: _StoreLake, scratch: _Scratch | None = None) -> None:
        self.lake = lake
        self.dir = lake.root / "projections"
        self.specs_dir = self.dir / "specs"
        self.scratch = scratch
        self.left_alone: list[LeftAlone] = []
        """What the last listing or drop found in ``projections/`` and did not touch, with the reason."""

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.duckdb"

    def build(self, spec_name: str, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Projection:
        """The projection of ``spec_name`` over ``inputs`` (role -> refs), built unless its key exists.

        An existing file is reused only when it is the file the lake built; otherwise
        :class:`ForeignProjection` (exit 1) names it and how to remove it.
        """
        spec = get_spec(spec_name, self.specs_dir)
        ids = _resolve_inputs(self.lake, spec, inputs)
        resolved = spec.resolve_params(dict(params or {}))
        calendar = _calendar(self.lake, spec, ids)
        key = projection_key(spec, resolved, ids, calendar)
        made = Projection(key, self.path(key), spec.name, ids, resolved, relations=list(spec.relations))
        if self.scratch is not None:
            return self._build_scratch(made, spec, calendar)
        target = made.path
        if os.path.lexists(target):
            return replace(made, reused=True, record=self._checked(target))
        self.lake.require_writable("projection build")
        _verify_inputs(self.lake, [i for role_ids in ids.values() for i in role_ids])
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = stage_lock(self.lake.root)
        staged = lock.path.with_suffix(".duckdb")
        try:
            fhash = self._build_into(staged, spec, ids, resolved, key, calendar)
            record = self._install(staged, target, made, fhash)
        finally:
            for leftover in (staged, staged.with_name(staged.name + ".wal")):
                leftover.unlink(missing_ok=True)
            lock.discard()
        if record is None:  # a concurrent build of this key finished first: use its file, once checked
            return replace(made, reused=True, record=self._checked(target))
        return replace(made, record=record)

    def _install(self, staged: Path, target: Path, made: Projection, fhash: str) -> _integrity.Record | None:
        """Link ``staged`` into place and record it, both under the manifest's write lock (None: lost the race)."""
        db = self.lake.db
        _integrity.ensure_table(db)
        linked = False
        try:
            with mf.immediate(db):
                if os.path.lexists(target):
                    return None
                os.link(staged, target)  # never replaces: the first finished build of a key wins
                linked = True
                staged.unlink()  # before the stat: dropping a link moves the file's ctime
                record = _integrity.new_record(target, made.key, made.spec, made.inputs, made.params, fhash)
                _integrity.put(db, record)
        except BaseException:
            if linked:  # no record was committed: the file must not stay as a foreign one
                target.unlink(missing_ok=True)
            raise
        fsync_dir(self.dir)
        return record

    def _build_scratch(self, made: Projection, spec: Spec, calendar: str) -> Projection:
        assert self.scratch is not None
        if made.key in self.scratch.built:
            return self.scratch.built[made.key][0]
        _verify_inputs(self.lake, [i for role_ids in made.inputs.values() for i in role_ids])
        # a read-only lake cannot hold a scratch build: it goes to the system's temporary folder
        lock = self.scratch.outside(made.key) if self.lake.read_only else stage_lock(self.lake.root)
        staged = lock.path.with_suffix(".duckdb")
        try:
            fhash = self._build_into(staged, spec, made.inputs, made.params, made.key, calendar)
            record = _integrity.new_record(staged, made.key, made.spec, made.inputs, made.params, fhash)
        except BaseException:
            for leftover in (staged, staged.with_name(staged.name + ".wal")):
                leftover.unlink(missing_ok=True)
            lock.discard()
            raise
        proj = replace(made, path=staged, record=record)
        self.scratch.built[made.key] = (proj, lock)
        return proj

    def _build_into(
        self, path: Path, spec: Spec, ids: dict[str, list[str]], params: dict[str, Any], key: str, calendar: str
    ) -> str:
        """Build into ``path`` (sandboxed), fsync it, make it read-only; returns its file hash.

        DuckDB spills into ``<path stem>.spill/`` beside it (in ``tmp/``, under the build's lock), which is
        gone when this returns; a build killed meanwhile leaves it to ``lake gc``.
        """
        import duckdb

        sources = _sources(self.lake, spec, ids, params, calendar)
        spill = path.with_suffix(".spill")
        try:
            con = _sandboxed(
                path, read_only=False, storage_version=STORAGE_VERSION, sources=sources, temp_directory=spill
            )
        except BaseException:
            shutil.rmtree(spill, ignore_errors=True)
            raise
        try:
            cols = list(spec.params)
            if cols:
                con.execute(
                    "CREATE TABLE _params AS SELECT "
                    + ", ".join(f"?::{PARAM_TYPES[p.type]} AS {quote(p.column)}" for p in cols),
                    [params[p.name] for p in cols],
                )
            else:
                con.execute("CREATE TABLE _params AS SELECT 1 AS _none")
            for role in spec.inputs:
                _input_view(con, role.role, role.type, ids[role.role], sources)
            try:
                con.execute(spec.sql)
            except duckdb.Error as exc:
                if refused(exc):
                    raise ProjectionError(
                        f"spec {spec.name!r} refused: its SQL may read only its inputs (input_<role>) and _params, "
                        f"never files, databases, extensions or settings ({first_line(exc)})"
                    ) from exc
                raise ProjectionError(f"spec {spec.name!r}: the SQL failed: {first_line(exc)}") from exc
            try:
                made = {
                    r[0]
                    for r in con.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND database_name = current_database()"
                    ).fetchall()
                }
                missing = [r for r in spec.relations if r not in made]
                if missing:
                    raise ProjectionError(f"spec {spec.name!r}: the SQL did not create {', '.join(missing)}")
                for role in spec.inputs:
                    con.execute(f"DROP VIEW {quote('input_' + role.role)}")
                con.execute(
                    f"CREATE TABLE {_META} AS SELECT ? AS key, ? AS spec, ? AS version, ? AS sql, ? AS params, "
                    "? AS inputs, ? AS code_version, ? AS duckdb_version, now() AS built",
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
            except duckdb.Error as exc:
                raise ProjectionError(f"spec {spec.name!r}: cannot finish the build: {first_line(exc)}") from exc
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)  # DuckDB removes what it made; this is for what it could not
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(path, 0o444)
        return file_hash(path)

    def _checked(self, path: Path) -> _integrity.Record:
        """The record of ``path`` once the file is shown to be the one the lake built (else ForeignProjection)."""
        rec = _integrity.get(self.lake.db, path.stem) if _HEX64.match(path.stem) else None
        return _integrity.check(self.lake.db, path, rec)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every projection file with what it says about itself; files the lake did not build (or that
        changed since) are listed with an ``error`` and never opened."""
        out = []
        for p in self._files():
            try:
                out.append(self._show(p))
            except ForeignProjection as exc:
                out.append({"key": p.stem, "path": str(p), "error": exc.detail, "foreign": True})
        return out

    def show(self, key: str) -> dict[str, Any]:
        """Key, spec, parameters, inputs, relations with row counts, size: read from the file itself,
        once it is shown to be the file the lake built."""
        return self._show(self._find(key))

    def _show(self, path: Path) -> dict[str, Any]:
        import duckdb

        self._checked(path)
        try:
            con = _sandboxed(path, read_only=True)
        except duckdb.Error as exc:
            return {"key": path.stem, "path": str(path), "error": first_line(exc)}
        try:
            # times as text: DuckDB would need pytz to hand a TIMESTAMPTZ to Python
            row = con.execute(
                f"SELECT key, spec, version, params, inputs, code_version, CAST(built AS VARCHAR) FROM {_META}"
            ).fetchone()
            if row is None:
                return {"key": path.stem, "path": str(path), "error": "no metadata"}
            tables = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary "
                "AND database_name = current_database() AND NOT starts_with(table_name, '_') "
                "ORDER BY table_name, schema_name"
            ).fetchall()
            counts: dict[str, int] = {}
            for schema, name in tables:
                got = con.execute(f"SELECT count(*) FROM {quote(schema)}.{quote(name)}").fetchone()
                counts[name] = int(got[0]) if got else 0
        except duckdb.Error as exc:
            return {"key": path.stem, "path": str(path), "error": first_line(exc)}
        finally:
            con.close()
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
        """The built projection ``key`` (or a prefix), checked to be the file the lake built."""
        path = self._find(key)
        info = self._show(path)
        if "error" in info:
            raise ProjectionError(f"projection {key}: cannot be opened ({info['error']}); drop it and build again")
        return Projection(
            info["key"],
            path,
            info["spec"],
            info["inputs"],
            info["params"],
            reused=True,
            relations=sorted(info["relations"]),
            record=self._checked(path),
        )

    def _find(self, key: str) -> Path:
        key = key.strip()
        if not re.fullmatch(r"[0-9a-f]{6,64}", key):
            raise ProjectionError(f"not a projection key: {key!r} (see: lake projection list)")
        found = [p for p in self._files() if p.name.startswith(key)]
        if not found:
            raise ProjectionError(f"no projection {key!r} (see: lake projection list)")
        if len(found) > 1:
            raise ProjectionError(
                f"projection key prefix {key!r} matches {len(found)} projections; give more characters"
            )
        return found[0]

    def _files(self) -> builtins.list[Path]:
        """The projection files maintenance may touch: regular ``<64 hex>.duckdb`` files in a real
        ``projections/`` folder. A symlink (to a file or a folder out of the lake) is never followed."""
        files, self.left_alone = safe_entries(self.lake.root, "projections", _FILE)
        return files

    def drop(self, key: str | None = None) -> builtins.list[str]:
        """Delete one projection (by key or prefix) or, with ``key=None``, all of them (also files the lake
        did not build). Nothing is lost: building again gives the same answers. Only regular files of the
        lake's own names are removed: what else lies in ``projections/`` (symlinks included) stays, and
        :attr:`left_alone` says why."""
        paths = [self._find(key)] if key is not None else self._files()
        self.lake.require_writable("projection drop")
        for p in paths:
            for f in (p, p.with_name(p.name + ".wal")):
                reason = remove_file(self.lake.root, f)
                if reason is not None and f.name.endswith(".duckdb"):
                    raise ProjectionError(f"{f}: {reason}")
        _integrity.delete(self.lake.db, None if key is None else [p.stem for p in paths])
        return [p.stem for p in paths]


class Lake(_StoreLake):
    """A lake with projections: ``lake.projection(spec, inputs, params)``. Open with ``Lake.open(path)``."""

    _scratch: _Scratch | None = None

    @property
    def projections(self) -> Projections:
        return Projections(self, self._scratch)

    def projection(self, spec: str, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Projection:
        """Build (or reuse) the projection of ``spec`` over ``inputs`` ({role: ref or [refs]}).

        Example::

            p = Lake.open("lake").projection("ohlcv", {"ohlcv": ["btc-1m", "eth-1m"]})
            p.arrow("SELECT symbol, count(*) FROM ohlcv GROUP BY symbol")
        """
        return self.projections.build(spec, inputs, params)

    @contextmanager
    def scratch_projections(self) -> Iterator[None]:
        """Inside, every projection is built afresh from the verified objects in ``tmp/`` (the cache is
        neither read nor written) and removed on exit: what ``reproduce`` runs on."""
        outer, self._scratch = self._scratch, _Scratch()
        try:
            yield
        finally:
            assert self._scratch is not None
            self._scratch.discard()
            self._scratch = outer

    def verify(self, refs: Any = None, **kwargs: Any) -> VerifyReport:
        """The store's verify; with no ``refs`` (the whole lake) it also hashes every projection file
        against its record (``foreign`` and ``changed`` problems)."""
        report = super().verify(refs, **kwargs)
        if refs is not None:
            return report
        return replace(report, problems=[*report.problems, *_integrity.verify_projections(self)])
