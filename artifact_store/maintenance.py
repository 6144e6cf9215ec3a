"""``verify`` and ``gc``: explain and clean what crashes and tampering leave behind.

Problems ``verify`` reports (any of them: exit 1):

* missing  - a manifest row whose object file is gone, or is not a regular file of the lake (a symlink, a
  folder, a FIFO, or behind a symlinked folder)
* changed  - an object whose bytes no longer hash to the recorded file hash
* content  - an object whose logical content no longer hashes to its id
* orphan   - an object file with no manifest row (a publish killed between rename and commit)
* stale    - a staging file in tmp/ whose writer is gone (a publish killed before rename), or a staging
  folder whose run is gone (``tmp/sweep-*``: a sweep's chunks; ``tmp/<pid>-<16 hex>.spill``: a projection
  build's DuckDB spill files; see :mod:`.stagedirs`)
* manifest - manifest.sqlite itself: SQLite's integrity check, or one of the lake's invariants (below)

The manifest's invariants: names, edges, meta and sources point at artifacts; ids and file hashes are 64
hex; each artifact's meta JSON agrees with its search index (the ``meta`` table); a name's versions run
1..n; recorded bytes, rows and column names agree with the object; lineage is acyclic; an experiment's id
is the blake3 of its canonical spec (:func:`spec_id`), its kind is the spec's and its inputs exist; a
run's results exist.

Clean-up stays inside the lake: the folders are walked with :func:`objects.safe_entries`, which never
follows a symlink, and only regular files of the names the lake makes are removed (with
:func:`objects.remove_file`); everything else is reported as *left alone*, which does not fail verify.

Locking: both take the manifest's write lock while they list ``objects/``; a publisher renames its object
and commits its row under that same lock, so an object in flight is never taken for an orphan. Neither
ever goes on without the lock on a writable lake: past ``wait`` seconds they raise :class:`LakeBusy`.
On a read-only lake (no one can publish through it) verify scans without the lock and gc refuses.

Grace: gc removes an orphan only when it is older than ``grace`` (24 h by default, counted from the later
of its mtime and ctime, so a fresh copy or extraction of a lake counts as new). A lake copied without its
``-wal`` file has objects whose rows are only in that file; the grace keeps them while the copy is fixed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from . import manifest as mf
from . import stagedirs
from .errors import InvalidInput, LakeBusy, ManifestDamaged, ReadOnlyLake
from .hashing import content_id
from .objects import (
    CREATING_NAME,
    OBJECT_NAME,
    OBJECT_SUFFIX,
    SHARD_NAME,
    STAGING_NAME,
    BadObject,
    is_stale,
    read_checked,
    remove_file,
    safe_entries,
)
from .records import GcReport, LeftAlone, Problem, VerifyReport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .lake import Lake

DEFAULT_GRACE_S = 24 * 3600.0
_READONLY = 8


def spec_id(spec_text: str) -> str:
    """The id an experiment with this stored spec must have: blake3 of the canonical JSON of the spec.

    The canonical rule is ``experiments.spec.canonical_json`` (sorted keys, compact separators, UTF-8 kept);
    artifact_store cannot import experiments, so it is restated here and a test holds the two together.
    """
    doc = json.loads(spec_text)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return blake3.blake3(canonical.encode()).hexdigest()


@contextmanager
def _locked(lake: Lake, wait: float, *, required: bool) -> Iterator[bool]:
    """Hold the manifest's write lock (yields True), waiting at most ``wait`` seconds for it.

    A read-only lake yields False when the lock is not ``required`` and is refused when it is. A lock held
    by another process past ``wait`` raises :class:`LakeBusy`: never go on without it.
    """
    mf.set_busy_timeout(lake.db, wait)
    try:
        try:
            lake.db.execute("BEGIN IMMEDIATE")
        except LakeBusy:
            raise LakeBusy(
                f"the lake is busy: another process has held the write lock of {lake.root / 'manifest.sqlite'} "
                f"for more than {wait:g} s (a publish in flight?); nothing was removed, try again"
            ) from None
        except (sqlite3.OperationalError, ReadOnlyLake) as exc:
            if not isinstance(exc, ReadOnlyLake) and getattr(exc, "sqlite_errorcode", 0) & 0xFF != _READONLY:
                raise
            if required:
                raise ReadOnlyLake(f"the lake at {lake.root} is read-only: gc removes nothing") from exc
            yield False
            return
    finally:
        mf.set_busy_timeout(lake.db, mf.BUSY_TIMEOUT_S)
    try:
        yield True
    finally:
        lake.db.execute("ROLLBACK")


def _age(path: Path, now: float) -> float:
    st = os.lstat(path)
    return now - max(st.st_mtime, st.st_ctime)


def _scan(lake: Lake, grace: float | None) -> tuple[list[Path], list[Path], list[LeftAlone]]:
    """(orphans, stale staging files, left alone) of objects/ and tmp/; call under the write lock.

    With ``grace``, orphans younger than it are left alone (reported with their age) instead of listed.
    """
    now = time.time()
    known = {row[0] for row in lake.db.execute("SELECT id FROM artifacts")}
    root = lake.root
    orphans: list[Path] = []
    shards, left = safe_entries(root, "objects", SHARD_NAME, folders=True)
    for shard in shards:
        files, skipped = safe_entries(root, shard.relative_to(root), OBJECT_NAME)
        left += skipped
        for f in files:
            artifact_id = f.name[: -len(OBJECT_SUFFIX)]
            if artifact_id[:2] != shard.name:
                left.append(LeftAlone(str(f), "an object name in another shard's folder: not the lake's"))
            elif artifact_id not in known:
                age = _age(f, now)
                if grace is not None and age < grace:
                    left.append(
                        LeftAlone(str(f), f"orphan younger than the grace period ({age:.0f} s < {grace:.0f} s)")
                    )
                else:
                    orphans.append(f)
    stale: list[Path] = []
    staged, skipped = safe_entries(root, "tmp", STAGING_NAME)
    for f in staged:
        if is_stale(f):
            stale.append(f)
    for entry in skipped:
        path = Path(entry.path)
        if stagedirs.SWEEP_DIR.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            if stagedirs.is_stale_dir(path):
                stale.append(path)
        elif stagedirs.SPILL_DIR.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            if stagedirs.is_stale_spill(path):  # a projection build's spill folder, its build killed
                stale.append(path)
        elif CREATING_NAME.fullmatch(path.name) and entry.reason == "not a name the lake makes":
            # a staging file being created (see objects.stage): its writer renames it within microseconds
            if is_stale(path) and _age(path, now) > max(grace or 0.0, 60.0):
                stale.append(path)
        else:
            left.append(entry)
    return orphans, stale, left


def _stale_detail(path: Path) -> str:
    if stagedirs.SWEEP_DIR.fullmatch(path.name):
        return "chunks of a sweep that did not finish (experiments execute resumes from them; lake gc removes them)"
    if stagedirs.SPILL_DIR.fullmatch(path.name):
        return "spill folder of a projection build that did not finish (lake gc removes it)"
    return "staging file of a publish that did not finish (lake gc removes it)"


def _check_object(lake: Lake, row: sqlite3.Row, content: bool, problems: list[Problem]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    artifact_id = row["id"]
    try:
        data, st = read_checked(lake.root, artifact_id, row["file_hash"])
    except BadObject as exc:
        problems.append(Problem(exc.kind, artifact_id, exc.detail))
        return
    if st.st_size != row["bytes"]:
        problems.append(Problem("manifest", artifact_id, f"records {row['bytes']} bytes; its object has {st.st_size}"))
    if not content:
        return
    try:
        table = pq.read_table(pa.BufferReader(pa.py_buffer(data)))
        cid = content_id(table, row["type"], row["schema_version"])
    except Exception as exc:  # noqa: BLE001 - any unreadable object is a finding, not a crash
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        problems.append(Problem("content", artifact_id, f"cannot read {row['id'][:12]}'s object: {first}"))
        return
    if cid != artifact_id:
        problems.append(Problem("content", artifact_id, f"content hashes to {cid[:16]}..."))
        return
    try:
        recorded = [c[0] for c in json.loads(row["columns"])]
    except (ValueError, TypeError, IndexError, KeyError):
        recorded = None
    if table.num_rows != row["rows"] or recorded != table.column_names:
        problems.append(
            Problem(
                "manifest",
                artifact_id,
                f"records {row['rows']} rows and columns {recorded}; its object has {table.num_rows} rows "
                f"and {table.column_names}",
            )
        )


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def check_manifest(db: sqlite3.Connection, path: str, *, quick: bool = False) -> list[Problem]:
    """SQLite's own check (``integrity_check``, or ``quick_check`` with ``quick``) and the lake's invariants."""
    out: list[Problem] = []

    def bad(detail: str) -> None:
        out.append(Problem("manifest", path, detail))

    pragma = "quick_check" if quick else "integrity_check"
    lines = [str(r[0]) for r in db.execute(f"PRAGMA {pragma}")]
    if lines != ["ok"]:
        for line in lines[:10]:
            bad(f"SQLite {pragma}: {line}")
    tables = _tables(db)
    for table, column in (
        ("names", "artifact"),
        ("edges", "child"),
        ("edges", "parent"),
        ("meta", "artifact"),
        ("sources", "artifact"),
    ):
        n = db.execute(f"SELECT count(*) FROM {table} WHERE {column} NOT IN (SELECT pk FROM artifacts)").fetchone()[0]
        if n:
            bad(f"{n} row(s) of {table} whose {column} points at no artifact")
    for r in db.execute(
        "SELECT id FROM artifacts WHERE length(id) != 64 OR id GLOB '*[^0-9a-f]*'"
        " OR length(file_hash) != 64 OR file_hash GLOB '*[^0-9a-f]*' LIMIT 10"
    ):
        bad(f"artifact {r[0]!r}: its id or file hash is not 64 hex characters")
    for r in db.execute(
        "SELECT name, count(*), min(version), max(version) FROM names GROUP BY name"
        " HAVING min(version) != 1 OR max(version) != count(*) LIMIT 10"
    ):
        bad(f"name {r[0]!r}: versions are not 1..{r[1]} (min {r[2]}, max {r[3]})")
    _check_meta_index(db, bad)
    _check_acyclic(db, bad)
    if "experiments" in tables:
        _check_experiments(db, bad, has_runs="runs" in tables)
    return out


def _check_meta_index(db: sqlite3.Connection, bad: Any) -> None:
    indexed: dict[int, set[tuple[str, str]]] = {}
    for key, value, pk in db.execute("SELECT key, value, artifact FROM meta"):
        indexed.setdefault(pk, set()).add((key, value))
    for pk, artifact_id, meta, columns in db.execute("SELECT pk, id, meta, columns FROM artifacts"):
        try:
            doc = json.loads(meta)
            json.loads(columns)
        except ValueError:
            bad(f"artifact {artifact_id[:12]}: its meta or columns are not JSON")
            continue
        if not isinstance(doc, dict) or {(k, mf.meta_text(v)) for k, v in doc.items()} != indexed.pop(pk, set()):
            bad(f"artifact {artifact_id[:12]}: its meta disagrees with the meta index")
    for pk in indexed:
        bad(f"meta index rows for artifact key {pk}, which has no such meta")


def _check_acyclic(db: sqlite3.Connection, bad: Any) -> None:
    """Kahn's algorithm over every edge: what is never freed lies on (or below) a cycle."""
    parents: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for child, parent in db.execute("SELECT child, parent FROM edges"):
        parents[child] = parents.get(child, 0) + 1
        parents.setdefault(parent, 0)
        children.setdefault(parent, []).append(child)
    ready = [pk for pk, n in parents.items() if n == 0]
    while ready:
        for child in children.get(ready.pop(), ()):
            parents[child] -= 1
            if parents[child] == 0:
                ready.append(child)
    stuck = sorted(pk for pk, n in parents.items() if n > 0)
    if stuck:
        row = db.execute("SELECT id FROM artifacts WHERE pk = ?", (stuck[0],)).fetchone()
        shown = row[0][:12] if row is not None else f"key {stuck[0]}"
        bad(f"lineage has a cycle ({len(stuck)} artifact(s) on or below it, e.g. {shown})")


def _check_experiments(db: sqlite3.Connection, bad: Any, *, has_runs: bool) -> None:
    known = {r[0] for r in db.execute("SELECT id FROM artifacts")}
    experiments = set()
    for exp_id, kind, spec in db.execute("SELECT id, kind, spec FROM experiments"):
        experiments.add(exp_id)
        try:
            doc = json.loads(spec)
            got = spec_id(spec)
        except ValueError:
            bad(f"experiment {exp_id[:12]}: its spec is not JSON")
            continue
        if got != exp_id:
            bad(f"experiment {exp_id[:12]}: its spec hashes to {got[:12]}, not to its id (the spec changed)")
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            bad(f"experiment {exp_id[:12]}: kind {kind!r} is not its spec's")
            continue
        for role, ids in (doc.get("inputs") or {}).items():
            for artifact_id in [ids] if isinstance(ids, str) else ids:
                if artifact_id not in known:
                    bad(f"experiment {exp_id[:12]}: input {role} {str(artifact_id)[:12]} is not in the lake")
    if not has_runs:
        return
    for run_id, exp_id, results in db.execute("SELECT id, experiment, results FROM runs"):
        if exp_id not in experiments:
            bad(f"run {run_id[:12]}: its experiment {exp_id[:12]} is not in the lake")
        try:
            doc = json.loads(results)
        except ValueError:
            bad(f"run {run_id[:12]}: its results are not JSON")
            continue
        for key, artifact_id in doc.items() if isinstance(doc, dict) else ():
            if artifact_id not in known:
                bad(f"run {run_id[:12]}: result {key} {str(artifact_id)[:12]} is not in the lake")


def damaged(exc: ManifestDamaged) -> VerifyReport:
    """The report of a manifest too damaged to open or read."""
    return VerifyReport(
        0, [Problem("manifest", exc.path, f"{exc.detail}: restore manifest.sqlite from a backup or a copy")]
    )


def verify(lake: Lake, ids: list[str] | None, *, content: bool = True, wait: float = mf.BUSY_TIMEOUT_S) -> VerifyReport:
    """Recompute file hash (and, with ``content``, the content id) of ``ids`` or of every artifact; with no
    ``ids``, also check the manifest and report orphan objects, stale staging files and what is left alone.

    ``content=False`` (``--quick``) uses SQLite's quick_check instead of the full integrity check.
    """
    problems: list[Problem] = []
    left: list[LeftAlone] = []
    checked = 0
    path = str(lake.root / "manifest.sqlite")
    try:
        if ids is None:
            problems += check_manifest(lake.db, path, quick=not content)
            rows = lake.db.execute(
                "SELECT id, type, schema_version, file_hash, rows, bytes, columns FROM artifacts ORDER BY pk"
            ).fetchall()
        else:
            rows = []
            for artifact_id in ids:
                rows += lake.db.execute(
                    "SELECT id, type, schema_version, file_hash, rows, bytes, columns FROM artifacts WHERE id = ?",
                    (artifact_id,),
                ).fetchall()
        checked = len(rows)
        for row in rows:
            _check_object(lake, row, content, problems)
        if ids is None:
            with _locked(lake, wait, required=False):
                orphans, stale, left = _scan(lake, grace=None)
            problems += [
                Problem(
                    "orphan", str(p), "object file with no manifest row (lake gc removes it after the grace period)"
                )
                for p in orphans
            ]
            problems += [Problem("stale", str(p), _stale_detail(p)) for p in stale]
    except ManifestDamaged as exc:
        problems.append(Problem("manifest", exc.path, f"{exc.detail}: restore manifest.sqlite from a backup"))
    return VerifyReport(checked, problems, left)


def gc(
    lake: Lake, *, dry_run: bool = False, grace: float = DEFAULT_GRACE_S, wait: float = mf.BUSY_TIMEOUT_S
) -> GcReport:
    """Remove orphan objects older than ``grace`` seconds and stale staging files (only list them with
    ``dry_run``), holding the write lock throughout; report what was left alone and why."""
    removed: list[str] = []
    total = 0
    with _locked(lake, wait, required=True):
        orphans, stale, left = _scan(lake, grace=grace)
        for p in orphans + stale:
            if stagedirs.SWEEP_DIR.fullmatch(p.name) or stagedirs.SPILL_DIR.fullmatch(p.name):
                size = stagedirs.dir_size(lake.root, p)
                kept = [] if dry_run else stagedirs.remove_dir(lake.root, p)
                left += kept
                if not kept:
                    removed.append(str(p))
                    total += size
                continue
            try:
                size = os.lstat(p).st_size
            except FileNotFoundError:
                continue
            reason = None if dry_run else remove_file(lake.root, p)
            if reason is None:
                removed.append(str(p))
                total += size
            else:
                left.append(LeftAlone(str(p), reason))
    return GcReport(dry_run, removed, total, left)


def parse_grace(text: str) -> float:
    """``--grace``: seconds, or a number with s, m, h or d (``0``, ``90s``, ``30m``, ``24h``, ``7d``)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], None)
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(f"--grace {text!r}: give a duration like 0, 90s, 30m, 24h or 7d")
    return value
