"""Reproduce a historical result from its hash: find its run, run the same frozen spec on the same inputs
again without writing anything to the lake's history, and compare every result id.

Identical ids prove a bit-identical rerun (ids hash the logical content). Otherwise the report says, per
artifact, which columns differ, the first row that differs, and how the code versions of the two runs differ.

The stored results are checked too: each recorded result must still be in the lake with bytes that hash as
recorded and content that hashes to its id. A result that is missing or changed fails the reproduction
(``stored`` says which), even when the rerun's ids equal the recorded ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artifact_lake.artifact_store import CorruptArtifact, NotFound
from artifact_lake.artifact_store.hashing import column_digest, content_id
from artifact_lake.artifact_store.objects import object_path

from . import tracker
from .errors import CodeChanged, NotFoundExperiment, PluginGone
from .executor import RESULT_TYPES, compute, conform_results

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake

    from .runners import Progress


@dataclass(frozen=True)
class ArtifactDiff:
    role: str
    recorded: str
    reproduced: str
    columns: list[str] = field(default_factory=list)
    """Columns whose values differ (or that exist on one side only, marked + / -)."""
    first_row: int | None = None
    detail: str = ""
    stored: str = "intact"
    """The recorded result in this lake: ``intact``, ``missing`` (no row or no object) or ``changed``."""

    @property
    def identical(self) -> bool:
        return self.recorded == self.reproduced and self.stored == "intact"

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "recorded": self.recorded,
            "reproduced": self.reproduced,
            "identical": self.identical,
            "columns": self.columns,
            "first_row": self.first_row,
            "detail": self.detail,
            "stored": self.stored,
        }


@dataclass(frozen=True)
class Report:
    run: str
    experiment: str
    recorded_code: str
    current_code: str
    artifacts: list[ArtifactDiff]
    seconds: float
    code_changes: list[dict[str, Any]] = field(default_factory=list)
    """User plugins whose installed code differs from the recorded code (rerun with ``allow_code_change``):
    name, kind, origin, recorded and installed hashes, and the unified diff of their sources."""

    @property
    def identical(self) -> bool:
        return all(a.identical for a in self.artifacts)

    @property
    def summary(self) -> str:
        """One line for a failed reproduction: the first stored result that is missing or changed, else the
        general difference."""
        for a in self.artifacts:
            if a.stored != "intact":
                return f"the stored result {a.role} {a.recorded[:12]} of run {self.run[:12]} is {a.stored}: {a.detail}"
        return f"reproduced results differ from run {self.run[:12]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "run": self.run,
            "experiment": self.experiment,
            "code_version": {"recorded": self.recorded_code, "current": self.current_code},
            "artifacts": [a.to_dict() for a in self.artifacts],
            "seconds": self.seconds,
            "code_changes": self.code_changes,
        }


def find_run(lake: Lake, ref: str) -> tracker.Run:
    """The run behind ``ref``: a result artifact (id, prefix or name), a run id, or an experiment."""
    try:
        artifact_id = lake.resolve(ref)
    except NotFound:
        artifact_id = None
    if artifact_id is not None:
        run = tracker.run_of_artifact(lake.db, artifact_id)
        if run is None:
            raise NotFoundExperiment(f"artifact {artifact_id[:12]} was not produced by an experiment run")
        return run
    try:
        return tracker.get_run(lake.db, ref)
    except NotFoundExperiment:
        pass
    exp = tracker.get_experiment(lake.db, ref)
    runs = [r for r in tracker.runs_of(lake.db, exp.id) if r.status == "succeeded"]
    if not runs:
        raise NotFoundExperiment(f"experiment {exp.name!r} has no succeeded run to reproduce")
    return runs[0]


def _first_difference(old: pa.Table, new: pa.Table, column: str) -> int | None:
    a, b = old.column(column).to_pylist(), new.column(column).to_pylist()
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        same = x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        if not same:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _stored(lake: Lake, recorded: str) -> tuple[pa.Table | None, str, str]:
    """(table, state, detail) of a recorded result as this lake holds it: its bytes checked against the recorded
    file hash and its content against its id."""
    row = lake.db.execute("SELECT type, schema_version FROM artifacts WHERE id = ?", (recorded,)).fetchone()
    if not recorded or row is None:
        return None, "missing", "the manifest has no such artifact (run: lake verify)"
    try:
        old = lake.read(recorded)
    except CorruptArtifact as exc:
        there = object_path(lake.root, recorded).is_file()
        return None, ("changed" if there else "missing"), str(exc)
    got = content_id(old, row["type"], row["schema_version"])
    if got != recorded:
        return None, "changed", f"its content hashes to {got[:16]}..., not to its id (run: lake verify)"
    return old, "intact", ""


def _diff(lake: Lake, role: str, recorded: str, table: pa.Table) -> ArtifactDiff:
    schema = lake.registry.get(RESULT_TYPES[role])
    new_id = content_id(table, schema.name, schema.version)
    old, state, problem = _stored(lake, recorded)
    if old is None:
        return ArtifactDiff(role, recorded, new_id, detail=problem, stored=state)
    if new_id == recorded:
        return ArtifactDiff(role, recorded, new_id)
    cols = []
    first: int | None = None
    for name in old.column_names:
        if name not in table.column_names:
            cols.append(f"-{name}")
        elif old.schema.field(name).type != table.schema.field(name).type or column_digest(
            old.column(name)
        ) != column_digest(table.column(name)):
            cols.append(name)
            row = _first_difference(old, table, name)
            if row is not None and (first is None or row < first):
                first = row
    cols += [f"+{n}" for n in table.column_names if n not in old.column_names]
    detail = f"{old.num_rows} rows recorded, {table.num_rows} reproduced" if old.num_rows != table.num_rows else ""
    if first is not None and first < min(old.num_rows, table.num_rows):
        shown = [c for c in cols if not c.startswith(("+", "-"))][:3]
        pairs = ", ".join(f"{c}: {old.column(c)[first].as_py()!r} -> {table.column(c)[first].as_py()!r}" for c in shown)
        detail = (detail + "; " if detail else "") + f"row {first}: {pairs}"
    return ArtifactDiff(role, recorded, new_id, cols, first, detail)


def recorded_sources(lake: Lake, source_id: str) -> dict[str, str]:
    """The files of a recorded ``source`` artifact (path -> text), read from checked bytes; never imported."""
    table = lake.read(source_id)
    return dict(zip(table.column("path").to_pylist(), table.column("text").to_pylist(), strict=True))


def code_changes(lake: Lake, run: tracker.Run) -> list[dict[str, Any]]:
    """Every user plugin of ``run`` whose installed code differs from the recorded one, with a source diff.

    A plugin that is not registered any more is :class:`PluginGone` (exit 2), naming it and where it came from.
    """
    from artifact_lake.sim import plugins as registry

    from . import plugins

    if run.plugins:
        plugins.load()
    out: list[dict[str, Any]] = []
    for name, rec in sorted(run.plugins.items()):
        plugin = registry.get(rec["kind"], name)
        if plugin is None:
            raise PluginGone(
                f"{rec['kind']} plugin {name!r} (from {rec['origin']}) that run {run.id[:12]} used is not registered"
                " any more: register it with --plugins PATH, LAKE_PLUGINS or by installing its distribution"
            )
        now = plugins.closure(plugin)
        if now.hash == rec["hash"]:
            continue
        try:
            old = recorded_sources(lake, rec["source"])
        except (NotFound, CorruptArtifact) as exc:
            old = {}
            note = f"(the recorded source {rec['source'][:12]} cannot be read: {exc})\n"
        else:
            note = ""
        same = next((c["plugin"] for c in out if c["recorded"] == rec["hash"] and c["installed"] == now.hash), None)
        diff = f"(same files as {same})\n" if same else note + plugins.source_diff(old, now.files)
        out.append(
            {
                "plugin": name,
                "kind": rec["kind"],
                "origin": rec["origin"],
                "installed_origin": now.origin,
                "recorded": rec["hash"],
                "installed": now.hash,
                "diff": diff,
            }
        )
    return out


def reproduce(lake: Lake, ref: str, *, allow_code_change: bool = False, progress: Progress | None = None) -> Report:
    """Re-run the run behind ``ref`` and compare its result ids; publishes and records nothing.

    When a user plugin's installed code differs from the code the run recorded, this raises
    :class:`CodeChanged` (exit 1) with the source diff, unless ``allow_code_change``: then it reruns with the
    installed code and the report carries the code changes beside the result diff. ``progress(step, total,
    label)`` is called as the rerun computes, as :func:`executor.execute` calls it.
    """
    import time

    run = find_run(lake, ref)
    changes = code_changes(lake, run)
    if changes and not allow_code_change:
        names = ", ".join(c["plugin"] for c in changes)
        err = CodeChanged(
            f"the code of {names} changed since run {run.id[:12]} (see the diff; --allow-code-change reruns with"
            " the installed code)",
            changes,
        )
        raise err
    exp = tracker.get_experiment(lake.db, run.experiment)
    for role, ids in exp.spec.inputs.items():
        for artifact_id in ids:
            if not lake.db.execute("SELECT 1 FROM artifacts WHERE id = ?", (artifact_id,)).fetchone():
                raise CorruptArtifact(f"input {role} {artifact_id} of run {run.id[:12]} is not in this lake")
    t0 = time.perf_counter()
    # never a cached projection: each is rebuilt from the verified objects in tmp/ and removed afterwards, so
    # what is compared depends on the objects, the spec and the code only, never on a file someone may have edited
    with lake.scratch_projections():
        computed = compute(lake, exp.spec, progress)
    tables = conform_results(lake, computed.tables)
    diffs = [_diff(lake, role, run.results.get(role, ""), tables[role]) for role in sorted(tables)]
    return Report(run.id, exp.id, run.code_version, tracker.code_version(), diffs, time.perf_counter() - t0, changes)
