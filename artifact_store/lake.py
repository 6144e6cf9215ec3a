"""The lake: publish, resolve, find, read, lineage. Python API first; the CLI is a thin layer.

Publishing is crash-safe (DESIGN.md): validate, stage and fsync in ``tmp/``, then inside one
``BEGIN IMMEDIATE`` transaction rename into ``objects/`` and insert the rows. A crash between rename and
commit leaves an orphan object without a row; ``verify`` reports it and ``gc`` removes it. A manifest row
never points at a missing or different file. A refused publish leaves the lake as it was; so does a full
disk (one :class:`DiskFull` line; an object renamed in is removed again under the lock).

Every read that serves an object's content (:meth:`Lake.read`, :meth:`Lake.head`, :meth:`Lake.export`)
hashes the bytes it serves and refuses a changed object with :class:`DamagedObject`; publishing the
original content again restores a missing or changed object. Names follow :mod:`.names`; lineage stays
acyclic; meta is add-only.

Importing this module loads only the standard library and blake3; pyarrow loads on first use.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import signal
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from artifact_lake.schemas import Registry

from . import manifest as mf
from ._inputs import regular_file
from ._stream import open_parquet as _read_parquet  # a name tests watch: publishing known bytes reads nothing
from ._stream import stage_table, stream_file
from ._stream import to_arrow as to_arrow  # re-exported: the package and batch.py import it from here
from ._stream import write_checked as write_checked  # re-exported for batch.py
from .errors import AmbiguousRef, DamagedObject, InvalidInput, NotFound, ReadOnlyLake
from .hashing import file_hash
from .names import HEX, MIN_PREFIX
from .names import check_name as check_name  # re-exported: batch.py and older callers import it from here
from .objects import (
    BadObject,
    copy_checked,
    disk_full,
    install,
    is_disk_full,
    map_object,
    object_path,
    open_object,
)
from .records import Artifact, Lineage, LineageNode, PublishResult

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.schemas import Schema

    from ._stream import StagedObject
    from .records import GcReport, VerifyReport

DEFAULT_LAKE = "lake"
_REF = re.compile(r"(?P<name>.+?)@(?:latest|v(?P<version>[0-9]+))")


def default_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--lake PATH``, else ``LAKE_HOME``, else ``./lake``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LAKE_HOME") or DEFAULT_LAKE)


def _read_only_fs(root: Path) -> bool:
    """Whether the lake's folder is on a read-only file system (a read-only mount: even root cannot write)."""
    try:
        return bool(os.statvfs(root).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _crashpoint(where: str) -> None:
    """Fault injection for crash tests: ``ARTIFACT_LAKE_CRASH_AT=<where>`` SIGKILLs the process here;
    ``ARTIFACT_LAKE_STALL_AT=<where>`` stops it (SIGSTOP) until a SIGCONT, like a suspended process."""
    if os.environ.get("ARTIFACT_LAKE_CRASH_AT") == where:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("ARTIFACT_LAKE_STALL_AT") == where:
        os.kill(os.getpid(), signal.SIGSTOP)


def _check_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"meta key {key!r} must be a non-empty string")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"meta value of {key!r} is not JSON ({exc})") from exc
        out[key] = value
    return out


class Lake:
    """A lake on disk (see DESIGN.md for the layout). Open with :meth:`open`."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self._registry: Registry | None = None
        self.read_only = False
        """The lake lies on a read-only file system: reading works, anything that writes is refused."""
        # id -> (dev, inode, size, mtime, ctime, file hash) of objects whose bytes this Lake has checked
        self._intact: dict[str, tuple[int, int, int, int, int, str]] = {}

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Self:
        """Open the lake at ``path`` (see :func:`default_path`), creating its layout unless ``create=False``.

        Example::

            lake = Lake.open("research-lake")
            rec = lake.publish(table, "ohlcv", name="btc-1m")
            lake.lineage(rec.id)
        """
        root = default_path(path).resolve()
        manifest_path = root / "manifest.sqlite"
        if not manifest_path.exists():
            if not create:
                raise NotFound(f"no lake at {root} (create one with: lake init --lake {root})")
            for sub in ("objects", "projections", "quarantine", "tmp", "schemas"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        # a damaged manifest raises ManifestDamaged here or at its first bad page: one line, never a bug
        read_only = _read_only_fs(root)
        lake = cls(root, mf.connect(manifest_path, readonly=read_only))
        lake.read_only = read_only
        return lake

    def require_writable(self, action: str) -> None:
        """Refuse ``action`` in one line, before any work, when the lake is on a read-only file system."""
        if self.read_only:
            raise ReadOnlyLake(f"the lake at {self.root} is on a read-only file system: {action} needs to write to it")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.root / "schemas")
        return self._registry

    # -- publishing ----------------------------------------------------------------------------------
    def publish(
        self,
        data: Any,
        type: str,  # noqa: A002 - the public name of the argument
        name: str | None = None,
        inputs: Iterable[str] = (),
        meta: Mapping[str, Any] | None = None,
        *,
        run: str | None = None,
    ) -> PublishResult:
        """Validate ``data`` against ``type`` and store it as an immutable artifact.

        ``data`` is the path of a Parquet (or, for ``tensors``, safetensors) file, or anything :func:`to_arrow`
        takes: a pyarrow Table, a polars or pandas DataFrame, a DuckDB relation, a RecordBatchReader. ``inputs`` are
        references (ids, prefixes, names) of the artifacts it was derived from: they become lineage edges
        (tagged with ``run`` when given). Publishing content the lake already holds stores nothing and
        returns ``deduplicated=True``; under a name whose latest version points elsewhere it adds a version.
        """
        self.require_writable("publish")
        schema = self.registry.get(type)
        meta = _check_meta(meta or {})
        if name is not None:
            check_name(name)
        parents = [self._pk(self.resolve(ref)) for ref in inputs]
        source_hash: str | None = None
        if isinstance(data, (str, os.PathLike)):
            path = regular_file(data)
            source_hash = file_hash(path)
            known = self.db.execute(
                "SELECT a.pk, a.id FROM sources s JOIN artifacts a ON a.pk = s.artifact"
                " WHERE s.file_hash = ? AND s.type = ? AND s.schema = ?",
                (source_hash, schema.name, schema.fingerprint),
            ).fetchone()
            if known is not None and self.has_intact_object(known["id"]):
                return self._record(known["pk"], name, parents, run, deduplicated=True, meta=meta)
            if path.suffix != ".safetensors":
                # read as a stream of batches (memory stays flat), checked, hashed and staged
                got = stream_file(self.root, path, _read_parquet(path), schema, str(path))
                if got.kept and got.file_hash != source_hash:
                    source_hash = got.file_hash  # it changed since it was hashed: remember only what was stored
                return self._install(got, schema, str(path), name, parents, meta, run, source_hash)
            table, file_meta = self._read_safetensors(path, schema.name)
            meta = _check_meta({**file_meta, **meta})
            label = str(path)
        else:
            table = to_arrow(data)
            label = "table"
        return self._publish_table(table, schema, label, name, parents, meta, run, source_hash)

    @staticmethod
    def _read_safetensors(path: Path, type_name: str) -> tuple[pa.Table, dict[str, Any]]:
        from . import safetensors

        if type_name != "tensors":
            raise InvalidInput(f"{path}: a safetensors file publishes as --type tensors, not {type_name!r}")
        return safetensors.read(path)

    def _publish_table(
        self,
        table: pa.Table,
        schema: Schema,
        label: str,
        name: str | None,
        parents: list[int],
        meta: dict[str, Any],
        run: str | None,
        source_hash: str | None,
    ) -> PublishResult:
        from artifact_lake.schemas import conform

        from .hashing import content_id

        table = conform(table, schema, label)
        artifact_id = content_id(table, schema.name, schema.version)
        row = self.db.execute("SELECT pk FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is not None and self.has_intact_object(artifact_id):
            # Known content: it was valid when first stored, so only lineage, names and new meta keys change.
            with mf.immediate(self.db):
                self._add_source(source_hash, schema, row["pk"])
                return self._record(row["pk"], name, parents, run, deduplicated=True, in_tx=True, meta=meta)

        got = stage_table(self.root, table, schema, label, artifact_id)
        return self._install(got, schema, label, name, parents, meta, run, source_hash)

    def _install(
        self,
        got: StagedObject,
        schema: Schema,
        label: str,
        name: str | None,
        parents: list[int],
        meta: dict[str, Any],
        run: str | None,
        source_hash: str | None,
    ) -> PublishResult:
        """Install a staged object and record it in one transaction or, when the lake already holds its
        content intact, drop the staged file and record only the name version, edges and new meta keys."""
        staged, artifact_id, fhash = got.staged, got.artifact_id, got.file_hash
        installed: Path | None = None
        try:
            _crashpoint("after-stage")
            size = staged.path.stat().st_size
            target = object_path(self.root, artifact_id)
            with mf.immediate(self.db):
                try:
                    row = self.db.execute("SELECT pk FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
                    if row is not None and self.has_intact_object(artifact_id):
                        staged.discard()
                        pk, deduplicated = int(row["pk"]), True
                    elif row is not None:
                        # The row survived but its object was lost or changed: restore it from these bytes
                        # (refusing a cycle first: a refused publish must not have touched the object).
                        self._refuse_cycles(int(row["pk"]), parents)
                        install(staged, target)
                        self._intact.pop(artifact_id, None)
                        self.db.execute(
                            "UPDATE artifacts SET file_hash = ?, bytes = ? WHERE pk = ?", (fhash, size, row["pk"])
                        )
                        pk, deduplicated = int(row["pk"]), True
                    else:
                        installed = install(staged, target)
                        _crashpoint("after-rename")
                        pk = mf.insert_artifact(
                            self.db,
                            artifact_id=artifact_id,
                            type_name=schema.name,
                            schema_version=schema.version,
                            file_hash=fhash,
                            rows=got.rows,
                            size=size,
                            columns=[[f.name, str(f.type)] for f in got.schema],
                            meta=meta,
                        )
                        deduplicated = False
                    self._add_source(fhash, schema, pk)
                    self._add_source(source_hash, schema, pk)
                    result = self._record(
                        pk,
                        name,
                        parents,
                        run,
                        deduplicated=deduplicated,
                        in_tx=True,
                        meta=meta if deduplicated else None,
                    )
                    _crashpoint("before-commit")
                except BaseException:
                    # Still under the write lock: nobody else can have recorded this id, so the object we
                    # renamed in belongs to nothing once the transaction rolls back.
                    if installed is not None:
                        installed.unlink(missing_ok=True)
                        installed = None
                    raise
        except BaseException as exc:
            staged.discard()
            if installed is not None:
                self._undo_install(artifact_id, installed)  # the COMMIT itself failed
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise disk_full(exc, f"publishing {label}") from exc
            raise
        return result

    def _undo_install(self, artifact_id: str, path: Path) -> None:
        """After a failed COMMIT: remove the object we renamed in unless a row now points at it."""
        try:
            with mf.immediate(self.db):
                if self.db.execute("SELECT 1 FROM artifacts WHERE id = ?", (artifact_id,)).fetchone() is None:
                    path.unlink(missing_ok=True)
        except Exception:  # noqa: BLE001 - best effort: an orphan left here is what verify reports and gc removes
            pass

    def _add_source(self, source_hash: str | None, schema: Schema, pk: int) -> None:
        if source_hash is not None:
            self.db.execute(
                "INSERT OR IGNORE INTO sources (file_hash, type, schema, artifact) VALUES (?, ?, ?, ?)",
                (source_hash, schema.name, schema.fingerprint, pk),
            )

    def _record(
        self,
        pk: int,
        name: str | None,
        parents: list[int],
        run: str | None,
        *,
        deduplicated: bool,
        in_tx: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Add the name version, edges and (for a known artifact) new meta keys of ``pk``; describe the publish.

        An input that descends from ``pk`` is refused: the edge would close a lineage cycle. An input equal
        to ``pk`` adds no edge (an artifact is never its own input).
        """
        added: list[str] = []
        kept: list[str] = []

        def apply() -> int | None:
            nonlocal added, kept
            if deduplicated:
                self._refuse_cycles(pk, parents)
                if meta:
                    added, kept = mf.merge_meta(self.db, pk, meta)
            version = mf.add_name(self.db, name, pk)[0] if name is not None else None
            mf.add_edges(self.db, pk, parents, run)
            return version

        if in_tx:
            version = apply()
        else:
            with mf.immediate(self.db):
                version = apply()
        row = self.db.execute("SELECT id, type, rows, bytes FROM artifacts WHERE pk = ?", (pk,)).fetchone()
        return PublishResult(
            row["id"], row["type"], name, version, deduplicated, row["rows"], row["bytes"], added, kept
        )

    def _refuse_cycles(self, pk: int, parents: list[int]) -> None:
        """Refuse inputs that were derived from ``pk`` (a new artifact has no descendants to check)."""
        for parent in dict.fromkeys(parents):
            if parent == pk:
                continue
            path = mf.path_between(self.db, parent, pk)
            if path is not None:
                ids = dict(
                    self.db.execute(
                        "SELECT a.pk, a.id FROM json_each(?) j JOIN artifacts a ON a.pk = j.value", (mf.pk_list(path),)
                    ).fetchall()
                )
                chain = " <- ".join(ids[p][:12] for p in reversed(path))
                raise InvalidInput(
                    f"input {ids[parent][:12]} was derived from {ids[pk][:12]} ({chain}): making it an input of "
                    f"{ids[pk][:12]} would make lineage a cycle"
                )

    # -- references ----------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The full id of ``ref``: a full id, a unique prefix (>= 6 hex), ``NAME``, ``NAME@latest``, ``NAME@vN``."""
        ref = ref.strip()
        m = _REF.fullmatch(ref)
        if m:
            return self._by_name(m.group("name"), int(m.group("version")) if m.group("version") else None)
        is_name = self.db.execute("SELECT 1 FROM names WHERE name = ? LIMIT 1", (ref,)).fetchone() is not None
        if HEX.fullmatch(ref) and len(ref) >= MIN_PREFIX:
            rows = self.db.execute(
                "SELECT id FROM artifacts WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (ref, ref + "g")
            ).fetchall()
            if rows and is_name:
                # a name of this shape predates the name rules (names.py): never pick one silently
                raise AmbiguousRef(
                    f"{ref!r} is both a name and the start of artifact id {rows[0]['id'][:16]}...: "
                    f"say {ref + '@latest'!r} for the name, or give the full id"
                )
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                shown = ", ".join(r["id"][: len(ref) + 4] for r in rows[:5])
                raise AmbiguousRef(f"id prefix {ref!r} matches several artifacts ({shown}...); give more characters")
        if is_name:
            return self._by_name(ref, None)
        hint = ""
        if HEX.fullmatch(ref) and len(ref) < MIN_PREFIX:
            hint = f"; an id prefix needs at least {MIN_PREFIX} hex characters"
        else:
            names = [r[0] for r in self.db.execute("SELECT DISTINCT name FROM names LIMIT 10000")]
            close = difflib.get_close_matches(ref, names, n=1, cutoff=0.5)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        raise NotFound(f"no artifact matches {ref!r}{hint}")

    def _by_name(self, name: str, version: int | None) -> str:
        if version is None:
            row = self.db.execute(
                "SELECT a.id FROM names n JOIN artifacts a ON a.pk = n.artifact WHERE n.name = ?"
                " ORDER BY n.version DESC LIMIT 1",
                (name,),
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT a.id FROM names n JOIN artifacts a ON a.pk = n.artifact WHERE n.name = ? AND n.version = ?",
                (name, version),
            ).fetchone()
        if row is None:
            latest = self.db.execute("SELECT max(version) FROM names WHERE name = ?", (name,)).fetchone()[0]
            if latest is None:
                raise NotFound(f"no artifact is named {name!r}")
            raise NotFound(f"{name!r} has no version {version} (latest is v{latest})")
        return str(row["id"])

    def _pk(self, artifact_id: str) -> int:
        row = self.db.execute("SELECT pk FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artifact {artifact_id}")
        return int(row["pk"])

    # -- reading the manifest ------------------------------------------------------------------------
    def _artifacts(self, rows: list[sqlite3.Row]) -> list[Artifact]:
        pks = [r["pk"] for r in rows]
        names: dict[int, list[str]] = {pk: [] for pk in pks}
        if pks:
            marks = ",".join("?" * len(pks))
            for n in self.db.execute(
                f"SELECT artifact, name, version FROM names WHERE artifact IN ({marks}) ORDER BY name, version", pks
            ):
                names[n["artifact"]].append(f"{n['name']}@v{n['version']}")
        return [
            Artifact(
                id=r["id"],
                type=r["type"],
                schema_version=r["schema_version"],
                file_hash=r["file_hash"],
                rows=r["rows"],
                bytes=r["bytes"],
                created=r["created"],
                columns=json.loads(r["columns"]),
                meta=json.loads(r["meta"]),
                names=names[r["pk"]],
            )
            for r in rows
        ]

    def get(self, ref: str) -> Artifact:
        """The manifest record of ``ref``."""
        artifact_id = self.resolve(ref)
        rows = self.db.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchall()
        return self._artifacts(rows)[0]

    def find(
        self,
        type: str | None = None,  # noqa: A002
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[Artifact]:
        """Artifacts matching every filter, newest first. ``name`` is a glob (``ohlcv/*``); ``meta``
        values match exactly; ``since`` is an ISO time (UTC when no zone is given)."""
        sql, params = self.find_sql(type, name, meta, since, limit)
        return self._artifacts(self.db.execute(sql, params).fetchall())

    @staticmethod
    def find_sql(
        type: str | None = None,  # noqa: A002
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> tuple[str, list[Any]]:
        """The parameterised SQL behind :meth:`find`."""
        # With a meta filter, the first one drives the query through its (key, value, artifact) index in
        # artifact order (CROSS JOIN fixes the join order): the planner otherwise scans a type's whole
        # index and probes meta per row, 70x slower on a 100k-artifact manifest.
        sources = ["artifacts a"]
        where: list[str] = []
        params: list[Any] = []
        order = "a.pk"
        for i, (key, value) in enumerate((meta or {}).items()):
            sources.insert(i, f"meta m{i}")
            where.append(f"m{i}.key = ? AND m{i}.value = ? AND m{i}.artifact = a.pk")
            params += [key, mf.meta_text(value)]
            order = "m0.artifact"
        if type is not None:
            where.append("a.type = ?")
            params.append(type)
        if since is not None:
            where.append("a.created >= ?")
            params.append(_iso_utc(since))
        if name is not None:
            where.append("EXISTS (SELECT 1 FROM names n WHERE n.artifact = a.pk AND n.name GLOB ?)")
            params.append(name)
        sql = "SELECT a.* FROM " + " CROSS JOIN ".join(sources)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return sql, params

    def parents(self, ref: str) -> list[Artifact]:
        return self._neighbours(ref, up=True)

    def children(self, ref: str) -> list[Artifact]:
        return self._neighbours(ref, up=False)

    def _neighbours(self, ref: str, *, up: bool) -> list[Artifact]:
        near, far = ("child", "parent") if up else ("parent", "child")
        rows = self.db.execute(
            f"SELECT a.* FROM edges e JOIN artifacts a ON a.pk = e.{far} WHERE e.{near} = ? ORDER BY a.pk",
            (self._pk(self.resolve(ref)),),
        ).fetchall()
        return self._artifacts(rows)

    def runs_of(self, ref: str) -> list[str]:
        """Run ids recorded on the edges into ``ref``."""
        rows = self.db.execute(
            "SELECT DISTINCT run FROM edges WHERE child = ? AND run IS NOT NULL ORDER BY run",
            (self._pk(self.resolve(ref)),),
        )
        return [r[0] for r in rows]

    def walk(self, ref: str, *, up: bool = True, depth: int | None = None) -> list[tuple[str, int]]:
        """(id, depth) of every ancestor (``up``) or descendant of ``ref``, nearest first.

        The cheap question; :meth:`lineage` also gathers names, types and the edges between the nodes.
        """
        if depth is not None and depth < 0:
            raise InvalidInput("depth must be 0 or more")
        found = mf.walk(self.db, self._pk(self.resolve(ref)), up=up, depth=depth)
        ids = dict(
            self.db.execute(
                "SELECT a.pk, a.id FROM json_each(?) j JOIN artifacts a ON a.pk = j.value",
                (mf.pk_list([pk for pk, _ in found]),),
            ).fetchall()
        )
        return [(ids[pk], d) for pk, d in found]

    def lineage(self, ref: str, *, up: bool = True, down: bool = False, depth: int | None = None) -> Lineage:
        """Ancestors (``up``) and/or descendants (``down``) of ``ref`` up to ``depth`` edges away."""
        if depth is not None and depth < 0:
            raise InvalidInput("depth must be 0 or more")
        root_id = self.resolve(ref)
        root = self._pk(root_id)
        found: dict[int, int] = {root: 0}
        for flag, upward in ((up, True), (down, False)):
            if flag:
                for pk, d in mf.walk(self.db, root, up=upward, depth=depth):
                    found.setdefault(pk, d)
        # Names, types and edges of every node in three set-based queries over the same key list.
        keys = mf.pk_list(list(found))
        names: dict[int, list[str]] = {}
        for pk, name, version in self.db.execute(
            "SELECT n.artifact, n.name, n.version FROM json_each(?) j JOIN names n ON n.artifact = j.value"
            " ORDER BY n.name, n.version",
            (keys,),
        ):
            names.setdefault(pk, []).append(f"{name}@v{version}")
        ids: dict[int, tuple[str, str]] = {
            pk: (artifact_id, type_name)
            for pk, artifact_id, type_name in self.db.execute(
                "SELECT a.pk, a.id, a.type FROM json_each(?) j JOIN artifacts a ON a.pk = j.value", (keys,)
            )
        }
        order = sorted(found.items(), key=lambda kv: (kv[1], kv[0]))
        nodes = [LineageNode(ids[pk][0], ids[pk][1], names.get(pk, []), d) for pk, d in order]
        edges = sorted(
            (ids[p][0], ids[c][0], run)
            for c, p, run in self.db.execute(
                "SELECT e.child, e.parent, e.run FROM json_each(?) j JOIN edges e ON e.child = j.value", (keys,)
            )
            if p in found
        )
        direction = "both" if up and down else ("up" if up else "down")
        return Lineage(root_id, direction, nodes, edges)

    # -- reading objects -----------------------------------------------------------------------------
    def object_path(self, ref: str) -> Path:
        """Path of the stored object of ``ref``; :class:`DamagedObject` when it is missing or not a file.

        The path alone says nothing about the bytes: read through :meth:`read`, :meth:`head` or
        :meth:`export`, which check them.
        """
        artifact_id = self.resolve(ref)
        try:
            fd, _ = open_object(self.root, artifact_id)
        except BadObject as exc:
            raise self._damaged(artifact_id, exc) from None
        os.close(fd)
        return object_path(self.root, artifact_id)

    @staticmethod
    def _damaged(artifact_id: str, exc: BadObject) -> DamagedObject:
        what = "has changed since it was published" if exc.kind == "changed" else "is missing"
        return DamagedObject(
            f"artifact {artifact_id} {what} ({exc.detail}): run lake verify; publishing the same content again "
            "restores it"
        )

    def _recorded_hash(self, artifact_id: str) -> str:
        row = self.db.execute("SELECT file_hash FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artifact {artifact_id}")
        return str(row[0])

    def _checked_bytes(self, artifact_id: str, *, fetch: bool = True) -> Any:
        """The object's bytes, hashed and compared with the manifest (once per unchanged file per Lake)."""
        from .objects import _hasher

        expected = self._recorded_hash(artifact_id)
        try:
            data, st = map_object(self.root, artifact_id)
        except BadObject as exc:
            if not fetch or exc.kind != "missing" or not self._fetch_from_remote(artifact_id):
                raise self._damaged(artifact_id, exc) from None
            data, st = map_object(self.root, artifact_id)  # fetched from its remote, checked, installed
        # ctime cannot be set back by a user: any write or chmod since the last check changes the signature
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, expected)
        if self._intact.get(artifact_id) != sig:
            got = _hasher().update(data).hexdigest()
            if got != expected:
                path = object_path(self.root, artifact_id)
                raise self._damaged(
                    artifact_id, BadObject("changed", f"bytes of {path} hash to {got[:16]}..., not {expected[:16]}...")
                )
            self._intact[artifact_id] = sig
        return data

    def _fetch_from_remote(self, artifact_id: str) -> bool:
        """A records-only artifact (pulled without its object): fetch its object from the remote that holds
        it, checked like a pull (file hash and content id). False when the artifact is not records-only."""
        from .remote import fetch_missing

        return fetch_missing(self, artifact_id)

    def has_intact_object(self, artifact_id: str) -> bool:
        """True when the object of ``artifact_id`` is a regular file of the lake whose bytes hash as recorded.

        The bytes are read in blocks, not mapped: a publish that meets known content stays small.
        """
        try:
            expected = self._recorded_hash(artifact_id)
            fd, st = open_object(self.root, artifact_id)
        except (BadObject, NotFound):
            return False
        try:
            sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, expected)
            if self._intact.get(artifact_id) != sig:
                if file_hash(fd) != expected:
                    return False
                self._intact[artifact_id] = sig
        finally:
            os.close(fd)
        return True

    def read(self, ref: str, columns: list[str] | None = None) -> pa.Table:
        """The artifact's table, from bytes checked against the recorded file hash."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self._checked_bytes(self.resolve(ref))
        return pq.read_table(pa.BufferReader(pa.py_buffer(data)), columns=columns)

    def head(self, ref: str, limit: int) -> pa.Table:
        """The first ``limit`` rows (of checked bytes), decoding no more row groups than needed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(pa.BufferReader(pa.py_buffer(self._checked_bytes(self.resolve(ref)))))
        batches = []
        left = limit
        for batch in pf.iter_batches(batch_size=max(1, min(limit, 65536))):
            batches.append(batch.slice(0, left))
            left -= len(batches[-1])
            if left <= 0:
                break
        return pa.Table.from_batches(batches, schema=pf.schema_arrow) if batches else pf.schema_arrow.empty_table()

    def export(self, ref: str, out: str | os.PathLike[str], fmt: str = "parquet") -> Path:
        """Write the artifact to ``out`` as Parquet (the stored bytes), CSV, or (``tensors``) safetensors.

        Parquet is copied in a stream that hashes what it copies; a changed object leaves ``out`` untouched.
        """
        artifact_id = self.resolve(ref)
        dest = Path(out)
        if fmt == "parquet":
            try:
                copy_checked(self.root, artifact_id, self._recorded_hash(artifact_id), dest)
            except BadObject as exc:
                raise self._damaged(artifact_id, exc) from None
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            table = self.read(artifact_id)
            self._write_out(dest, lambda part: pcsv.write_csv(table, part))
        elif fmt == "safetensors":
            from . import safetensors

            art = self.get(artifact_id)
            if art.type != "tensors":
                raise InvalidInput(f"{art.id[:12]} is a {art.type!r} artifact; only tensors export as safetensors")
            table = self.read(art.id)
            self._write_out(dest, lambda part: safetensors.write(table, part, art.meta))
        else:
            raise InvalidInput(f"unknown format {fmt!r} (parquet, csv or safetensors)")
        return dest

    @staticmethod
    def _write_out(dest: Path, write: Any) -> None:
        """Write through a hidden file beside ``dest`` renamed over it at the end: a failure leaves no half file."""
        part = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
        try:
            write(part)
            os.replace(part, dest)
        except BaseException as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise disk_full(exc, f"writing {dest}") from exc
            raise

    # -- maintenance ---------------------------------------------------------------------------------
    def verify(
        self, refs: Iterable[str] | None = None, *, content: bool = True, wait: float = mf.BUSY_TIMEOUT_S
    ) -> VerifyReport:
        """Check objects and the manifest; see :func:`artifact_store.maintenance.verify`."""
        from .maintenance import verify

        return verify(self, None if refs is None else [self.resolve(r) for r in refs], content=content, wait=wait)

    def gc(self, *, dry_run: bool = False, grace: float | None = None, wait: float = mf.BUSY_TIMEOUT_S) -> GcReport:
        """Remove orphan objects and stale staging files; see :func:`artifact_store.maintenance.gc`."""
        from .maintenance import DEFAULT_GRACE_S, gc

        if not dry_run:
            self.require_writable("gc")
        return gc(self, dry_run=dry_run, grace=DEFAULT_GRACE_S if grace is None else grace, wait=wait)


def parse_iso(text: str, what: str = "") -> datetime:
    """An ISO time as an aware datetime (UTC when it names no zone); ``what`` prefixes the error."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        prefix = f"{what}: " if what else ""
        raise InvalidInput(f"{prefix}not an ISO time: {text!r} (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from exc
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _iso_utc(text: str) -> str:
    return parse_iso(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
