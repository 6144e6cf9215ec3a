"""Staging an object: a table in memory, or a Parquet file read as a stream of batches.

A file is never held whole: it is read ``BATCH_ROWS`` rows at a time; each batch is conformed, checked,
fed to the content hasher and handed to a writer thread that encodes the canonical object into the staging
file, so memory stays flat whatever the file's size (about 0.4 GB for OHLCV, see docs/benchmarks.md).
Invariants:

* The id is the in-memory path's id for the same content: :class:`hashing.ContentHasher` is fed the
  conformed batches in row order, and the hasher does not see batch boundaries.
* The checks refuse exactly what they refuse on the whole table, with the same first bad row, named by its
  row in the file. ``increasing`` carries the last row of every group into the next batch; ``unique`` carries
  every key seen so far (its memory grows with the keys of those columns, and each batch is checked against
  all of them: fine for the types that have one, ``alerts``, ``metrics``, ``source`` and ``tensors``, feeds
  and tables of modest size). The first bad batch ends the read: its count of other bad rows is a lower bound.
* The object is written in row groups of exactly ``ROW_GROUP_ROWS`` rows (the lake's writer settings), so
  its bytes are the bytes an in-memory publish of the same table writes. Or, when the file already is canonical
  (:func:`kept_as_is`), its bytes are copied into the staging file and read back from there: the bytes
  checked and hashed are the bytes stored.
* Nothing here touches ``objects/`` or the manifest: the result is a staged file, locked in ``tmp/``, that
  the caller installs or discards; any error discards it first.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from artifact_lake.schemas import conform, first_error

from .errors import InvalidInput
from .hashing import ContentHasher, file_hash
from .objects import (
    ROW_GROUP_ROWS,
    Staged,
    disk_full,
    is_disk_full,
    lake_metadata,
    parquet_options,
    stage,
    write_canonical,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from artifact_lake.schemas import Check, Schema, Violation

BATCH_ROWS = ROW_GROUP_ROWS // 4
"""Rows read, conformed, checked and hashed at a time; the writer gathers four batches into a row group.
Measured on 10M OHLCV rows (peak RSS, time of the read, checks and hashes): 2^18 rows 0.37 GB, 0.98 s;
2^19 rows 0.45 GB, 0.86 s; 2^20 rows 0.52 GB, 0.77 s (and more variable)."""
_AHEAD = 2
"""Batches the writer thread may lag behind the reader (each holds about BATCH_ROWS rows in memory)."""
_CARRIED = ("increasing", "unique")
_FLUSH_EVERY_S = 0.05
"""How often a table's object being written is flushed to disk behind its writer (:func:`_flushed_behind`), so
that its final fsync finds little left to write. Measured on two 10M-row OHLCV objects written at once: the
fsyncs took 0.25 s without it, 0.01 s with it, for the same CPU."""


@dataclass(frozen=True)
class StagedObject:
    """A staged object and what the manifest records of it."""

    staged: Staged
    """The staging file, locked; the caller installs or discards it."""
    artifact_id: str
    """Content id of the conformed rows (for a file: ``content_id`` of its whole conformed table)."""
    rows: int
    """Rows in the object."""
    schema: pa.Schema
    """The conformed Arrow schema of the object."""
    file_hash: str
    """blake3 of the staged bytes."""
    kept: bool
    """Whether the staged bytes are the input file's own bytes (it already was canonical)."""


def _unreadable(path: Path, exc: BaseException) -> InvalidInput:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InvalidInput(f"{path}: not a readable Parquet file ({first})")


def open_parquet(path: Path) -> pq.ParquetFile:
    """The Parquet file at ``path``, its footer read; one line when it is not a readable Parquet file.

    Column chunks are read through a small buffer (no pre-buffering, no memory map), so reading a row
    group does not hold its whole compressed bytes, and no page of the file counts in the process's memory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20, memory_map=False)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, exc) from exc


def kept_as_is(pf: pq.ParquetFile, schema: pa.Schema, type_name: str, schema_version: int) -> bool:
    """Whether the file's bytes may be the stored object as they are: it reads back as exactly ``schema``
    (names, order, types and nullability: the conformed schema an in-memory publish writes), carries the
    lake's schema metadata for this type and version and no other, and every column chunk is zstd. In
    practice: an object the lake wrote (``lake get``, a copy of another lake's object), so a kept object is
    the bytes of some lake's writer. Identity is logical, so keeping the bytes changes no id."""
    arrow = pf.schema_arrow
    if not arrow.equals(schema) or arrow.metadata != lake_metadata(type_name, schema_version):
        return False
    meta = pf.metadata
    return all(
        meta.row_group(g).column(c).compression == "ZSTD"
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )


# -- checks across batches -----------------------------------------------------------------------------
class _RowChecks:
    """Every check of a schema over batches of one file, as if over the whole table.

    Each check runs on its own (in the schema's order, after the null checks), so the violations come out
    in the order :func:`schemas.find_violations` gives for the whole table and the first bad row is named by
    the same check. ``increasing`` and ``unique`` run on the carried rows followed by the batch.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.nulls = replace(schema, checks=())
        self.carries: list[pa.Table | None] = [None] * len(schema.checks)

    def local(self, batch: pa.Table) -> dict[int, list[Violation]]:
        """Violations of the null checks (key -1) and of every check that sees one row at a time, by the
        check's index; rows counted within the batch."""
        from artifact_lake.schemas import find_violations

        out = {-1: find_violations(batch, self.nulls)}
        for i, chk in enumerate(self.schema.checks):
            if chk.kind not in _CARRIED:
                single = replace(self.schema, checks=(chk,))
                out[i] = [v for v in find_violations(batch, single) if v.check != "not_null"]
        return out

    def carried(self, batch: pa.Table) -> dict[int, list[Violation]]:
        """Violations of the checks that look across batches, by the check's index; updates what they carry
        (so batches must come in order, one at a time)."""
        return {i: self._carried(i, chk, batch) for i, chk in enumerate(self.schema.checks) if chk.kind in _CARRIED}

    @staticmethod
    def merge(*parts: dict[int, list[Violation]]) -> list[Violation]:
        """The violations in the order ``find_violations`` gives for the whole table."""
        found: dict[int, list[Violation]] = {}
        for part in parts:
            found.update(part)
        return [v for i in sorted(found) for v in found[i]]

    def _carried(self, i: int, chk: Check, batch: pa.Table) -> list[Violation]:
        import pyarrow as pa

        from artifact_lake.schemas import find_violations

        p = chk.params
        keys = list(p.get("by", [])) if chk.kind == "increasing" else list(p["columns"])
        cols = [p["column"], *keys] if chk.kind == "increasing" else keys
        part = batch.select(cols)
        carry = self.carries[i]
        probe = part if carry is None else pa.concat_tables([carry, part])
        sub = replace(self.schema, columns=tuple(c for c in self.schema.columns if c.name in cols), checks=(chk,))
        skip = 0 if carry is None else carry.num_rows
        out = []
        for v in find_violations(probe, sub):
            rows = v.rows[v.rows >= skip] - skip  # carried rows passed in their own batch
            if v.check != "not_null" and rows.size:
                out.append(replace(v, rows=rows))
        self.carries[i] = _last_per_group(probe, keys) if chk.kind == "increasing" else probe.combine_chunks()
        return out


def _last_per_group(table: pa.Table, keys: list[str]) -> pa.Table:
    """The last row of every group of equal ``keys`` (nulls form a group, as in the checks), in table order.

    A hash aggregation: 15 ms for 1M rows, where sorting the group codes (``np.unique``) took 80 ms.
    """
    import numpy as np
    import pyarrow as pa

    n = table.num_rows
    if not keys:
        return table.slice(n - 1) if n else table
    rows = pa.array(np.arange(n, dtype=np.int64))
    grouped = table.select(keys).append_column("__row", rows).group_by(keys, use_threads=False)
    last = grouped.aggregate([("__row", "max")]).column("__row_max").to_numpy()
    return table.take(np.sort(last))


# -- the writer thread ---------------------------------------------------------------------------------
class _Writer:
    """Encodes conformed batches into the staging file on a thread of its own, in row groups of exactly
    ``ROW_GROUP_ROWS`` rows (batches are gathered or cut to that size), at most ``_AHEAD`` batches behind."""

    def __init__(self, staged: Staged, schema: pa.Schema, type_name: str, schema_version: int) -> None:
        import pyarrow.parquet as pq

        schema = schema.with_metadata(lake_metadata(type_name, schema_version))
        self._writer = pq.ParquetWriter(staged.handle, schema, **parquet_options(schema))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lake-writer")
        self._pending: deque[Future[None]] = deque()
        self._held: list[pa.Table] = []
        self._rows = 0

    def put(self, batch: pa.Table) -> None:
        self._pending.append(self._pool.submit(self._add, batch))
        while len(self._pending) > _AHEAD:
            self._pending.popleft().result()

    def _add(self, batch: pa.Table) -> None:
        import pyarrow as pa

        self._held.append(batch)
        self._rows += batch.num_rows
        if self._rows < ROW_GROUP_ROWS:
            return
        table = pa.concat_tables(self._held)
        full = (table.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
        for start in range(0, full, ROW_GROUP_ROWS):
            self._writer.write_table(table.slice(start, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
        rest = table.slice(full)
        self._held, self._rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        """Write what is held and the footer; raise what the thread raised."""
        try:
            while self._pending:
                self._pending.popleft().result()
            if self._held:
                import pyarrow as pa

                self._writer.write_table(pa.concat_tables(self._held), row_group_size=ROW_GROUP_ROWS)
            self._pool.shutdown()
            self._writer.close()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Stop after an error; the staging file is discarded, so whatever the writer leaves in it is moot."""
        for f in self._pending:
            f.cancel()
        self._pool.shutdown(wait=True)
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the first error is the one raised; this one only repeats it
            pass
        self._writer.is_open = False  # a failed close must not be retried when the writer is collected


# -- publishing a file ---------------------------------------------------------------------------------
def _batches(pf: pq.ParquetFile, path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    it = pf.iter_batches(batch_size=rows, use_threads=True)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(path, exc) from exc
        yield batch


def _copy(src: Path, staged: Staged) -> None:
    """The bytes of ``src`` into the staging file, copied by the kernel (no pass through this process)."""
    staged.handle.flush()
    out = staged.handle.fileno()
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        done = 0
        while done < size:
            n = os.copy_file_range(f.fileno(), out, size - done)
            if n == 0:
                break  # the file shrank while we copied: the footer read from the copy refuses it
            done += n


def stream_file(
    root: Path, path: Path, pf: pq.ParquetFile, schema: Schema, label: str, *, batch_rows: int = BATCH_ROWS
) -> StagedObject:
    """Read, conform, check and hash the Parquet file ``pf`` (opened from ``path``) ``batch_rows`` rows at a
    time, and stage its canonical object (see the module docstring). A refused file leaves nothing staged."""
    arrow = conform(_table(None, pf), schema, label).schema  # column and type errors, before anything is staged
    kept = kept_as_is(pf, arrow, schema.name, schema.version)
    staged = stage(root)
    try:
        try:
            if kept:
                artifact_id, rows, fhash = _check_kept(path, staged, arrow, schema, label, batch_rows)
            else:
                artifact_id, rows = _rewrite(path, pf, staged, arrow, schema, label, batch_rows)
                fhash = file_hash(staged.path)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(exc, f"staging the object of {label} in {root / 'tmp'}") from exc
            raise
    except BaseException:
        staged.discard()
        raise
    return StagedObject(staged, artifact_id, rows, arrow, fhash, kept)


def _scan(
    path: Path,
    pf: pq.ParquetFile,
    arrow: pa.Schema,
    schema: Schema,
    label: str,
    writer: _Writer | None,
    batch_rows: int,
) -> tuple[str, int]:
    """Conform, check and hash every batch of ``pf`` (handing each checked batch to ``writer``); the id and
    the rows.

    Three threads share the work: this one reads, conforms, runs the row-by-row checks and hashes; a second
    runs the checks that look across batches (``increasing``, ``unique``: the costly ones); the writer's
    encodes what has passed them all. A batch reaches the writer only once its checks passed, so the writer
    never meets a null in a column declared not null.
    """
    hasher = ContentHasher(arrow, schema.name, schema.version)
    checks = _RowChecks(schema)
    checking: tuple[pa.Table, int, dict[int, list[Violation]], Future[dict[int, list[Violation]]]] | None = None

    def passed() -> None:
        if checking is None:
            return
        table, offset, local, carried = checking
        violations = checks.merge(local, carried.result())
        if violations:
            raise first_error(table, violations, schema, label, offset=offset, partial=True)
        if writer is not None:
            writer.put(table)

    with ThreadPoolExecutor(1, thread_name_prefix="lake-checks") as pool:
        try:
            for batch in _batches(pf, path, batch_rows):
                table = conform(_table(batch, pf), schema, label)
                passed()
                carried = pool.submit(checks.carried, table)
                checking = (table, hasher.rows, checks.local(table), carried)
                hasher.feed(table)
            passed()
        finally:
            if checking is not None:
                checking[3].cancel()
    return hasher.hexdigest(), hasher.rows


def _rewrite(
    path: Path, pf: pq.ParquetFile, staged: Staged, arrow: pa.Schema, schema: Schema, label: str, batch_rows: int
) -> tuple[str, int]:
    writer = _Writer(staged, arrow, schema.name, schema.version)
    try:
        artifact_id, rows = _scan(path, pf, arrow, schema, label, writer, batch_rows)
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    staged.handle.flush()
    os.fsync(staged.handle.fileno())
    return artifact_id, rows


def _check_kept(
    path: Path, staged: Staged, arrow: pa.Schema, schema: Schema, label: str, batch_rows: int
) -> tuple[str, int, str]:
    """Copy the canonical file into the staging file, then check and hash the copy (the bytes stored are
    the bytes checked); its file hash is computed on a second thread meanwhile."""
    _copy(path, staged)
    os.fsync(staged.handle.fileno())
    pf = open_parquet(staged.path)
    if not kept_as_is(pf, arrow, schema.name, schema.version):
        raise InvalidInput(f"{label} changed while it was being published: publish it again")
    with ThreadPoolExecutor(1, thread_name_prefix="lake-hash") as pool:
        hashing = pool.submit(file_hash, staged.path)
        try:
            artifact_id, rows = _scan(staged.path, pf, arrow, schema, label, None, batch_rows)
        finally:
            fhash = hashing.result()
    return artifact_id, rows, fhash


def _table(batch: pa.RecordBatch | None, pf: pq.ParquetFile) -> pa.Table:
    """A batch as a table; ``None``: the file's empty table."""
    import pyarrow as pa

    return pa.Table.from_batches([] if batch is None else [batch], schema=pf.schema_arrow)


# -- staging a table in memory ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TablePart:
    """A conformed table to stage, with what :func:`stage_tables` needs to know of it."""

    table: pa.Table
    schema: Schema
    label: str
    """How messages name the table (a file's path)."""
    artifact_id: str
    """Its content id."""
    ordered_by: tuple[str, ...] = ()
    """Columns the caller sorted and deduplicated the rows by (``find_violations``' ``ordered_by``)."""


def stage_table(root: Path, table: pa.Table, schema: Schema, label: str, artifact_id: str) -> StagedObject:
    """:func:`write_checked` for a conformed table whose id is ``artifact_id``, with its file hash."""
    return stage_tables(root, [TablePart(table, schema, label, artifact_id)])[0]


def stage_tables(root: Path, parts: Sequence[TablePart]) -> list[StagedObject]:
    """Stage conformed tables as :func:`stage_table` does one: every table is written (flushed to disk behind
    its writer) and its file hashed on a thread of its own while this thread checks the tables in order. The
    Parquet writer, the checks and blake3 release the GIL: on two idle cores, a file import's two objects
    take little longer than one. A bad row in any table or a full disk discards every staged file and
    raises one line: the first bad table's."""
    from artifact_lake.schemas import find_violations, first_error

    staged: list[Staged] = []
    hashes: list[str] = []
    try:
        # leaving the pool waits for every writer, so no file is discarded under a writer's feet
        with ThreadPoolExecutor(max(len(parts), 1), thread_name_prefix="lake-writer") as pool:
            writing: list[Future[str]] = []
            try:
                for part in parts:
                    staged.append(stage(root))
                    writing.append(pool.submit(_write_hashed, part.table, staged[-1], part.schema))
                for part in parts:
                    violations = find_violations(part.table, part.schema, ordered_by=part.ordered_by)
                    if violations:
                        raise first_error(part.table, violations, part.schema, part.label)
            finally:
                # a failed write (a full disk) speaks before a bad row, as in write_checked
                for done, part in zip(writing, parts, strict=False):
                    try:
                        hashes.append(done.result())
                    except OSError as exc:
                        if is_disk_full(exc):
                            raise disk_full(exc, f"staging the object of {part.label} in {root / 'tmp'}") from exc
                        raise
    except BaseException:
        for st in staged:
            st.discard()
        raise
    return [
        StagedObject(st, part.artifact_id, part.table.num_rows, part.table.schema, fhash, kept=False)
        for st, fhash, part in zip(staged, hashes, parts, strict=True)
    ]


def _write_hashed(table: pa.Table, staged: Staged, schema: Schema) -> str:
    """Write ``table`` as the canonical object into ``staged`` (fsynced); its file hash."""
    with _flushed_behind(staged.handle.fileno()):
        write_canonical(table, staged, schema.name, schema.version)
    return file_hash(staged.path)


@contextmanager
def _flushed_behind(fd: int) -> Iterator[None]:
    """While the body writes the file ``fd``, a thread of its own writes what is there to disk every
    ``_FLUSH_EVERY_S``: the disk works while the writer encodes, not all after it. The body's own fsync
    still ends the write. An error of those flushes is raised when the body ends, since the kernel reports
    a failed write-back once: the body's fsync might not see it again."""
    done = threading.Event()
    failed: list[OSError] = []
    sync = getattr(os, "fdatasync", os.fsync)

    def flush() -> None:
        while not done.wait(_FLUSH_EVERY_S):
            try:
                sync(fd)
            except OSError as exc:
                failed.append(exc)
                return

    flusher = threading.Thread(target=flush, name="lake-flush", daemon=True)
    flusher.start()
    try:
        yield
    finally:
        done.set()
        flusher.join()
    if failed:
        raise failed[0]


def write_checked(root: Path, table: pa.Table, schema: Schema, label: str) -> Staged:
    """Stage ``table`` in ``tmp/`` as canonical Parquet (locked there until installed or discarded) while its
    rows are checked against ``schema``; a bad row or a full disk discards it and raises one line."""

    from artifact_lake.schemas import find_violations, first_error

    staged = stage(root)
    try:
        try:
            # The Parquet write dominates; run the checks beside it (both release the GIL).
            with ThreadPoolExecutor(1) as pool:
                writing = pool.submit(write_canonical, table, staged, schema.name, schema.version)
                try:
                    violations = find_violations(table, schema)
                finally:
                    writing.result()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(exc, f"staging the object of {label} in {root / 'tmp'}") from exc
            raise
        if violations:
            raise first_error(table, violations, schema, label)
    except BaseException:
        staged.discard()
        raise
    return staged


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
