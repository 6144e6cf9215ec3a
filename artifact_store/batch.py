"""Publish several tables in one manifest transaction: all of them or none (DESIGN.md, "Publishing", step 5).

An experiment run publishes its results with this, so a run that is killed, runs out of disk or fails half way
leaves none of its results behind, and a result is never published by a run that did not finish.

Order of work:
1. Every table is conformed, checked against its type and (unless the lake already holds its content) written
   and fsynced in ``tmp/``, each staging file locked by this process. Nothing in the manifest changes yet; a
   failure here discards every staged file.
2. One ``BEGIN IMMEDIATE`` transaction renames the new objects into ``objects/``, inserts their rows, names,
   sources and edges, then calls ``in_transaction`` (the caller's own rows, e.g. the run record), then commits.
   Any exception rolls the transaction back and, still under the write lock, removes the objects this batch
   renamed in, so a refused or failed batch leaves the lake as it was. A SIGKILL inside the transaction leaves
   objects without rows, which ``verify`` reports as orphans and ``gc`` removes, as for a single publish.

Fault injection (``ARTIFACT_LAKE_CRASH_AT``, and ``ARTIFACT_LAKE_STALL_AT`` to stop instead): the single
publish's ``after-stage`` (the first table staged), ``after-rename`` (the first object renamed in, inside the
transaction) and ``before-commit`` (everything written, ``in_transaction`` included, not committed), plus
``batch-after-stage`` (every table staged, nothing recorded) and ``batch-between-items`` (the first table
renamed in and recorded inside the open transaction, the others not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import manifest as mf
from .hashing import content_id, file_hash
from .lake import _check_meta, _crashpoint, check_name, to_arrow, write_checked
from .objects import Staged, disk_full, install, is_disk_full, object_path
from .records import PublishResult

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.schemas import Schema

    from .lake import Lake


@dataclass(frozen=True)
class Item:
    """One table of a batch: what :meth:`Lake.publish` takes, for a table already in memory."""

    data: Any
    """A pyarrow Table or anything :func:`lake.to_arrow` takes."""
    type: str
    """Artifact type."""
    name: str | None = None
    """Name to point at the artifact (adds a version when it moves)."""
    inputs: Sequence[str] = ()
    """References of the artifacts it was derived from (lineage edges)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Searchable meta of a new artifact."""


@dataclass
class _Prepared:
    schema: Schema
    table: pa.Table
    artifact_id: str
    parents: list[int]
    meta: dict[str, Any]
    name: str | None
    staged: Staged | None = None
    fhash: str = ""
    size: int = 0


def _prepare(lake: Lake, item: Item, label: str) -> _Prepared:
    from artifact_lake.schemas import conform

    schema = lake.registry.get(item.type)
    meta = _check_meta(item.meta)
    if item.name is not None:
        check_name(item.name)
    parents = [lake._pk(lake.resolve(ref)) for ref in item.inputs]
    table = conform(to_arrow(item.data), schema, label)
    return _Prepared(schema, table, content_id(table, schema.name, schema.version), parents, meta, item.name)


def _stage(lake: Lake, p: _Prepared, label: str) -> None:
    """Write and check ``p`` in tmp/ (it stays locked there until installed or discarded)."""
    staged = p.staged = write_checked(lake.root, p.table, p.schema, label)
    try:
        p.fhash = file_hash(staged.path)
        p.size = staged.path.stat().st_size
    except BaseException:
        staged.discard()
        raise
    _crashpoint("after-stage")


def publish_many(
    lake: Lake,
    items: Sequence[Item],
    *,
    run: str | None = None,
    in_transaction: Callable[[list[PublishResult]], None] | None = None,
) -> list[PublishResult]:
    """Publish every item in one manifest transaction, or none of them; results in the order of ``items``.

    ``run`` tags every lineage edge the batch adds. ``in_transaction`` is called with the results inside the
    transaction, after every row is written and before the commit: what it writes commits with the batch, and
    an exception it raises undoes the whole batch.

    Example::

        results = publish_many(lake, [Item(trades, "trades", name="exp/x/trades", inputs=[px]),
                                      Item(equity, "equity", name="exp/x/equity", inputs=[px])], run=run_id)
    """
    lake.require_writable("publish")
    prepared: list[_Prepared] = []
    staged_ids: set[str] = set()
    try:
        for k, item in enumerate(items):
            label = item.name or f"item {k} ({item.type})"
            p = _prepare(lake, item, label)
            known = lake.db.execute("SELECT 1 FROM artifacts WHERE id = ?", (p.artifact_id,)).fetchone()
            if not (known and lake.has_intact_object(p.artifact_id)) and p.artifact_id not in staged_ids:
                _stage(lake, p, label)
                staged_ids.add(p.artifact_id)
            prepared.append(p)
        _crashpoint("batch-after-stage")
        results = _commit(lake, prepared, run, in_transaction)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, "publishing the batch") from exc
        raise
    finally:
        for p in prepared:
            if p.staged is not None:
                p.staged.discard()  # a no-op for an installed file: it was moved away from its staging path
    return results


def _commit(
    lake: Lake,
    prepared: list[_Prepared],
    run: str | None,
    in_transaction: Callable[[list[PublishResult]], None] | None,
) -> list[PublishResult]:
    installed: list[tuple[str, Path]] = []
    results: list[PublishResult] = []
    try:
        with mf.immediate(lake.db):
            try:
                for k, p in enumerate(prepared):
                    pk, deduplicated = _install(lake, p, installed)
                    lake._add_source(p.fhash or None, p.schema, pk)
                    results.append(
                        lake._record(
                            pk,
                            p.name,
                            p.parents,
                            run,
                            deduplicated=deduplicated,
                            in_tx=True,
                            meta=p.meta if deduplicated else None,
                        )
                    )
                    if k == 0 and len(prepared) > 1:
                        _crashpoint("batch-between-items")
                if in_transaction is not None:
                    in_transaction(results)
                _crashpoint("before-commit")
            except BaseException:
                # Still under the write lock: no other writer can have recorded these ids, so the objects this
                # batch renamed in belong to nothing once the transaction rolls back.
                for _, path in installed:
                    path.unlink(missing_ok=True)
                installed.clear()
                raise
    except BaseException:
        for artifact_id, path in installed:
            lake._undo_install(artifact_id, path)  # the COMMIT itself failed
        raise
    return results


def _install(lake: Lake, p: _Prepared, installed: list[tuple[str, Path]]) -> tuple[int, bool]:
    """Rename ``p``'s object in (when needed) and insert its row; (pk, deduplicated)."""
    target = object_path(lake.root, p.artifact_id)
    row = lake.db.execute("SELECT pk FROM artifacts WHERE id = ?", (p.artifact_id,)).fetchone()
    if row is not None and lake.has_intact_object(p.artifact_id):
        if p.staged is not None:
            p.staged.discard()
        return int(row["pk"]), True
    if p.staged is None:
        # Known when prepared, its object lost since: write it again (rare; under the lock, but correct).
        _stage(lake, p, p.name or p.schema.name)
    assert p.staged is not None
    path = install(p.staged, target)
    _crashpoint("after-rename")
    if row is not None:
        # The row survived but its object was lost or changed: restore it from these bytes (not ours to remove).
        lake._intact.pop(p.artifact_id, None)
        lake.db.execute("UPDATE artifacts SET file_hash = ?, bytes = ? WHERE pk = ?", (p.fhash, p.size, row["pk"]))
        return int(row["pk"]), True
    installed.append((p.artifact_id, path))
    pk = mf.insert_artifact(
        lake.db,
        artifact_id=p.artifact_id,
        type_name=p.schema.name,
        schema_version=p.schema.version,
        file_hash=p.fhash,
        rows=p.table.num_rows,
        size=p.size,
        columns=[[f.name, str(f.type)] for f in p.table.schema],
        meta=p.meta,
    )
    return pk, False
