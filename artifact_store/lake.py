"""The lake: publish, resolve, find, read, lineage. Python API first; the CLI is a thin layer.

Publishing is crash-safe (DESIGN.md): validate, stage and fsync in ``tmp/``, then inside one
``BEGIN IMMEDIATE`` transaction rename into ``objects/`` and insert the rows. A crash between rename and
commit leaves an orphan object without a row; ``verify`` reports it and ``gc`` removes it. A manifest row
never points at a missing or different file. A refused publish leaves the lake as it was.

Importing this module loads only the standard library and blake3; pyarrow loads on first use.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import sqlite3
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from artifact_lake.schemas import Registry

from . import manifest as mf
from .errors import AmbiguousRef, CorruptArtifact, InvalidInput, NotFound
from .hashing import file_hash
from .objects import install, object_path, stage, write_canonical
from .records import Artifact, Lineage, LineageNode, PublishResult

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.schemas import Schema

    from .records import GcReport, VerifyReport

DEFAULT_LAKE = "lake"
_HEX = re.compile(r"^[0-9a-f]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:=+-]*$")
_REF = re.compile(r"^(?P<name>.+?)@(?:latest|v(?P<version>[0-9]+))$")
MIN_PREFIX = 6


def default_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--lake PATH``, else ``LAKE_HOME``, else ``./lake``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LAKE_HOME") or DEFAULT_LAKE)


def _crashpoint(where: str) -> None:
    """Fault injection for crash tests: ``ARTIFACT_LAKE_CRASH_AT=<where>`` SIGKILLs the process here."""
    if os.environ.get("ARTIFACT_LAKE_CRASH_AT") == where:
        os.kill(os.getpid(), signal.SIGKILL)


def check_name(name: str) -> None:
    if not _NAME.match(name) or ".." in name or name.endswith("/"):
        raise InvalidInput(f"invalid name {name!r}: use letters, digits and . _ / : = + - (no spaces, no '@', no '..')")


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


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{path}: not a readable Parquet file ({first})") from exc


def to_arrow(data: Any) -> pa.Table:
    """A pyarrow Table from anything that speaks Arrow.

    Tables, record batches, polars and pandas frames, and every object exposing the Arrow PyCapsule stream
    interface (``__arrow_c_stream__``: DuckDB relations, ``pyarrow.RecordBatchReader``, ...). A pandas frame's
    ``DatetimeIndex`` becomes the ``ts`` column; any other index is dropped.
    """
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "index"):
        return _from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):
        try:
            return pa.RecordBatchReader.from_stream(data).read_all()
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidInput(f"cannot read the Arrow stream of a {type(data).__name__}: {exc}") from exc
    raise InvalidInput(
        f"cannot publish a {type(data).__name__}: give a Parquet file path, a pyarrow Table, a polars or pandas"
        " DataFrame, or any object with the Arrow stream interface (__arrow_c_stream__, e.g. a DuckDB relation)"
    )


def _from_pandas(frame: Any) -> pa.Table:
    import pyarrow as pa

    index = frame.index
    if type(index).__name__ == "DatetimeIndex":
        if "ts" in frame.columns:
            raise InvalidInput(
                "the pandas frame has both a DatetimeIndex and a 'ts' column: drop one (frame.reset_index(drop=True))"
            )
        frame = frame.reset_index(names="ts")
    return pa.Table.from_pandas(frame, preserve_index=False)


class Lake:
    """A lake on disk (see DESIGN.md for the layout). Open with :meth:`open`."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self._registry: Registry | None = None

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
        try:
            db = mf.connect(manifest_path)
        except sqlite3.DatabaseError as exc:
            raise CorruptArtifact(f"{manifest_path}: cannot open the manifest ({exc})") from exc
        return cls(root, db)

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
        schema = self.registry.get(type)
        meta = _check_meta(meta or {})
        if name is not None:
            check_name(name)
        parents = [self._pk(self.resolve(ref)) for ref in inputs]
        source_hash: str | None = None
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.is_file():
                raise InvalidInput(f"{path}: no such file")
            source_hash = file_hash(path)
            known = self.db.execute(
                "SELECT a.pk, a.id FROM sources s JOIN artifacts a ON a.pk = s.artifact"
                " WHERE s.file_hash = ? AND s.type = ? AND s.schema = ?",
                (source_hash, schema.name, schema.fingerprint),
            ).fetchone()
            if known is not None and object_path(self.root, known["id"]).exists():
                return self._record(known["pk"], name, parents, run, deduplicated=True)
            if path.suffix == ".safetensors":
                table, file_meta = self._read_safetensors(path, schema.name)
                meta = _check_meta({**file_meta, **meta})
            else:
                table = _read_parquet(path)
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
        from artifact_lake.schemas import conform, find_violations, first_error

        from .hashing import content_id

        table = conform(table, schema, label)
        artifact_id = content_id(table, schema.name, schema.version)
        row = self.db.execute("SELECT pk FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is not None and object_path(self.root, artifact_id).exists():
            # Known content: it was valid when first stored, so only lineage and names change.
            with mf.immediate(self.db):
                self._add_source(source_hash, schema, row["pk"])
            return self._record(row["pk"], name, parents, run, deduplicated=True)

        staged = stage(self.root)
        try:
            # The Parquet write dominates; run the checks beside it (both release the GIL).
            with ThreadPoolExecutor(1) as pool:
                writing = pool.submit(write_canonical, table, staged, schema.name, schema.version)
                try:
                    violations = find_violations(table, schema)
                finally:
                    writing.result()
            if violations:
                raise first_error(table, violations, schema, label)
            _crashpoint("after-stage")
            fhash = file_hash(staged.path)
            size = staged.path.stat().st_size
            target = object_path(self.root, artifact_id)
            with mf.immediate(self.db):
                row = self.db.execute("SELECT pk FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
                if row is not None and target.exists():
                    staged.discard()
                    pk, deduplicated = int(row["pk"]), True
                elif row is not None:
                    # The row survived but its object was lost: restore it from these bytes.
                    install(staged, target)
                    self.db.execute(
                        "UPDATE artifacts SET file_hash = ?, bytes = ? WHERE pk = ?", (fhash, size, row["pk"])
                    )
                    pk, deduplicated = int(row["pk"]), True
                else:
                    install(staged, target)
                    _crashpoint("after-rename")
                    pk = mf.insert_artifact(
                        self.db,
                        artifact_id=artifact_id,
                        type_name=schema.name,
                        schema_version=schema.version,
                        file_hash=fhash,
                        rows=table.num_rows,
                        size=size,
                        columns=[[f.name, str(f.type)] for f in table.schema],
                        meta=meta,
                    )
                    deduplicated = False
                self._add_source(fhash, schema, pk)
                self._add_source(source_hash, schema, pk)
                result = self._record(pk, name, parents, run, deduplicated=deduplicated, in_tx=True)
        except BaseException:
            staged.discard()
            raise
        return result

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
    ) -> PublishResult:
        """Add the name version and edges for artifact ``pk`` and describe the publish."""

        def apply() -> int | None:
            version = mf.add_name(self.db, name, pk)[0] if name is not None else None
            mf.add_edges(self.db, pk, parents, run)
            return version

        if in_tx:
            version = apply()
        else:
            with mf.immediate(self.db):
                version = apply()
        row = self.db.execute("SELECT id, type, rows, bytes FROM artifacts WHERE pk = ?", (pk,)).fetchone()
        return PublishResult(row["id"], row["type"], name, version, deduplicated, row["rows"], row["bytes"])

    # -- references ----------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The full id of ``ref``: a full id, a unique prefix (>= 6 hex), ``NAME``, ``NAME@latest``, ``NAME@vN``."""
        ref = ref.strip()
        m = _REF.match(ref)
        if m:
            return self._by_name(m.group("name"), int(m.group("version")) if m.group("version") else None)
        if _HEX.match(ref) and len(ref) >= MIN_PREFIX:
            rows = self.db.execute(
                "SELECT id FROM artifacts WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (ref, ref + "g")
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0]["id"])
            if len(rows) > 1:
                shown = ", ".join(r["id"][: len(ref) + 4] for r in rows[:5])
                raise AmbiguousRef(f"id prefix {ref!r} matches several artifacts ({shown}...); give more characters")
        if self.db.execute("SELECT 1 FROM names WHERE name = ? LIMIT 1", (ref,)).fetchone():
            return self._by_name(ref, None)
        hint = ""
        if _HEX.match(ref) and len(ref) < MIN_PREFIX:
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
        """Path of the stored object of ``ref``; :class:`CorruptArtifact` when it is missing."""
        artifact_id = self.resolve(ref)
        path = object_path(self.root, artifact_id)
        if not path.exists():
            raise CorruptArtifact(f"artifact {artifact_id} has no object file (run: lake verify)")
        return path

    def read(self, ref: str, columns: list[str] | None = None) -> pa.Table:
        """The artifact's table."""
        import pyarrow.parquet as pq

        return pq.read_table(self.object_path(ref), columns=columns)

    def head(self, ref: str, limit: int) -> pa.Table:
        """The first ``limit`` rows, reading no more row groups than needed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.object_path(ref))
        batches = []
        left = limit
        for batch in pf.iter_batches(batch_size=max(1, min(limit, 65536))):
            batches.append(batch.slice(0, left))
            left -= len(batches[-1])
            if left <= 0:
                break
        return pa.Table.from_batches(batches, schema=pf.schema_arrow) if batches else pf.schema_arrow.empty_table()

    def export(self, ref: str, out: str | os.PathLike[str], fmt: str = "parquet") -> Path:
        """Write the artifact to ``out`` as Parquet (the stored bytes), CSV, or (``tensors``) safetensors."""
        import shutil

        src = self.object_path(ref)
        dest = Path(out)
        if fmt == "parquet":
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o644)
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(self.read(ref), dest)
        elif fmt == "safetensors":
            from . import safetensors

            art = self.get(ref)
            if art.type != "tensors":
                raise InvalidInput(f"{art.id[:12]} is a {art.type!r} artifact; only tensors export as safetensors")
            safetensors.write(self.read(art.id), dest, art.meta)
        else:
            raise InvalidInput(f"unknown format {fmt!r} (parquet, csv or safetensors)")
        return dest

    # -- maintenance ---------------------------------------------------------------------------------
    def verify(self, refs: Iterable[str] | None = None, *, content: bool = True) -> VerifyReport:
        """Check objects against the manifest; see :func:`artifact_store.maintenance.verify`."""
        from .maintenance import verify

        return verify(self, None if refs is None else [self.resolve(r) for r in refs], content=content)

    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Remove orphan objects and stale staging files; see :func:`artifact_store.maintenance.gc`."""
        from .maintenance import gc

        return gc(self, dry_run=dry_run)


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
