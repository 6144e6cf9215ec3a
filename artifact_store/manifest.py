"""The SQLite manifest: artifacts, names, meta, lineage edges and known source files.

Invariants:
* WAL mode, a busy timeout, ``synchronous=FULL``; every read-then-write runs in ``BEGIN IMMEDIATE`` so
  concurrent publishers queue instead of failing with "database is locked" half way.
* Artifacts have an integer surrogate key ``pk``; names, meta and edges refer to it (64-hex text keys make
  deep lineage walks several times slower). ``pk`` grows with publish order, so "newest first" is
  ``ORDER BY pk DESC``.
* ``meta`` is searchable through its own table keyed by (key, value, artifact): a filter on a meta key is an
  index range, never a scan of JSON.
* A damaged manifest is one line everywhere, never a bug: the connection (:class:`Manifest`) turns SQLite's
  "not a database" and "malformed" errors and text that is not UTF-8 into :class:`ManifestDamaged`, a full
  disk into :class:`DiskFull` and a write lock held past the wait into :class:`LakeBusy`, for every query of
  every package that uses ``lake.db``.
* Only stdlib here: ``lake find`` must start fast.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from .errors import DiskFull, LakeBusy, ManifestDamaged, ReadOnlyLake

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
# SQLite result codes (primary code = extended code & 0xFF)
_BUSY, _READONLY, _IOERR, _CORRUPT, _FULL, _NOTADB = 5, 8, 10, 11, 13, 26
_IOERR_WRITES = {10 | (3 << 8), 10 | (4 << 8), 10 | (6 << 8)}  # IOERR_WRITE, _FSYNC, _TRUNCATE

_DDL = """
CREATE TABLE IF NOT EXISTS artifacts (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    file_hash TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    columns TEXT NOT NULL,
    meta TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_type ON artifacts(type);
CREATE INDEX IF NOT EXISTS artifacts_created ON artifacts(created);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    artifact INTEGER NOT NULL REFERENCES artifacts(pk),
    PRIMARY KEY (key, value, artifact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    artifact INTEGER NOT NULL REFERENCES artifacts(pk),
    created TEXT NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_artifact ON names(artifact);
CREATE TABLE IF NOT EXISTS edges (
    child INTEGER NOT NULL REFERENCES artifacts(pk),
    parent INTEGER NOT NULL REFERENCES artifacts(pk),
    run TEXT,
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_parent ON edges(parent, child);
CREATE TABLE IF NOT EXISTS sources (
    file_hash TEXT NOT NULL,
    type TEXT NOT NULL,
    schema TEXT NOT NULL,
    artifact INTEGER NOT NULL REFERENCES artifacts(pk),
    PRIMARY KEY (file_hash, type, schema)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


def now_iso() -> str:
    """Current UTC time as fixed-width ISO text (sorts as it compares)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meta_text(value: Any) -> str:
    """The text a meta value is indexed under: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def translate(exc: BaseException, path: str) -> BaseException:
    """The lake's error for a SQLite error on the manifest at ``path`` (``exc`` itself when it is a bug)."""
    if isinstance(exc, ManifestDamaged | DiskFull | LakeBusy):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return ManifestDamaged(path, "a text value is not UTF-8")
    if not isinstance(exc, sqlite3.DatabaseError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if code is None:
        if "decode to UTF-8" in first:
            return ManifestDamaged(path, "a text value is not UTF-8")
        return exc
    if code & 0xFF in (_CORRUPT, _NOTADB):
        return ManifestDamaged(path, first)
    if code & 0xFF == _FULL or code in _IOERR_WRITES:
        return DiskFull(
            f"disk full while writing {path} ({first}): free some space and try again; nothing was registered"
        )
    if code & 0xFF == _BUSY:
        return LakeBusy(f"the lake is busy: another process holds the write lock of {path}; try again")
    if code & 0xFF == _READONLY:
        return ReadOnlyLake(f"the lake's manifest {path} is read-only (a read-only mount?): this command writes to it")
    return exc


def _text_factory(path: str) -> Any:
    """Decode TEXT as UTF-8; a value that is not (a flipped byte) is a damaged manifest, not a crash."""

    def decode(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestDamaged(path, "a text value is not UTF-8") from None

    return decode


def _reraise(exc: sqlite3.DatabaseError, path: str) -> NoReturn:
    lake_error = translate(exc, path)
    if lake_error is exc:
        raise exc
    raise lake_error from exc


class Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors are the lake's errors (see :func:`translate`)."""

    path = "manifest.sqlite"

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor:
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size if size is not None else self.arraysize)
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            _reraise(exc, self.path)


class Manifest(sqlite3.Connection):
    """The manifest's connection: queries go through :class:`Cursor`, so a damaged manifest, a full disk
    or a lock held too long is one line wherever it shows up."""

    path = "manifest.sqlite"

    def cursor(self, factory: Any = None) -> Any:
        cur = super().cursor(factory or Cursor)
        cur.path = self.path
        return cur

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)


def connect(path: Path, *, readonly: bool = False, timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open the manifest; create its tables when writable. A damaged file raises :class:`ManifestDamaged`."""
    try:
        return _connect(path, readonly=readonly, timeout=timeout)
    except sqlite3.DatabaseError as exc:
        _reraise(exc, str(path))


def set_busy_timeout(db: sqlite3.Connection, seconds: float) -> None:
    """How long a write-lock request waits for another writer before :class:`LakeBusy`."""
    db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


def _connect_read_only(path: Path, timeout: float) -> Manifest:
    """A read-only connection, also on a read-only file system.

    SQLite reads a WAL database read-only only where it can use the ``-shm`` file; on a read-only mount of
    a cleanly closed lake there is none and no way to make one, so the database is opened ``immutable`` (no
    locks, no shared memory). That is exact only when no write-ahead log holds commits: with a non-empty
    ``-wal`` beside it the lake must first be opened once where it is writable, and that is the error.
    """
    uri = path.absolute().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=timeout, factory=Manifest)
    try:
        db.execute("PRAGMA schema_version").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise ReadOnlyLake(
            f"{path} is on a read-only file system with an unmerged write-ahead log ({wal.name}): open the lake "
            "once where it is writable (any lake command), then read it here"
        )
    return sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, timeout=timeout, factory=Manifest
    )


def _connect(path: Path, *, readonly: bool, timeout: float) -> sqlite3.Connection:
    if readonly:
        db = _connect_read_only(path, timeout)
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=timeout, factory=Manifest)
    try:
        db.path = str(path)
        db.row_factory = sqlite3.Row
        db.text_factory = _text_factory(str(path))
        set_busy_timeout(db, timeout)
        if not readonly:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                with immediate(db):
                    for stmt in _DDL.split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (a full disk at COMMIT); never mask the first error
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except (sqlite3.Error, DiskFull, LakeBusy, ManifestDamaged):
                pass
        raise


def insert_artifact(
    db: sqlite3.Connection,
    *,
    artifact_id: str,
    type_name: str,
    schema_version: int,
    file_hash: str,
    rows: int,
    size: int,
    columns: list[list[str]],
    meta: Mapping[str, Any],
) -> int:
    cur = db.execute(
        "INSERT INTO artifacts (id, type, schema_version, file_hash, rows, bytes, columns, meta, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            artifact_id,
            type_name,
            schema_version,
            file_hash,
            rows,
            size,
            json.dumps(columns, separators=(",", ":")),
            json.dumps(dict(meta), sort_keys=True, separators=(",", ":")),
            now_iso(),
        ),
    )
    pk = int(cur.lastrowid or 0)
    db.executemany(
        "INSERT OR IGNORE INTO meta (key, value, artifact) VALUES (?, ?, ?)",
        [(k, meta_text(v), pk) for k, v in meta.items()],
    )
    return pk


def add_name(db: sqlite3.Connection, name: str, pk: int) -> tuple[int, bool]:
    """Point ``name`` at artifact ``pk``: a new version unless the latest already points there."""
    row = db.execute(
        "SELECT version, artifact FROM names WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()
    if row is not None and row["artifact"] == pk:
        return int(row["version"]), False
    version = 1 if row is None else int(row["version"]) + 1
    db.execute(
        "INSERT INTO names (name, version, artifact, created) VALUES (?, ?, ?, ?)", (name, version, pk, now_iso())
    )
    return version, True


def add_edges(db: sqlite3.Connection, child: int, parents: list[int], run: str | None) -> int:
    """Add lineage edges; returns how many were new."""
    before = db.total_changes
    db.executemany(
        "INSERT OR IGNORE INTO edges (child, parent, run) VALUES (?, ?, ?)",
        [(child, p, run) for p in parents if p != child],
    )
    return db.total_changes - before


def pk_list(pks: list[int] | set[int]) -> str:
    """A set of artifact keys as one query parameter, read back in SQL with ``json_each(?)``.

    One bound JSON array instead of chunks of ``IN (?, ?, ...)`` or a temp table (whose per-row inserts
    cost more than the walk itself).
    """
    return json.dumps(sorted(pks), separators=(",", ":"))


def walk(db: sqlite3.Connection, start: int, *, up: bool, depth: int | None) -> list[tuple[int, int]]:
    """Breadth-first lineage walk from ``start``: (pk, depth) of every node reached, nearest first.

    A Python BFS, one indexed query per level, not a recursive CTE: a DAG with many diamonds makes the
    CTE revisit shared ancestors once per path; here each node is expanded once, at its smallest depth.
    """
    near, far = ("child", "parent") if up else ("parent", "child")
    sql = f"SELECT e.{far} FROM json_each(?) j JOIN edges e ON e.{near} = j.value"
    seen = {start}
    frontier = [start]
    level = 0
    order: list[tuple[int, int]] = []
    while frontier and (depth is None or level < depth):
        level += 1
        nxt = sorted({pk for (pk,) in db.execute(sql, (pk_list(frontier),))} - seen)
        seen.update(nxt)
        order += [(pk, level) for pk in nxt]
        frontier = nxt
    return order


def path_between(db: sqlite3.Connection, start: int, goal: int) -> list[int] | None:
    """A lineage path ``start -> ... -> goal`` following edges from child to parent, or None.

    Used before adding edges into an artifact that already exists: an input that descends from it would
    close a cycle. Breadth-first, one indexed query per level, stopping as soon as ``goal`` is reached.
    """
    sql = "SELECT e.child, e.parent FROM json_each(?) j JOIN edges e ON e.child = j.value"
    came: dict[int, int] = {start: start}
    frontier = [start]
    while frontier:
        nxt: list[int] = []
        for child, parent in db.execute(sql, (pk_list(frontier),)):
            if parent in came:
                continue
            came[parent] = child
            if parent == goal:
                path = [goal]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return path[::-1]
            nxt.append(parent)
        frontier = nxt
    return None


def merge_meta(db: sqlite3.Connection, pk: int, meta: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Add the keys of ``meta`` that artifact ``pk`` lacks (meta is add-only).

    Returns (keys added, keys given with another value than the one kept). Call inside a transaction.
    """
    row = db.execute("SELECT meta FROM artifacts WHERE pk = ?", (pk,)).fetchone()
    current = json.loads(row[0]) if row is not None else {}
    added = sorted(k for k in meta if k not in current)
    kept = sorted(k for k in meta if k in current and meta_text(current[k]) != meta_text(meta[k]))
    if added:
        current.update({k: meta[k] for k in added})
        db.execute(
            "UPDATE artifacts SET meta = ? WHERE pk = ?",
            (json.dumps(current, sort_keys=True, separators=(",", ":")), pk),
        )
        db.executemany(
            "INSERT OR IGNORE INTO meta (key, value, artifact) VALUES (?, ?, ?)",
            [(k, meta_text(meta[k]), pk) for k in added],
        )
    return added, kept
