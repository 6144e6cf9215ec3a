"""Tracker tables in the lake's manifest: experiments (id, name, spec, created) and runs (status, timings,
code version, git commit, library versions, platform, device, error, results)."""

from __future__ import annotations

import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3

from artifact_lake.artifact_store import manifest as mf

from .errors import NotFoundExperiment
from .spec import ExperimentSpec, canonical_json

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
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
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
    timings TEXT NOT NULL DEFAULT '{}'
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
_PACKAGES = ("sim", "experiments", "projections", "schemas", "artifact_store")


def ensure_tables(db: sqlite3.Connection) -> None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
        return
    with mf.immediate(db):
        for stmt in _DDL.split(";"):
            if stmt.strip():
                db.execute(stmt)


@cache
def code_version() -> str:
    """``<package version>+<blake3 of the source of every package, 12 hex>``: changes with any code edit."""
    root = Path(__file__).resolve().parent.parent
    h = blake3.blake3()
    for pkg in _PACKAGES:
        for path in sorted((root / pkg).rglob("*")):
            if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("artifact-lake")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"{version}+{h.hexdigest()[:12]}"


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
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _experiment(row: sqlite3.Row) -> Experiment:
    return Experiment(row["id"], row["name"], row["kind"], ExperimentSpec(json.loads(row["spec"])), row["created"])


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        experiment=row["experiment"],
        status=row["status"],
        started=row["started"],
        finished=row["finished"],
        duration=row["duration"],
        code_version=row["code_version"],
        git_commit=row["git_commit"],
        git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]),
        environment=json.loads(row["environment"]),
        device=row["device"],
        error=row["error"],
        results=json.loads(row["results"]),
        timings=json.loads(row["timings"]),
    )


def put_experiment(db: sqlite3.Connection, spec: ExperimentSpec) -> tuple[Experiment, bool]:
    """Record ``spec`` (idempotent: the id is the spec's hash). Returns (experiment, created)."""
    ensure_tables(db)
    with mf.immediate(db):
        row = db.execute("SELECT * FROM experiments WHERE id = ?", (spec.id,)).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO experiments (id, name, kind, spec, created) VALUES (?, ?, ?, ?, ?)",
                (spec.id, spec.name, spec.kind, canonical_json(spec.doc), mf.now_iso()),
            )
            row = db.execute("SELECT * FROM experiments WHERE id = ?", (spec.id,)).fetchone()
            return _experiment(row), True
    return _experiment(row), False


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


def new_run(db: sqlite3.Connection, experiment: str, device: str) -> Run:
    commit, dirty = git_state()
    run_id = secrets.token_hex(16)
    with mf.immediate(db):
        db.execute(
            "INSERT INTO runs (id, experiment, status, started, code_version, git_commit, git_dirty, environment, device)"
            " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                experiment,
                mf.now_iso(),
                code_version(),
                commit,
                None if dirty is None else int(dirty),
                json.dumps(environment(), sort_keys=True),
                device,
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
) -> Run:
    with mf.immediate(db):
        db.execute(
            "UPDATE runs SET status = ?, finished = ?, duration = ?, results = ?, error = ?, timings = ? WHERE id = ?",
            (
                status,
                mf.now_iso(),
                duration,
                json.dumps(results or {}, sort_keys=True),
                error,
                json.dumps(timings or {}, sort_keys=True),
                run_id,
            ),
        )
    return get_run(db, run_id)


def get_run(db: sqlite3.Connection, run_id: str) -> Run:
    ensure_tables(db)
    rows = db.execute("SELECT * FROM runs WHERE id >= ? AND id < ? LIMIT 2", (run_id, run_id + "g")).fetchall()
    if len(rows) != 1:
        raise NotFoundExperiment(f"no run matches {run_id!r}" if not rows else f"run prefix {run_id!r} is ambiguous")
    return _run(rows[0])


def runs_of(db: sqlite3.Connection, experiment: str) -> list[Run]:
    """Runs of an experiment, newest first."""
    ensure_tables(db)
    return [
        _run(r) for r in db.execute("SELECT * FROM runs WHERE experiment = ? ORDER BY started DESC, id", (experiment,))
    ]


def run_of_artifact(db: sqlite3.Connection, artifact_id: str) -> Run | None:
    """The newest succeeded run whose results include ``artifact_id``."""
    ensure_tables(db)
    rows = db.execute(
        "SELECT DISTINCT e.run FROM edges e JOIN artifacts a ON a.pk = e.child WHERE a.id = ? AND e.run IS NOT NULL",
        (artifact_id,),
    ).fetchall()
    runs = [get_run(db, r[0]) for r in rows]
    runs = [r for r in runs if r.status == "succeeded" and artifact_id in r.results.values()]
    return max(runs, key=lambda r: (r.started or "", r.id)) if runs else None
