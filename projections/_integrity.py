"""Where the lake built it: the manifest's record of every projection file, and the check before any use.

Invariants:
* A build records in the manifest's ``projections`` table the file's blake3 (``file_hash``) and its stat
  signature (size, mtime_ns, ctime_ns, inode) once the file is in place, and the file is read-only (0444).
* Every use checks the file before DuckDB opens it. An unchanged stat signature means nothing wrote to the
  file since the build (a write moves mtime and ctime, and ctime cannot be set back from user space: a
  notebook that restores the mtime is still caught); any other signature means the file is hashed, and a
  matching hash refreshes the recorded signature. A different hash, a file the manifest has no record of,
  a file that is not a regular file (a symlink is never followed) or a ``.wal`` beside it (DuckDB replays
  a WAL even read-only, so it changes what the file serves) make the file *foreign*: refused in one line
  (:class:`ForeignProjection`, exit 1), never opened, left in place as evidence until it is dropped.
* A record whose file is gone is harmless: any projection may be deleted at any time.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store import manifest as mf
from artifact_lake.artifact_store.hashing import file_hash
from artifact_lake.artifact_store.records import Problem

from .errors import ForeignProjection

if TYPE_CHECKING:
    from artifact_lake.artifact_store import Lake

_DDL = """
CREATE TABLE IF NOT EXISTS projections (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    inputs TEXT NOT NULL,
    params TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    built TEXT NOT NULL
) WITHOUT ROWID
"""
_COLUMNS = ("key", "spec", "inputs", "params", "file_hash", "size", "mtime_ns", "ctime_ns", "inode", "built")


@dataclass(frozen=True)
class Record:
    """What the lake knows of a projection file it built."""

    key: str
    spec: str
    inputs: dict[str, list[str]]
    params: dict[str, Any]
    file_hash: str
    """blake3 of the file's bytes right after the build."""
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    built: str

    def signature(self) -> tuple[int, int, int, int]:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode)


def signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def new_record(
    path: Path, key: str, spec: str, inputs: dict[str, list[str]], params: dict[str, Any], fhash: str
) -> Record:
    """The record of a file just put in place (its stat read now, after the last link change)."""
    size, mtime, ctime, ino = signature(os.lstat(path))
    return Record(key, spec, inputs, params, fhash, size, mtime, ctime, ino, mf.now_iso())


def ensure_table(db: sqlite3.Connection) -> None:
    if not has_table(db):
        with mf.immediate(db):
            db.execute(_DDL)


def has_table(db: sqlite3.Connection) -> bool:
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projections'").fetchone() is not None
    )


def get(db: sqlite3.Connection, key: str) -> Record | None:
    """The record of ``key`` (None when there is none; reading never creates the table)."""
    if not has_table(db):
        return None
    row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM projections WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    values = dict(zip(_COLUMNS, tuple(row), strict=True))
    values["inputs"] = json.loads(values["inputs"])
    values["params"] = json.loads(values["params"])
    return Record(**values)


def put(db: sqlite3.Connection, rec: Record) -> None:
    """Insert or replace ``rec`` (inside the caller's transaction)."""
    values = [getattr(rec, c) for c in _COLUMNS]
    values[2] = json.dumps(rec.inputs, sort_keys=True)
    values[3] = json.dumps(rec.params, sort_keys=True)
    db.execute(
        f"INSERT OR REPLACE INTO projections ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        values,
    )


def delete(db: sqlite3.Connection, keys: list[str] | None) -> None:
    """Forget ``keys`` (all records with None)."""
    if not has_table(db):
        return
    with mf.immediate(db):
        if keys is None:
            db.execute("DELETE FROM projections")
        else:
            db.executemany("DELETE FROM projections WHERE key = ?", [(k,) for k in keys])


def _drop_hint(path: Path) -> str:
    if re.fullmatch(r"[0-9a-f]{6,64}", path.stem):
        return f"lake projection drop {path.stem[:12]}"
    return f"rm {path}"


def problem(path: Path, rec: Record | None, *, full: bool = False) -> tuple[str, str, Record | None] | None:
    """None when ``path`` is the file the lake built (with the record to keep, refreshed when its stat moved),
    else (kind, detail, None) with kind ``foreign``, ``changed`` or ``missing`` (``detail`` follows the path). ``full`` hashes even an unchanged file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ("missing", "is gone", None)
    if not stat.S_ISREG(st.st_mode):
        return ("foreign", "is not a regular file (a link or a folder); the lake never follows it", None)
    if rec is None:
        return ("foreign", "is not a projection this lake built (the manifest has no record of it)", None)
    wal = path.with_name(path.name + ".wal")
    if os.path.lexists(wal):
        return ("changed", f"was written to after its build (a write-ahead log {wal.name} lies beside it)", None)
    if signature(st) == rec.signature() and not full:
        return None
    got = file_hash(path)
    if got != rec.file_hash:
        return (
            "changed",
            f"changed since it was built: its bytes hash to {got[:16]}..., not {rec.file_hash[:16]}...",
            None,
        )
    if signature(st) == rec.signature():
        return None
    size, mtime, ctime, ino = signature(st)
    return ("same", "", replace(rec, size=size, mtime_ns=mtime, ctime_ns=ctime, inode=ino))


def check(db: sqlite3.Connection | None, path: Path, rec: Record | None) -> Record:
    """``rec`` when ``path`` is the file the lake built (refreshing the recorded stat when only it moved);
    raises :class:`ForeignProjection` otherwise. The file is never opened by DuckDB here."""
    found = problem(path, rec)
    if found is None:
        assert rec is not None
        return rec
    kind, detail, fresh = found
    if kind == "same" and fresh is not None:
        if db is not None:
            try:
                with mf.immediate(db):
                    put(db, fresh)
            except sqlite3.OperationalError:
                pass  # a read-only manifest: the file is fine, the next use hashes it again
        return fresh
    if kind == "missing":
        raise ForeignProjection(f"{path} {detail} (build it again)", detail=detail)
    raise ForeignProjection(
        f"{path} {detail}; it was not used. Remove it ({_drop_hint(path)}) and build again", detail=detail
    )


def verify_projections(lake: Lake) -> list[Problem]:
    """Hash every projection file of ``lake`` against its record: ``foreign`` (no record, not a regular
    file) and ``changed`` (other bytes, or a write-ahead log beside it) problems, for ``lake verify``."""
    folder = lake.root / "projections"
    if not folder.is_dir():
        return []
    problems = []
    for path in sorted(folder.glob("*.duckdb")):
        found = problem(path, get(lake.db, path.stem), full=True)
        if found is not None and found[0] in ("foreign", "changed"):
            kind, detail, _ = found
            problems.append(Problem(kind, str(path), f"{detail} (remove it: {_drop_hint(path)})"))
    for wal in sorted(folder.glob("*.duckdb.wal")):
        if not wal.with_name(wal.name[: -len(".wal")]).exists():
            problems.append(Problem("foreign", str(wal), "a write-ahead log with no projection (remove it)"))
    return problems
