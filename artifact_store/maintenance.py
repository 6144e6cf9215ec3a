"""``verify`` and ``gc``: explain and clean what crashes and tampering leave behind.

* missing  - a manifest row whose object file is gone
* changed  - an object whose bytes no longer hash to the recorded file hash
* content  - an object whose logical content no longer hashes to its id
* orphan   - an object file with no manifest row (a publish killed between rename and commit)
* stale    - a staging file in tmp/ whose writer is gone (a publish killed before rename)

Both take the manifest's write lock while they list ``objects/``: a publisher renames its object and
commits its row under that same lock, so an object in flight is never taken for an orphan.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .hashing import content_id, file_hash
from .objects import OBJECT_SUFFIX, is_stale, object_path
from .records import GcReport, Problem, VerifyReport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .lake import Lake


@contextmanager
def _locked(lake: Lake) -> Iterator[None]:
    """Hold the write lock when the lake is writable; read-only lakes are scanned without it."""
    try:
        lake.db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        yield
        return
    try:
        yield
    finally:
        lake.db.execute("ROLLBACK")


def _orphans_and_stale(lake: Lake) -> tuple[list[Path], list[Path]]:
    known = {row[0] for row in lake.db.execute("SELECT id FROM artifacts")}
    orphans = []
    objects = lake.root / "objects"
    if objects.is_dir():
        for sub in sorted(objects.iterdir()):
            if not sub.is_dir():
                orphans.append(sub)
                continue
            for f in sorted(sub.iterdir()):
                stem = f.name[: -len(OBJECT_SUFFIX)] if f.name.endswith(OBJECT_SUFFIX) else None
                if stem is None or stem not in known or f != object_path(lake.root, stem):
                    orphans.append(f)
    stale = []
    tmp = lake.root / "tmp"
    if tmp.is_dir():
        stale = [f for f in sorted(tmp.iterdir()) if f.is_file() and is_stale(f)]
    return orphans, stale


def verify(lake: Lake, ids: list[str] | None, *, content: bool = True) -> VerifyReport:
    """Recompute file hash (and, with ``content``, the content id) of ``ids`` or of every artifact;
    with no ``ids``, also report orphan objects and stale staging files."""
    import pyarrow.parquet as pq

    problems: list[Problem] = []
    if ids is None:
        rows = lake.db.execute("SELECT id, type, schema_version, file_hash FROM artifacts ORDER BY pk").fetchall()
    else:
        rows = []
        for artifact_id in ids:
            rows += lake.db.execute(
                "SELECT id, type, schema_version, file_hash FROM artifacts WHERE id = ?", (artifact_id,)
            ).fetchall()
    for row in rows:
        path = object_path(lake.root, row["id"])
        if not path.exists():
            problems.append(Problem("missing", row["id"], f"object file {path} is gone"))
            continue
        got = file_hash(path)
        if got != row["file_hash"]:
            problems.append(
                Problem("changed", row["id"], f"bytes of {path} hash to {got[:16]}..., not {row['file_hash'][:16]}...")
            )
            continue
        if content:
            try:
                cid = content_id(pq.read_table(path), row["type"], row["schema_version"])
            except Exception as exc:  # noqa: BLE001 - any unreadable object is a finding, not a crash
                problems.append(Problem("content", row["id"], f"cannot read {path}: {exc}"))
                continue
            if cid != row["id"]:
                problems.append(Problem("content", row["id"], f"content hashes to {cid[:16]}..."))
    if ids is None:
        with _locked(lake):
            orphans, stale = _orphans_and_stale(lake)
        problems += [
            Problem("orphan", str(p), "object file with no manifest row (lake gc removes it)") for p in orphans
        ]
        problems += [
            Problem("stale", str(p), "staging file of a publish that did not finish (lake gc removes it)")
            for p in stale
        ]
    return VerifyReport(len(rows), problems)


def gc(lake: Lake, *, dry_run: bool = False) -> GcReport:
    """Remove orphan objects and stale staging files (only list them with ``dry_run``)."""
    removed: list[str] = []
    total = 0
    with _locked(lake):
        orphans, stale = _orphans_and_stale(lake)
        for p in orphans + stale:
            total += p.stat().st_size if p.is_file() else 0
            removed.append(str(p))
            if not dry_run:
                if p.is_file():
                    p.unlink()
    return GcReport(dry_run, removed, total)
