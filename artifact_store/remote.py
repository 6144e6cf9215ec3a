"""Remotes: share a lake's objects and records through S3 or a shared folder (docs/scale-out.md).

A remote holds two kinds of files, both immutable and content-addressed, both written with create-if-absent:

* ``objects/<2 hex>/<64 hex>.parquet``: an artifact's object, named by its artifact id;
* ``segments/<64 hex>.json.gz``: manifest records (artifacts, names, edges, experiments, runs) named by the
  blake3 of their canonical JSON.

Invariants:
* Nothing on a remote is ever overwritten or deleted; the first writer of a key wins, and as keys name their
  content, a second writer would have written the same thing. Pushes from many machines therefore need no lock.
* A push uploads every object before the segment that records it: a segment never names an object the remote
  lacks. A push killed half way leaves objects no segment names; the same push again uploads only the rest.
* A pull checks each segment against its name and each object against its file hash and its content id before
  registering anything. Records merge in one transaction; an artifact whose object is not fetched yet is a
  *records-only* artifact (a row in ``remote_objects`` naming the remote that has it). Each object is then
  fetched, checked and installed in a transaction of its own that clears that mark, so a pull killed half way
  leaves whole artifacts and records-only ones, never a half-registered one.
* Name versions are never overwritten. A remote version merges under its own number when the local name has
  that version for the same artifact, or when it is the next version and every earlier one agrees; once the two
  histories disagree, the remote's later versions are recorded under ``<remote>/<name>`` (a new version there
  whenever it moves) and the pull reports the conflict.
* Nothing read from a remote is executed: segments are JSON, checked field by field; identifiers of SQL come
  from the local schema only.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import blake3

from . import manifest as mf
from ._backends import Backend, check_url, open_backend
from .errors import CorruptArtifact, DamagedObject, InvalidInput, NotFound
from .lake import _crashpoint
from .names import check_name
from .objects import BadObject, install, object_path, read_checked, stage
from .records import Problem, VerifyReport

if TYPE_CHECKING:
    from .lake import Lake

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``, called after every object transferred."""

SEGMENT_FORMAT = "artifact-lake-segment/1"
_REMOTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEGMENT_KEY = re.compile(r"segments/([0-9a-f]{64})\.json\.gz")
_DDL = """
CREATE TABLE IF NOT EXISTS remotes (name TEXT PRIMARY KEY, url TEXT NOT NULL, created TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remote_segments (
    remote TEXT NOT NULL, segment TEXT NOT NULL, PRIMARY KEY (remote, segment)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remote_objects (
    artifact INTEGER PRIMARY KEY REFERENCES artifacts(pk), remote TEXT NOT NULL
);
"""
# run columns that describe a live process on the pushing machine: never shipped
_LOCAL_RUN_COLUMNS = ("pid", "host", "lock")


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PushReport:
    remote: str
    objects: int = 0
    """Objects this push selected."""
    uploaded: int = 0
    """Objects this push uploaded (the others were on the remote already)."""
    bytes: int = 0
    segment: str | None = None
    segment_new: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PullReport:
    remote: str
    segments: int = 0
    """Segments merged by this pull (segments merged before are skipped)."""
    artifacts: int = 0
    """Artifact records new to this lake."""
    downloaded: int = 0
    bytes: int = 0
    reused: int = 0
    """Objects found intact in objects/ (left by a pull that was killed) and registered without a download."""
    records_only: int = 0
    """Artifacts the lake now knows only by their records (their objects stay on the remote)."""
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the remotes table ---------------------------------------------------------------------------------
def ensure_tables(db: sqlite3.Connection) -> None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'remote_objects'").fetchone() is None:
        with mf.immediate(db):
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    db.execute(stmt)


def _has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'remote_objects'").fetchone() is not None


def add_remote(lake: Lake, name: str, url: str) -> RemoteInfo:
    """Record remote ``name`` at ``url`` (``s3://bucket/prefix`` or ``file:///path``)."""
    lake.require_writable("remote add")
    if not _REMOTE_NAME.fullmatch(name):
        raise InvalidInput(f"invalid remote name {name!r}: a letter, then letters, digits, '_' or '-' (at most 64)")
    url = check_url(url)
    ensure_tables(lake.db)
    with mf.immediate(lake.db):
        row = lake.db.execute("SELECT url FROM remotes WHERE name = ?", (name,)).fetchone()
        if row is not None:
            raise InvalidInput(f"remote {name!r} exists (at {row[0]}): remove it first (lake remote remove {name})")
        lake.db.execute("INSERT INTO remotes (name, url, created) VALUES (?, ?, ?)", (name, url, mf.now_iso()))
    return RemoteInfo(name, url)


def list_remotes(lake: Lake) -> list[RemoteInfo]:
    if not _has_tables(lake.db):
        return []
    return [RemoteInfo(r[0], r[1]) for r in lake.db.execute("SELECT name, url FROM remotes ORDER BY name")]


def remove_remote(lake: Lake, name: str) -> RemoteInfo:
    """Forget remote ``name``; refused while records-only artifacts still count on it."""
    lake.require_writable("remote remove")
    info = get_remote(lake, name)
    with mf.immediate(lake.db):
        n = lake.db.execute("SELECT count(*) FROM remote_objects WHERE remote = ?", (name,)).fetchone()[0]
        if n:
            raise InvalidInput(
                f"remote {name!r} still holds the objects of {n} records-only artifact(s): "
                f"lake pull --all --remote {name} first"
            )
        lake.db.execute("DELETE FROM remote_segments WHERE remote = ?", (name,))
        lake.db.execute("DELETE FROM remotes WHERE name = ?", (name,))
    return info


def get_remote(lake: Lake, name: str | None) -> RemoteInfo:
    """Remote ``name``; without one, the only remote or ``origin``."""
    remotes = list_remotes(lake)
    if name is None:
        if len(remotes) == 1:
            return remotes[0]
        named = [r for r in remotes if r.name == "origin"]
        if named:
            return named[0]
        if not remotes:
            raise NotFound("this lake has no remote: lake remote add NAME URL")
        raise InvalidInput(f"this lake has {len(remotes)} remotes: say which with --remote NAME")
    for r in remotes:
        if r.name == name:
            return r
    known = ", ".join(r.name for r in remotes) or "none"
    raise NotFound(f"no remote {name!r} (remotes: {known})")


def _object_key(artifact_id: str) -> str:
    return f"objects/{artifact_id[:2]}/{artifact_id}.parquet"


# -- push ----------------------------------------------------------------------------------------------
def _closure(lake: Lake, ids: set[str], db: sqlite3.Connection) -> set[int]:
    """Artifact keys of ``ids``, their ancestors, the other versions of their names and the inputs of the
    experiments behind them: everything a puller needs to read those records whole."""
    pks = {lake._pk(i) for i in ids}
    todo = set(pks)
    while todo:
        nxt: set[int] = set()
        for pk in todo:
            nxt.update(p for p, _ in mf.walk(db, pk, up=True, depth=None))
        keys = mf.pk_list(todo | nxt)
        nxt.update(
            r[0]
            for r in db.execute(
                "SELECT n2.artifact FROM json_each(?) j JOIN names n ON n.artifact = j.value"
                " JOIN names n2 ON n2.name = n.name",
                (keys,),
            )
        )
        todo = nxt - pks
        pks |= nxt
    return pks


def _runs_and_experiments(db: sqlite3.Connection, ids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "runs" not in tables or "experiments" not in tables:
        return [], []
    runs = []
    for row in db.execute("SELECT * FROM runs WHERE status IN ('succeeded', 'failed') ORDER BY id"):
        results = json.loads(row["results"] or "{}")
        if set(results.values()) & ids:
            runs.append({k: row[k] for k in row.keys() if k not in _LOCAL_RUN_COLUMNS})
    exp_ids = sorted({r["experiment"] for r in runs})
    exps = [dict(r) for r in db.execute("SELECT * FROM experiments WHERE id IN (SELECT value FROM json_each(?))",
                                         (json.dumps(exp_ids),))]  # fmt: skip
    return sorted(exps, key=lambda e: str(e["id"])), runs


def build_segment(lake: Lake, pks: set[int]) -> dict[str, Any]:
    """The records of artifacts ``pks`` (with their names, the edges among them, runs and experiments)."""
    db = lake.db
    keys = mf.pk_list(pks)
    arts = [
        {
            "id": r["id"], "type": r["type"], "schema_version": r["schema_version"], "file_hash": r["file_hash"],
            "rows": r["rows"], "bytes": r["bytes"], "columns": json.loads(r["columns"]), "meta": json.loads(r["meta"]),
            "created": r["created"],
        }
        for r in db.execute("SELECT a.* FROM json_each(?) j JOIN artifacts a ON a.pk = j.value ORDER BY a.id", (keys,))
    ]  # fmt: skip
    names = [
        {"name": r[0], "version": r[1], "id": r[2], "created": r[3]}
        for r in db.execute(
            "SELECT n.name, n.version, a.id, n.created FROM json_each(?) j JOIN names n ON n.artifact = j.value"
            " JOIN artifacts a ON a.pk = n.artifact ORDER BY n.name, n.version",
            (keys,),
        )
    ]
    edges = [
        {"child": r[0], "parent": r[1], "run": r[2]}
        for r in db.execute(
            "SELECT c.id, p.id, e.run FROM json_each(?) j JOIN edges e ON e.child = j.value"
            " JOIN artifacts c ON c.pk = e.child JOIN artifacts p ON p.pk = e.parent"
            " WHERE e.parent IN (SELECT value FROM json_each(?)) ORDER BY c.id, p.id",
            (keys, keys),
        )
    ]
    exps, runs = _runs_and_experiments(db, {a["id"] for a in arts})
    return {"format": SEGMENT_FORMAT, "artifacts": arts, "names": names, "edges": edges,
            "experiments": exps, "runs": runs}  # fmt: skip


def encode_segment(segment: dict[str, Any]) -> tuple[str, bytes]:
    """(blake3 of the canonical JSON, gzip of it with a fixed header): the same records, the same bytes."""
    text = json.dumps(segment, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return blake3.blake3(text).hexdigest(), gzip.compress(text, compresslevel=6, mtime=0)


def push(
    lake: Lake,
    refs: Iterable[str] = (),
    *,
    all_: bool = False,
    remote: str | None = None,
    progress: Progress | None = None,
) -> PushReport:
    """Upload the objects ``refs`` need (with their ancestors; everything with ``all_``) that the remote
    lacks, then their records as one segment. Re-running after a kill uploads only what is missing."""
    refs = list(refs)
    if not refs and not all_:
        raise InvalidInput("push what? give references, or --all")
    info = get_remote(lake, remote)
    backend = open_backend(info.url)
    if all_:
        pks = {int(r[0]) for r in lake.db.execute("SELECT pk FROM artifacts")}
    else:
        pks = _closure(lake, {lake.resolve(r) for r in refs}, lake.db)
    report = PushReport(info.name)
    rows = lake.db.execute(
        "SELECT a.pk, a.id, a.bytes FROM json_each(?) j JOIN artifacts a ON a.pk = j.value ORDER BY a.id",
        (mf.pk_list(pks),),
    ).fetchall()
    ro = _records_only(lake)
    missing = [r["id"] for r in rows if r["pk"] in ro]
    if missing:
        raise InvalidInput(
            f"{len(missing)} artifact(s) to push are records only here (e.g. {missing[0][:12]}): "
            "lake pull them first, or push from a lake that holds their objects"
        )
    report.objects = len(rows)
    for k, row in enumerate(rows):
        key = _object_key(row["id"])
        if not backend.exists(key):
            data = lake._checked_bytes(row["id"])  # never upload bytes that do not hash as recorded
            if backend.create(key, bytes(data)):
                report.uploaded += 1
                report.bytes += len(data)
            _crashpoint("push-after-object")
        if progress is not None:
            progress(k + 1, len(rows), f"push {row['id'][:12]}")
    digest, blob = encode_segment(build_segment(lake, pks))
    report.segment = digest
    report.segment_new = backend.create(f"segments/{digest}.json.gz", blob)
    ensure_tables(lake.db)
    with mf.immediate(lake.db):
        lake.db.execute("INSERT OR IGNORE INTO remote_segments (remote, segment) VALUES (?, ?)", (info.name, digest))
    return report


# -- reading segments ----------------------------------------------------------------------------------
def _bad(key: str, what: str) -> CorruptArtifact:
    return CorruptArtifact(f"remote segment {key} is damaged ({what}): nothing was merged from it")


def _read_segment(backend: Backend, key: str) -> dict[str, Any]:
    m = _SEGMENT_KEY.fullmatch(key)
    assert m is not None
    try:
        text = gzip.decompress(backend.get(key))
    except (OSError, EOFError) as exc:
        raise _bad(key, f"not gzip: {exc}") from exc
    if blake3.blake3(text).hexdigest() != m.group(1):
        raise _bad(key, "its records do not hash to its name")
    try:
        seg = json.loads(text)
    except ValueError as exc:
        raise _bad(key, f"not JSON: {exc}") from exc
    _check_segment(seg, key)
    return dict(seg)


def _check_segment(seg: Any, key: str) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise _bad(key, what)

    need(isinstance(seg, dict) and seg.get("format") == SEGMENT_FORMAT, f"not a {SEGMENT_FORMAT} segment")
    for part in ("artifacts", "names", "edges", "experiments", "runs"):
        need(isinstance(seg.get(part), list) and all(isinstance(x, dict) for x in seg[part]), f"{part} is not a list")
    for a in seg["artifacts"]:
        need(isinstance(a.get("id"), str) and bool(_HEX64.fullmatch(a["id"])), f"artifact id {a.get('id')!r}")
        need(isinstance(a.get("file_hash"), str) and bool(_HEX64.fullmatch(a["file_hash"])), "a file hash")
        need(isinstance(a.get("type"), str) and isinstance(a.get("created"), str), f"artifact {a['id'][:12]}")
        for k in ("schema_version", "rows", "bytes"):
            need(isinstance(a.get(k), int) and not isinstance(a[k], bool) and a[k] >= 0, f"{k} of {a['id'][:12]}")
        need(isinstance(a.get("meta"), dict) and isinstance(a.get("columns"), list), f"meta of {a['id'][:12]}")
    ids = {a["id"] for a in seg["artifacts"]}
    for n in seg["names"]:
        need(isinstance(n.get("name"), str) and n.get("id") in ids, f"name {n.get('name')!r}")
        need(isinstance(n.get("version"), int) and n["version"] >= 1, f"version of {n['name']!r}")
    for e in seg["edges"]:
        need(e.get("child") in ids and e.get("parent") in ids, "an edge to an artifact it does not record")
        need(e.get("run") is None or isinstance(e["run"], str), "an edge's run")
    for x in seg["experiments"] + seg["runs"]:
        need(isinstance(x.get("id"), str), "an experiment or run without an id")


# -- merging records -----------------------------------------------------------------------------------
def _records_only(lake: Lake) -> set[int]:
    if not _has_tables(lake.db):
        return set()
    return {int(r[0]) for r in lake.db.execute("SELECT artifact FROM remote_objects")}


def _merge(lake: Lake, remote: str, seg: dict[str, Any], report: PullReport) -> None:
    """Merge one checked segment's records (inside the caller's transaction)."""
    db = lake.db
    for a in seg["artifacts"]:
        if db.execute("SELECT 1 FROM artifacts WHERE id = ?", (a["id"],)).fetchone() is not None:
            continue
        cur = db.execute(
            "INSERT INTO artifacts (id, type, schema_version, file_hash, rows, bytes, columns, meta, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a["id"], a["type"], a["schema_version"], a["file_hash"], a["rows"], a["bytes"],
             json.dumps(a["columns"], separators=(",", ":")),
             json.dumps(a["meta"], sort_keys=True, separators=(",", ":")), a["created"]),
        )  # fmt: skip
        pk = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT OR IGNORE INTO meta (key, value, artifact) VALUES (?, ?, ?)",
            [(k, mf.meta_text(v), pk) for k, v in a["meta"].items()],
        )
        db.execute("INSERT INTO remote_objects (artifact, remote) VALUES (?, ?)", (pk, remote))
        report.artifacts += 1
    for e in seg["edges"]:
        child, parent = lake._pk(e["child"]), lake._pk(e["parent"])
        if child == parent or mf.path_between(db, parent, child) is not None:
            report.skipped.append(f"edge {e['parent'][:12]} -> {e['child'][:12]}: it would make lineage a cycle")
            continue
        mf.add_edges(db, child, [parent], e["run"])
    _merge_names(lake, remote, seg["names"], report)
    _merge_rows(db, "experiments", seg["experiments"], report)
    _merge_rows(db, "runs", seg["runs"], report)


def _merge_names(lake: Lake, remote: str, names: list[dict[str, Any]], report: PullReport) -> None:
    db = lake.db
    by_name: dict[str, list[dict[str, Any]]] = {}
    for n in sorted(names, key=lambda n: (n["name"], n["version"])):
        by_name.setdefault(n["name"], []).append(n)
    for name, versions in by_name.items():
        try:
            check_name(name)
        except InvalidInput as exc:
            report.skipped.append(f"name: {exc}")
            continue
        local = {
            int(r[0]): str(r[1])
            for r in db.execute(
                "SELECT n.version, a.id FROM names n JOIN artifacts a ON a.pk = n.artifact WHERE n.name = ?", (name,)
            )
        }
        diverged = False
        for n in versions:
            v, artifact_id = int(n["version"]), str(n["id"])
            if not diverged and local.get(v) == artifact_id:
                continue
            if not diverged and v not in local and v == max(local, default=0) + 1:
                db.execute(
                    "INSERT INTO names (name, version, artifact, created) VALUES (?, ?, ?, ?)",
                    (name, v, lake._pk(artifact_id), n["created"]),
                )
                local[v] = artifact_id
                continue
            diverged = True
            tracking = f"{remote}/{name}"
            try:
                check_name(tracking)
            except InvalidInput:
                report.skipped.append(f"name {name}@v{v}: differs here and {tracking!r} is not a valid name")
                continue
            tv, _ = mf.add_name(db, tracking, lake._pk(artifact_id))
            report.conflicts.append(
                {"name": name, "version": v, "local": local.get(v), "remote": artifact_id,
                 "recorded_as": f"{tracking}@v{tv}"}
            )  # fmt: skip


def _merge_rows(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]], report: PullReport) -> None:
    """INSERT OR IGNORE by id, over the columns the local table has (identifiers from the local schema only)."""
    if not rows:
        return
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    if not columns:
        report.skipped.append(f"{len(rows)} {table} record(s): this lake has no {table} table")
        return
    for row in rows:
        cols = [c for c in columns if c in row and c not in _LOCAL_RUN_COLUMNS]
        marks = ", ".join("?" * len(cols))
        try:
            db.execute(
                f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                [row[c] if not isinstance(row[c], dict | list) else json.dumps(row[c]) for c in cols],
            )
        except sqlite3.IntegrityError as exc:
            report.skipped.append(f"{table} {str(row.get('id'))[:16]}: {exc}")


# -- pull ----------------------------------------------------------------------------------------------
def fetch_records(lake: Lake, info: RemoteInfo, backend: Backend, report: PullReport) -> None:
    """Merge every segment of the remote this lake has not merged yet, in one transaction."""
    ensure_tables(lake.db)
    done = {r[0] for r in lake.db.execute("SELECT segment FROM remote_segments WHERE remote = ?", (info.name,))}
    keys = [k for k in backend.list("segments/") if _SEGMENT_KEY.fullmatch(k)]
    todo = [(k, _read_segment(backend, k)) for k in keys if _SEGMENT_KEY.fullmatch(k).group(1) not in done]  # type: ignore[union-attr]
    if not todo:
        return
    with mf.immediate(lake.db):
        for key, seg in todo:
            _merge(lake, info.name, seg, report)
            lake.db.execute(
                "INSERT OR IGNORE INTO remote_segments (remote, segment) VALUES (?, ?)", (info.name, key[9:73])
            )
            report.segments += 1


def _verified_object(artifact_id: str, row: sqlite3.Row, data: bytes, where: str) -> str:
    """The file hash of ``data``, refused (a :class:`DamagedObject`) unless it holds the content of
    ``artifact_id``. Bytes that hash otherwise than the record but hold that very content are accepted: two
    lakes can hold one artifact as different bytes (a file kept as it was published), and the remote keeps the
    first writer's; identity is the content, so the caller records the hash of the bytes it installs."""
    got = blake3.blake3(data).hexdigest()
    cid = _content_of(artifact_id, row, data, where)  # always: a segment's record is no proof of content
    if cid != artifact_id:
        other = "" if got == row["file_hash"] else f" (it hashes to {got[:16]}..., not {row['file_hash'][:16]}...)"
        raise DamagedObject(
            f"{where}: the object of {artifact_id} holds content {cid[:16]}...{other}: nothing was registered"
            " (lake verify --remote lists the damaged objects)"
        )
    return got


def _content_of(artifact_id: str, row: Any, data: bytes, where: str) -> str:
    """The content id of an object's bytes (an unreadable object is a :class:`DamagedObject`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .hashing import content_id

    try:
        return content_id(pq.read_table(pa.BufferReader(pa.py_buffer(data))), row["type"], row["schema_version"])
    except Exception as exc:  # noqa: BLE001 - any unreadable object is refused, never a crash
        raise DamagedObject(
            f"{where}: the object of {artifact_id} cannot be read ({exc}): nothing was registered"
        ) from exc


def fetch_object(lake: Lake, artifact_id: str, backend: Backend, report: PullReport | None = None) -> None:
    """Download, check and install the object of records-only ``artifact_id``; clear its mark in one transaction."""
    row = lake.db.execute(
        "SELECT pk, type, schema_version, file_hash FROM artifacts WHERE id = ?", (artifact_id,)
    ).fetchone()
    try:
        read_checked(lake.root, artifact_id, row["file_hash"])  # left intact by a pull that was killed
        have = True
    except BadObject:
        have = False
    if have:
        with mf.immediate(lake.db):
            lake.db.execute("DELETE FROM remote_objects WHERE artifact = ?", (row["pk"],))
        if report is not None:
            report.reused += 1
        return
    data = backend.get(_object_key(artifact_id))
    got = _verified_object(artifact_id, row, data, backend.url)
    if got != row["file_hash"]:
        # the same content as other bytes: record the hash of the bytes about to be installed while the
        # artifact is still records-only, so a crash from here on leaves a record that matches what is (or
        # will be) in objects/, never a whole object that verify would call changed
        with mf.immediate(lake.db):
            lake.db.execute("UPDATE artifacts SET file_hash = ?, bytes = ? WHERE pk = ?", (got, len(data), row["pk"]))
    staged = stage(lake.root)
    try:
        staged.handle.write(data)
        staged.handle.flush()
        os.fsync(staged.handle.fileno())
        with mf.immediate(lake.db):
            install(staged, object_path(lake.root, artifact_id))
            lake._intact.pop(artifact_id, None)
            lake.db.execute("DELETE FROM remote_objects WHERE artifact = ?", (row["pk"],))
    finally:
        staged.discard()  # a no-op once installed
    if report is not None:
        report.downloaded += 1
        report.bytes += len(data)
    _crashpoint("pull-after-object")


def pull(
    lake: Lake,
    refs: Iterable[str] = (),
    *,
    all_: bool = False,
    with_inputs: bool = False,
    records_only: bool = False,
    remote: str | None = None,
    progress: Progress | None = None,
) -> PullReport:
    """Merge the remote's records, then fetch the objects of ``refs`` (their ancestors' too with
    ``with_inputs``; every records-only artifact of the remote with ``all_``), each checked before it is
    registered. ``records_only`` merges the records and fetches nothing."""
    refs = list(refs)
    if not refs and not all_ and not records_only:
        raise InvalidInput("pull what? give references, or --all")
    lake.require_writable("pull")
    info = get_remote(lake, remote)
    backend = open_backend(info.url)
    report = PullReport(info.name)
    fetch_records(lake, info, backend, report)
    ro = {int(r[0]) for r in lake.db.execute("SELECT artifact FROM remote_objects WHERE remote = ?", (info.name,))}
    if records_only:
        wanted: set[int] = set()
    elif all_:
        wanted = set(ro)
    else:
        wanted = set()
        for ref in refs:
            pk = lake._pk(lake.resolve(ref))
            wanted.add(pk)
            if with_inputs:
                wanted.update(p for p, _ in mf.walk(lake.db, pk, up=True, depth=None))
    todo = lake.db.execute(
        "SELECT a.id FROM json_each(?) j JOIN artifacts a ON a.pk = j.value ORDER BY a.id",
        (mf.pk_list(wanted & ro),),
    ).fetchall()
    for k, (artifact_id,) in enumerate(todo):
        fetch_object(lake, artifact_id, backend, report)
        if progress is not None:
            progress(k + 1, len(todo), f"pull {artifact_id[:12]}")
    report.records_only = len(_records_only(lake))
    return report


def fetch_missing(lake: Lake, artifact_id: str) -> bool:
    """The read path's hook: fetch (checked) the object of a records-only artifact; False when it is not one."""
    if lake.read_only or lake.db.in_transaction or not _has_tables(lake.db):
        return False
    row = lake.db.execute(
        "SELECT r.remote FROM remote_objects r JOIN artifacts a ON a.pk = r.artifact WHERE a.id = ?", (artifact_id,)
    ).fetchone()
    if row is None:
        return False
    fetch_object(lake, artifact_id, open_backend(get_remote(lake, row[0]).url))
    return True


def clone(
    url: str,
    path: str | os.PathLike[str],
    *,
    name: str = "origin",
    records_only: bool = False,
    progress: Progress | None = None,
    prepare: Callable[[Lake], None] | None = None,
) -> tuple[Lake, PullReport]:
    """A new lake at ``path`` with remote ``name`` at ``url`` and everything the remote holds (only its
    records with ``records_only``: objects are then fetched when first read)."""
    from pathlib import Path

    from .lake import Lake

    url = check_url(url)
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"{target} exists and is not an empty folder: clone into a new folder")
    open_backend(url).list("segments/")  # an unreachable remote is one line before anything is made
    lake = Lake.open(target)
    if prepare is not None:  # e.g. the CLI creates the tracker's tables, so runs and experiments merge too
        prepare(lake)
    add_remote(lake, name, url)
    return lake, pull(lake, all_=True, records_only=records_only, remote=name, progress=progress)


def without_records_only(lake: Lake, report: VerifyReport) -> VerifyReport:
    """``report`` less the ``missing`` objects of records-only artifacts (their objects are on a remote)."""
    ro = _records_only(lake)
    if not ro:
        return report
    ids = {r[0] for r in lake.db.execute("SELECT id FROM artifacts WHERE pk IN (SELECT artifact FROM remote_objects)")}
    kept = [p for p in report.problems if not (p.kind == "missing" and p.subject in ids)]
    return VerifyReport(report.checked, kept, report.left_alone)


def verify_remote(lake: Lake, remote: str | None = None, *, progress: Progress | None = None) -> VerifyReport:
    """Download every object the remote's segments record and check its file hash; every segment against its name."""
    info = get_remote(lake, remote)
    backend = open_backend(info.url)
    problems: list[Problem] = []
    records: dict[str, set[str]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    for key in backend.list("segments/"):
        if not _SEGMENT_KEY.fullmatch(key):
            continue
        try:
            seg = _read_segment(backend, key)
        except CorruptArtifact as exc:
            problems.append(Problem("segment", key, str(exc)))
            continue
        for a in seg["artifacts"]:  # segments of several lakes may record one artifact as different bytes
            records.setdefault(a["id"], set()).add(a["file_hash"])
            kinds[a["id"]] = {"type": a["type"], "schema_version": a["schema_version"]}
    for k, (artifact_id, expected) in enumerate(sorted(records.items())):
        key = _object_key(artifact_id)
        try:
            data = backend.get(key)
        except NotFound:
            problems.append(Problem("missing", artifact_id, f"{info.url}/{key} is gone"))
            continue
        got = blake3.blake3(data).hexdigest()
        if got not in expected:  # not the bytes any segment recorded: sound only if it holds the content
            try:
                cid = _content_of(artifact_id, kinds[artifact_id], data, info.url)
            except DamagedObject as exc:
                cid = str(exc)
            if cid != artifact_id:
                shown = ", ".join(sorted(h[:16] + "..." for h in expected))
                problems.append(
                    Problem("changed", artifact_id, f"{info.url}/{key} hashes to {got[:16]}..., not {shown}")
                )
        if progress is not None:
            progress(k + 1, len(records), f"verify {artifact_id[:12]}")
    return VerifyReport(len(records), problems)


__all__ = [
    "PullReport",
    "PushReport",
    "RemoteInfo",
    "add_remote",
    "clone",
    "fetch_missing",
    "get_remote",
    "list_remotes",
    "pull",
    "push",
    "remove_remote",
    "verify_remote",
    "without_records_only",
]
