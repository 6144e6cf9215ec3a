"""Tracker tables in the lake's manifest: experiments (id, name, spec, created) and runs (status, timings,
code version, git commit, library versions, platform, device, error, results, pid and host).

Invariants:
* A run holds an exclusive ``flock`` on a lock file in ``<lake>/tmp/`` (made by ``objects.stage_lock``, its
  name recorded in the run's row) from before its row is inserted until after its final status is committed.
  A ``running`` run whose lock can be taken, or whose lock file is gone, belongs to a process that died: it is
  shown as ``interrupted`` at once, and :func:`mark_interrupted` records that status (``lake gc``). ``gc``
  removes the lock file as it removes any staging file nobody holds.
* A run's results and its ``succeeded`` status commit in one transaction (:func:`claim_results` inside
  :func:`artifact_store.batch.publish_many`), so a result's provenance always names a succeeded run.
* An experiment name belongs to the newest experiment created with it; a different spec takes a name held by
  another experiment only when asked to (``replace``).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store import manifest as mf
from artifact_lake.artifact_store.errors import ReadOnlyLake
from artifact_lake.artifact_store.objects import is_stale, stage_lock

from ._version import code_version as code_version
from .errors import NotFoundExperiment, SpecError
from .spec import ExperimentSpec, canonical_json

if TYPE_CHECKING:
    from artifact_lake.artifact_store import Lake

_DDL = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    created TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS experiments_name ON experiments(name, created);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL REFERENCES experiments(id),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')),
    started TEXT,
    finished TEXT,
    duration REAL,
    code_version TEXT NOT NULL,
    git_commit TEXT,
    git_dirty INTEGER,
    environment TEXT NOT NULL,
    device TEXT NOT NULL,
    error TEXT,
    results TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    pid INTEGER,
    host TEXT,
    lock TEXT,
    plugins TEXT NOT NULL DEFAULT '{}',
    checks TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment, started);
"""

KEY_LIBRARIES = (
    "numpy",
    "numba",
    "pyarrow",
    "duckdb",
    "polars",
    "blake3",
    "gymnasium",
    "torch",
    "ccxt",
    "click",
    "rich",
)


_OLD_RUN_COLUMNS = (
    "id, experiment, status, started, finished, duration, code_version, git_commit, git_dirty, environment,"
    " device, error, results, timings"
)
LIVE = ("queued", "running")


def ensure_tables(db: sqlite3.Connection) -> None:
    """Create the tracker tables, or bring an older lake's ``runs`` table up to date (status ``interrupted``,
    pid, host and lock). A read-only lake with an older table is read as it is."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    if row is not None and "interrupted" in row[0] and "checks" in row[0]:
        return
    try:
        with mf.immediate(db):
            row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
            if row is None:
                for stmt in _DDL.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
            elif "interrupted" not in row[0]:
                # SQLite cannot change a CHECK constraint in place: copy into a new table and swap.
                runs_ddl = _DDL[_DDL.index("CREATE TABLE IF NOT EXISTS runs") :].split(";")[0]
                db.execute(runs_ddl.replace("IF NOT EXISTS runs", "runs_v2"))
                db.execute(f"INSERT INTO runs_v2 ({_OLD_RUN_COLUMNS}) SELECT {_OLD_RUN_COLUMNS} FROM runs")
                db.execute("DROP TABLE runs")
                db.execute("ALTER TABLE runs_v2 RENAME TO runs")
                db.execute("CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment, started)")
            have = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
            for column in ("plugins", "checks"):  # issue #13: the user plugins a run used, what the guard checked
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT NOT NULL DEFAULT '{{}}'")
    except (sqlite3.OperationalError, ReadOnlyLake):  # a read-only lake: read its older table as it is
        if row is None:
            raise


@cache
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the working tree the code runs from, when it is a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if commit.returncode != 0:
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    libs: dict[str, str | None] = {}
    for name in KEY_LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "python": sys.version.split()[0],
        "libraries": libs,
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
    }


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    kind: str
    spec: ExperimentSpec
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "spec": self.spec.doc, "created": self.created}


@dataclass(frozen=True)
class Run:
    id: str
    experiment: str
    status: str
    started: str | None
    finished: str | None
    duration: float | None
    code_version: str
    git_commit: str | None
    git_dirty: bool | None
    environment: dict[str, Any]
    device: str
    error: str | None
    results: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    pid: int | None = None
    """Process that ran (or runs) it."""
    host: str | None = None
    """Host name of that process."""
    plugins: dict[str, Any] = field(default_factory=dict)
    """User plugins it ran, by name: kind, origin, code hash and the ``source`` artifact of that code."""
    checks: dict[str, Any] = field(default_factory=dict)
    """What the look-ahead guard checked: per plugin the combinations, cuts and determinism calls, its seconds."""
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _experiment(row: sqlite3.Row) -> Experiment:
    return Experiment(row["id"], row["name"], row["kind"], ExperimentSpec(json.loads(row["spec"])), row["created"])


def _run(row: sqlite3.Row, root: Path | None) -> Run:
    keys = row.keys()
    pid = row["pid"] if "pid" in keys else None
    host = row["host"] if "host" in keys else None
    status, error = row["status"], row["error"]
    if status in LIVE and root is not None and not _alive(root, row["lock"] if "lock" in keys else None):
        status, error = "interrupted", _interrupted_error(pid, host)
    return Run(
        id=row["id"],
        experiment=row["experiment"],
        status=status,
        started=row["started"],
        finished=row["finished"],
        duration=row["duration"],
        code_version=row["code_version"],
        git_commit=row["git_commit"],
        git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]),
        environment=json.loads(row["environment"]),
        device=row["device"],
        error=error,
        results=json.loads(row["results"]),
        timings=json.loads(row["timings"]),
        pid=pid,
        host=host,
        plugins=json.loads(row["plugins"]) if "plugins" in keys else {},
        checks=json.loads(row["checks"]) if "checks" in keys else {},
    )


def _runs(db: sqlite3.Connection, rows: Iterable[sqlite3.Row]) -> list[Run]:
    root = lake_root(db)
    out = []
    for row in rows:
        run = _run(row, root)
        if run.status == "interrupted" and row["status"] in LIVE:
            # it may have finished between the read and the lock check: read it again
            again = db.execute("SELECT * FROM runs WHERE id = ?", (row["id"],)).fetchone()
            if again is not None and again["status"] not in LIVE:
                run = _run(again, root)
        out.append(run)
    return out


# -- liveness of runs -------------------------------------------------------------------------------------


def lake_root(db: sqlite3.Connection) -> Path | None:
    """The folder of the manifest ``db`` is connected to (None for an in-memory database)."""
    for row in db.execute("PRAGMA database_list"):
        if row[1] == "main" and row[2]:
            return Path(row[2]).parent
    return None


def _lock_file(root: Path, lock: str | None) -> Path | None:
    if not lock or "/" in lock or lock.startswith("."):
        return None
    return root / "tmp" / lock


def _alive(root: Path, lock: str | None) -> bool:
    """True while some process holds the run's lock; a lock file that is gone or free means the run died
    (so does a run recorded by a version that took no lock)."""
    path = _lock_file(root, lock)
    return path is not None and os.path.lexists(path) and not is_stale(path)


def _interrupted_error(pid: int | None, host: str | None) -> str:
    who = f"pid {pid} on {host}" if pid is not None else "its process"
    return f"interrupted: {who} died before the run finished (killed, out of memory, or the machine stopped)"


@contextmanager
def run_lock(root: Path) -> Iterator[str]:
    """Hold a lock file in ``<root>/tmp/`` for the life of a run; yields its name (record it on the run).
    Anyone who can take the lock knows the run's process is gone."""
    staged = stage_lock(root)
    try:
        staged.handle.write(f"{os.getpid()} {socket.gethostname()}\n".encode())
        staged.handle.flush()
        yield staged.path.name
    finally:
        staged.discard()


def _has_runs(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is not None


def interrupted_runs(lake: Lake) -> list[Run]:
    """Runs recorded as running whose process is gone (shown as ``interrupted``; not yet recorded so)."""
    if not _has_runs(lake.db):
        return []  # no experiment ever ran here (and a read-only lake gets no tables)
    ensure_tables(lake.db)
    rows = lake.db.execute("SELECT * FROM runs WHERE status IN ('queued', 'running') ORDER BY started, id")
    return [r for r in _runs(lake.db, rows) if r.status == "interrupted"]


def mark_interrupted(lake: Lake, run_ids: Iterable[str] | None = None) -> list[Run]:
    """Record ``interrupted`` for every run (or every one of ``run_ids``) whose process died; returns them.

    A run that is still alive, or already finished, is left as it is. The dead runs' lock files are removed.
    """
    if not _has_runs(lake.db):
        return []
    ensure_tables(lake.db)
    wanted = None if run_ids is None else set(run_ids)
    marked: list[str] = []
    locks: list[Path | None] = []
    with mf.immediate(lake.db):
        rows = lake.db.execute("SELECT * FROM runs WHERE status IN ('queued', 'running')").fetchall()
        for row in rows:
            if wanted is not None and row["id"] not in wanted:
                continue
            if _alive(lake.root, row["lock"]):
                continue
            lake.db.execute(
                "UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE id = ?",
                (mf.now_iso(), _interrupted_error(row["pid"], row["host"]), row["id"]),
            )
            marked.append(row["id"])
            locks.append(_lock_file(lake.root, row["lock"]))
    for path in locks:
        if path is not None:
            _remove_free_lock(path)
    return [get_run(lake.db, r) for r in marked]


def _remove_free_lock(path: Path) -> None:
    """Remove a dead run's lock file, unless someone holds it (the lake's own gc would remove it too)."""
    if is_stale(path):
        path.unlink(missing_ok=True)


def put_experiment(db: sqlite3.Connection, spec: ExperimentSpec, *, replace: bool = False) -> tuple[Experiment, bool]:
    """Record ``spec`` (idempotent: the id is the spec's hash). Returns (experiment, created).

    A name the spec gives that already belongs to a different experiment is refused unless ``replace``: then
    the new experiment takes the name and the old one stays reachable by its id.
    """
    ensure_tables(db)
    with mf.immediate(db):
        row = db.execute("SELECT * FROM experiments WHERE id = ?", (spec.id,)).fetchone()
        if row is not None:
            return _experiment(row), False
        if "name" in spec.doc and not replace:
            holder = db.execute(
                "SELECT id FROM experiments WHERE name = ? ORDER BY created DESC LIMIT 1", (spec.name,)
            ).fetchone()
            if holder is not None:
                raise SpecError(
                    f"spec key 'name': {spec.name!r} already names experiment {holder['id'][:12]}, created from a"
                    " different spec; choose another name (--name) or move the name with --replace"
                )
        db.execute(
            "INSERT INTO experiments (id, name, kind, spec, created) VALUES (?, ?, ?, ?, ?)",
            (spec.id, spec.name, spec.kind, canonical_json(spec.doc), mf.now_iso()),
        )
        row = db.execute("SELECT * FROM experiments WHERE id = ?", (spec.id,)).fetchone()
    return _experiment(row), True


def get_experiment(db: sqlite3.Connection, ref: str) -> Experiment:
    """By full id, unique id prefix (>= 6 hex) or name (the newest with that name)."""
    ensure_tables(db)
    ref = ref.strip()
    rows = []
    if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref):
        rows = db.execute("SELECT * FROM experiments WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g")).fetchall()
        if len(rows) > 1:
            raise NotFoundExperiment(f"experiment prefix {ref!r} is ambiguous; give more characters")
    if not rows:
        rows = db.execute("SELECT * FROM experiments WHERE name = ? ORDER BY created DESC LIMIT 1", (ref,)).fetchall()
    if not rows:
        raise NotFoundExperiment(f"no experiment matches {ref!r} (see: experiments list)")
    return _experiment(rows[0])


def list_experiments(db: sqlite3.Connection) -> list[tuple[Experiment, Run | None]]:
    ensure_tables(db)
    out = []
    for row in db.execute("SELECT * FROM experiments ORDER BY created DESC, id"):
        exp = _experiment(row)
        runs = runs_of(db, exp.id)
        out.append((exp, runs[0] if runs else None))
    return out


def new_run_id() -> str:
    return secrets.token_hex(16)


def new_run(
    db: sqlite3.Connection,
    experiment: str,
    device: str,
    *,
    run_id: str | None = None,
    lock: str | None = None,
    env: dict[str, Any] | None = None,
) -> Run:
    """Record a ``running`` run of this process; ``lock`` is the name :func:`run_lock` yielded (held by the
    caller until the run's final status is committed). A run without a lock reads as ``interrupted``.
    ``env`` is the :func:`environment` the work ran in when that was another process (a Ray worker)."""
    commit, dirty = git_state()
    run_id = run_id or new_run_id()
    with mf.immediate(db):
        db.execute(
            "INSERT INTO runs (id, experiment, status, started, code_version, git_commit, git_dirty, environment,"
            " device, pid, host, lock) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                experiment,
                mf.now_iso(),
                code_version(),
                commit,
                None if dirty is None else int(dirty),
                json.dumps(environment() if env is None else env, sort_keys=True),
                device,
                os.getpid(),
                socket.gethostname(),
                lock,
            ),
        )
    return get_run(db, run_id)


def finish_run(
    db: sqlite3.Connection,
    run_id: str,
    *,
    status: str,
    duration: float,
    results: dict[str, str] | None = None,
    error: str | None = None,
    timings: dict[str, float] | None = None,
    plugins: dict[str, Any] | None = None,
    checks: dict[str, Any] | None = None,
    in_tx: bool = False,
) -> Run:
    """Record a run's end; ``in_tx`` when the caller's transaction is open (it commits with it)."""

    def apply() -> None:
        db.execute(
            "UPDATE runs SET status = ?, finished = ?, duration = ?, results = ?, error = ?, timings = ?,"
            " plugins = ?, checks = ? WHERE id = ?",
            (
                status,
                mf.now_iso(),
                duration,
                json.dumps(results or {}, sort_keys=True),
                error,
                json.dumps(timings or {}, sort_keys=True),
                json.dumps(plugins or {}, sort_keys=True),
                json.dumps(checks or {}, sort_keys=True),
                run_id,
            ),
        )

    if in_tx:
        apply()
    else:
        with mf.immediate(db):
            apply()
    return get_run(db, run_id)


def claim_results(db: sqlite3.Connection, run_id: str, results: Iterable[str], inputs: Iterable[str]) -> None:
    """Inside the run's final transaction: tag the edges from ``inputs`` into ``results`` with ``run_id`` where
    they name no succeeded run (edges left by a run that died, from an older version, or a plain publish)."""
    ins = json.dumps(sorted(set(inputs)))
    for artifact_id in results:
        db.execute(
            "UPDATE edges SET run = ? WHERE child = (SELECT pk FROM artifacts WHERE id = ?)"
            " AND parent IN (SELECT a.pk FROM json_each(?) j JOIN artifacts a ON a.id = j.value)"
            " AND (run IS NULL OR run NOT IN (SELECT id FROM runs WHERE status = 'succeeded'))",
            (run_id, artifact_id, ins),
        )


def get_run(db: sqlite3.Connection, run_id: str) -> Run:
    ensure_tables(db)
    rows = db.execute("SELECT * FROM runs WHERE id >= ? AND id < ? LIMIT 2", (run_id, run_id + "g")).fetchall()
    if len(rows) != 1:
        raise NotFoundExperiment(f"no run matches {run_id!r}" if not rows else f"run prefix {run_id!r} is ambiguous")
    return _runs(db, rows)[0]


def runs_of(db: sqlite3.Connection, experiment: str) -> list[Run]:
    """Runs of an experiment, newest first."""
    ensure_tables(db)
    return _runs(db, db.execute("SELECT * FROM runs WHERE experiment = ? ORDER BY started DESC, id", (experiment,)))


def run_of_artifact(db: sqlite3.Connection, artifact_id: str) -> Run | None:
    """The newest succeeded run whose results include ``artifact_id``: among the runs its edges name, else
    among all runs (an edge may name a run that died before this version published results atomically)."""
    ensure_tables(db)
    rows = db.execute(
        "SELECT DISTINCT e.run FROM edges e JOIN artifacts a ON a.pk = e.child WHERE a.id = ? AND e.run IS NOT NULL",
        (artifact_id,),
    ).fetchall()
    runs = [get_run(db, r[0]) for r in rows]
    runs = [r for r in runs if r.status == "succeeded" and artifact_id in r.results.values()]
    if not runs:
        runs = _runs(
            db,
            db.execute(
                "SELECT DISTINCT r.* FROM runs r, json_each(r.results) j WHERE r.status = 'succeeded' AND j.value = ?",
                (artifact_id,),
            ),
        )
    return max(runs, key=lambda r: (r.started or "", r.id)) if runs else None
