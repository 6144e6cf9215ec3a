"""The SQLite manifest: artifacts, names, meta, lineage edges and known source files.

Invariants:
* WAL mode, a busy timeout, ``synchronous=FULL``; every read-then-write runs in ``BEGIN IMMEDIATE`` so
  concurrent publishers queue instead of failing with "database is locked" half way.
* Artifacts have an integer surrogate key ``pk``; names, meta and edges refer to it (64-hex text keys make
  deep lineage walks several times slower). ``pk`` grows with publish order, so "newest first" is
  ``ORDER BY pk DESC``.
* ``meta`` is searchable through its own table keyed by (key, value, artifact): a filter on a meta key is an
  index range, never a scan of JSON.
* Only stdlib here: ``lake find`` must start fast.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

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


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the manifest; create its tables when writable."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
    else:
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 30000")
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
    return db


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
