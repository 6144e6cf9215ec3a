"""The ``lake`` and ``experiments`` commands: parse options, call one library function, render.

Only click and the standard library load at import; pyarrow, duckdb, numba and torch load inside the
commands that need them, so ``lake find`` starts in a fraction of a second. Errors are caught in one place
(:class:`LakeGroup`): a :class:`~schemas.errors.LakeError` prints one ``error: ...`` line and exits with
its code (2 bad input, 1 failed check); anything else is a bug: exit 70, traceback only with ``--debug``.
"""

from __future__ import annotations

from typing import Any

import click

from ._core import (  # noqa: F401  (re-exported: command modules and tests import them from here)
    INTERNAL_ERROR,
    LakeCommand,
    LakeGroup,
    attach_completion,
    check_out,
    json_option,
    open_lake,
    parse_pairs,
    root_group,
)

lake = root_group("lake", "Immutable, content-addressed Parquet artifacts with names, lineage and verification.")
experiments = root_group("experiments", "Experiments on frozen artifacts: create, execute, reproduce.")


@lake.command("init")
@json_option
@click.pass_context
def init_cmd(ctx: click.Context, as_json: bool) -> None:
    """Create a lake (objects/, manifest.sqlite, ...) or check an existing one opens."""
    from artifact_lake.cli._render import emit_json

    lk = open_lake(ctx, create=True)
    if as_json:
        emit_json({"lake": str(lk.root)})
    else:
        click.echo(f"lake ready at {lk.root}")


@lake.command("publish")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--type", "type_", required=True, help="Artifact type (ohlcv, alerts, table, ... or the lake's own).")
@click.option("--name", default=None, help="Name to point at the artifact (adds a version when it moves).")
@click.option("--input", "inputs", multiple=True, help="Parent artifact (id, prefix or name); repeatable.")
@click.option("--meta", multiple=True, help="KEY=VALUE stored and searchable with find --meta; repeatable.")
@click.option(
    "--tz", default=None, help="Time zone of timestamp columns without one (default: refused), e.g. America/New_York."
)
@json_option
@click.pass_context
def publish_cmd(
    ctx: click.Context,
    file: str,
    type_: str,
    name: str | None,
    inputs: tuple[str, ...],
    meta: tuple[str, ...],
    tz: str | None,
    as_json: bool,
) -> None:
    """Validate a Parquet FILE against its type and store it; prints the artifact id."""
    from artifact_lake.cli._render import emit_json

    pairs = parse_pairs(meta, "--meta")
    lk = open_lake(ctx, create=True)
    if tz is not None:
        from artifact_lake.artifact_store.ingest.files import localize_file

        rec = lk.publish(localize_file(file, tz), type_, name=name, inputs=inputs, meta=pairs)
    else:
        rec = lk.publish(file, type_, name=name, inputs=inputs, meta=pairs)
    if as_json:
        emit_json(rec.to_dict())
    else:
        click.echo(rec.id)
        note = "deduplicated: already in the lake" if rec.deduplicated else f"stored {rec.rows:,} rows"
        where = f", {rec.name}@v{rec.version}" if rec.name else ""
        added = f"; meta added: {', '.join(rec.meta_added)}" if rec.meta_added else ""
        kept = f"; meta kept (already set, meta is add-only): {', '.join(rec.meta_kept)}" if rec.meta_kept else ""
        click.echo(f"{note}{where}{added}{kept}", err=True)


@lake.command("show")
@click.argument("ref")
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Type, rows, bytes, schema, names, meta, parents and children of an artifact."""
    from artifact_lake.cli._render import emit_json, show_artifact

    lk = open_lake(ctx, store_only=True)
    art = lk.get(ref)
    parents, children, runs = lk.parents(art.id), lk.children(art.id), lk.runs_of(art.id)
    if as_json:
        emit_json(
            art.to_dict() | {"parents": [p.id for p in parents], "children": [c.id for c in children], "runs": runs}
        )
    else:
        show_artifact(art, parents, children, runs)


@lake.command("cat")
@click.argument("ref")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=0), help="Rows to show.")
@click.option("--columns", default=None, help="Only these columns, comma-separated, in this order: ts,close.")
@json_option
@click.pass_context
def cat_cmd(ctx: click.Context, ref: str, limit: int, columns: str | None, as_json: bool) -> None:
    """The first rows of an artifact as a table (one block per row when wider than the terminal)."""
    from artifact_lake.cli._render import arrow_table, emit_json

    tbl = open_lake(ctx, store_only=True).head(ref, limit)
    if columns is not None:
        tbl = _select_columns(tbl, columns)
    if as_json:
        emit_json(tbl.to_pylist())
    else:
        arrow_table(tbl)


def _select_columns(tbl: Any, columns: str) -> Any:
    """``--columns a,b``: those columns in that order; an unknown one is bad input naming the available ones."""
    import difflib

    from artifact_lake.artifact_store.errors import InvalidInput

    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    if not wanted:
        raise InvalidInput("--columns needs at least one column name, e.g. --columns ts,close")
    available = list(tbl.column_names)
    for col in wanted:
        if col not in available:
            hint = difflib.get_close_matches(col, available, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInput(f"unknown column {col!r}{did}; available: {', '.join(available)}")
    return tbl.select(wanted)


@lake.command("get")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv", "safetensors"]), default="parquet", show_default=True,
    help="parquet: the stored bytes; csv; safetensors: a tensors artifact (policy weights) for torch and others.",
)  # fmt: skip
@json_option
@click.pass_context
def get_cmd(ctx: click.Context, ref: str, out: str, fmt: str, as_json: bool) -> None:
    """Write an artifact to a file (Parquet: the stored bytes; or CSV)."""
    from artifact_lake.cli._render import emit_json

    lk = open_lake(ctx, store_only=True)
    artifact_id = lk.resolve(ref)
    path = lk.export(artifact_id, out, fmt)
    if as_json:
        emit_json({"id": artifact_id, "out": str(path), "format": fmt})
    else:
        click.echo(str(path))


@lake.command("find")
@click.option("--type", "type_", default=None, help="Only this type.")
@click.option("--name", default=None, help="Name glob, e.g. 'ohlcv/binance/*'.")
@click.option("--meta", multiple=True, help="KEY=VALUE that must match exactly; repeatable.")
@click.option("--since", default=None, help="Only artifacts created at or after this ISO time (UTC).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@json_option
@click.pass_context
def find_cmd(
    ctx: click.Context,
    type_: str | None,
    name: str | None,
    meta: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Artifacts matching every filter, newest first."""
    from artifact_lake.cli._render import artifacts_table, emit_json

    arts = open_lake(ctx, store_only=True).find(
        type=type_, name=name, meta=parse_pairs(meta, "--meta"), since=since, limit=limit
    )
    if as_json:
        emit_json([a.to_dict() for a in arts])
    else:
        artifacts_table(arts)


@lake.command("lineage")
@click.argument("ref")
@click.option("--up", "direction", flag_value="up", default=True, help="Ancestors: what it was made from (default).")
@click.option("--down", "direction", flag_value="down", help="Descendants: what was made from it.")
@click.option("--both", "direction", flag_value="both", help="Ancestors and descendants.")
@click.option("--depth", default=None, type=click.IntRange(min=0), help="At most this many edges away.")
@click.option(
    "--format", "fmt", type=click.Choice(["tree", "json", "dot", "mermaid"]), default="tree", show_default=True
)
@json_option
@click.pass_context
def lineage_cmd(ctx: click.Context, ref: str, direction: str, depth: int | None, fmt: str, as_json: bool) -> None:
    """Where an artifact came from (--up) or what came of it (--down)."""
    from artifact_lake.cli._render import emit_json, lineage_text, lineage_tree

    lin = open_lake(ctx, store_only=True).lineage(
        ref, up=direction in ("up", "both"), down=direction in ("down", "both"), depth=depth
    )
    if as_json or fmt == "json":
        emit_json(lin.to_dict())
    elif fmt == "tree":
        lineage_tree(lin, depth)
    else:
        click.echo(lineage_text(lin, fmt))


@lake.command("verify")
@click.argument("refs", nargs=-1)
@click.option("--quick", is_flag=True, help="Check file hashes only, not the content ids (no decoding).")
@click.option("--remote", default=None, help="Check the objects of remote NAME instead (downloads each one).")
@json_option
@click.pass_context
def verify_cmd(ctx: click.Context, refs: tuple[str, ...], quick: bool, remote: str | None, as_json: bool) -> None:
    """Recompute hashes of all (or the given) artifacts; report missing, changed and orphan objects.

    Without REFS it also checks the manifest (SQLite's integrity check and the lake's invariants) and lists
    what it leaves alone in objects/ and tmp/ (symlinks, foreign files). Records-only artifacts (pulled
    without their objects) are not missing. With --remote NAME it checks every object that remote's records
    name against its file hash. Exits 1 when anything is wrong.
    """
    from artifact_lake.artifact_store.errors import ManifestDamaged, VerifyFailed
    from artifact_lake.artifact_store.maintenance import damaged
    from artifact_lake.cli._render import console, emit_json

    try:
        lk = open_lake(ctx)
        if remote is not None:
            from artifact_lake.artifact_store.remote import verify_remote

            report = verify_remote(lk, remote)
        else:
            from artifact_lake.artifact_store.remote import without_records_only

            report = without_records_only(lk, lk.verify(list(refs) or None, content=not quick))
        if not refs and remote is None:  # runs whose process died before they finished (gc records them as interrupted)
            from dataclasses import replace

            from artifact_lake.artifact_store.records import Problem
            from artifact_lake.experiments.tracker import interrupted_runs

            dead = [Problem("run", r.id, "interrupted: its process died before it finished (lake gc records it)")
                    for r in interrupted_runs(lk)]  # fmt: skip
            report = replace(report, problems=[*report.problems, *dead])
    except ManifestDamaged as exc:  # too damaged to open: that is verify's finding, not an error
        report = damaged(exc)
    if as_json:
        emit_json(report.to_dict())
    else:
        c = console()
        for p in report.problems:
            c.print(f"{p.kind:8} {p.subject}: {p.detail}", style="red", markup=False, highlight=False)
        for x in report.left_alone:
            c.print(f"left alone {x.path}: {x.reason}", markup=False, highlight=False)
        c.print(
            f"checked {report.checked} artifact(s): " + ("ok" if report.ok else f"{len(report.problems)} problem(s)")
        )
    if not report.ok:
        raise VerifyFailed(f"verify found {len(report.problems)} problem(s)")


@lake.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--grace", default="24h", show_default=True,
    help="Keep orphan objects younger than this (0, 90s, 30m, 24h, 7d): a copy of a lake made without its "
    "-wal file keeps the objects of its latest publishes.",
)  # fmt: skip
@json_option
@click.pass_context
def gc_cmd(ctx: click.Context, dry_run: bool, grace: str, as_json: bool) -> None:
    """Remove orphan objects and stale staging files left by interrupted publishes.

    Holds the lake's write lock throughout (a busy lake is an error, never skipped), never follows a
    symlink, removes only files of the names the lake makes, and lists what it leaves alone.
    """
    from artifact_lake.artifact_store.maintenance import parse_grace
    from artifact_lake.cli._render import emit_json, human_bytes
    from artifact_lake.experiments.tracker import interrupted_runs, mark_interrupted

    lk = open_lake(ctx)
    seconds = parse_grace(grace)
    # a dead run's status first (that also frees its lock file), then the files it may have left
    runs = interrupted_runs(lk) if dry_run else mark_interrupted(lk)
    report = lk.gc(dry_run=dry_run, grace=seconds)
    if as_json:
        emit_json({**report.to_dict(), "interrupted": [r.id for r in runs]})
        return
    for r in runs:
        click.echo(f"{'would record' if dry_run else 'recorded'} run {r.id[:12]} as interrupted")
    verb = "would remove" if dry_run else "removed"
    for path in report.removed:
        click.echo(f"{verb} {path}")
    for x in report.left_alone:
        click.echo(f"left alone {x.path}: {x.reason}")
    click.echo(f"{verb} {len(report.removed)} file(s), {human_bytes(report.bytes)}")


@lake.command("demo")
@click.option(
    "--lake",
    "demo_lake",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the demo lake (default: a new temporary folder).",
)
@json_option
@click.pass_context
def demo_cmd(ctx: click.Context, demo_lake: str | None, as_json: bool) -> None:
    """Run the whole story on bundled synthetic data: publish, derive, find, show, lineage."""
    from artifact_lake.cli._demo import run_demo

    run_demo(demo_lake or ctx.obj.get("lake"), as_json=as_json)


# -- command modules of their own, loaded when one of their commands runs (each imports only click at the top) -----
# Each registers its commands with `@lake.command(...)` / `@experiments.command(...)` after
# `from .main import lake, experiments`; the one-line help here is what `--help` lists before the module loads
# (tests/cli/test_lake_cli.py keeps it equal to the command's own).
_LAZY: dict[click.Group, dict[str, tuple[str, str]]] = {
    lake: {
        "projection": ("_projection_cmds", "Disposable DuckDB projections of artifact sets (build, list, show, drop)."),
        "query": ("_projection_cmds", "Run read-only SQL against a projection; render it, write it, or publish it as an artifact."),
        "ingest": ("_ingest_cmds", "Bring data in, validated: ccxt OHLCV backfills, CSV/Parquet files, alert feeds."),
        "coverage": ("_ingest_cmds", "Publish per-alert OHLCV coverage (full, partial, none, missing ranges) and print a summary."),
        "reproduce": ("_experiments_cmds", "Same as `experiments reproduce`: re-run the run behind a result and compare ids (exit 1 if different)."),
        "ui": ("_ui_cmd", "Serve a read-only web UI of the lake: artifacts, lineage, experiments, charts, reproduce."),
        "remote": ("_remote_cmds", "Remotes this lake pushes to and pulls from: s3://BUCKET/PREFIX or file:///PATH."),
        "push": ("_remote_cmds", "Upload REFS (with their lineage) that the remote lacks, then their records as one immutable segment."),
        "pull": ("_remote_cmds", "Merge the remote's records, then download REFS, checking file hash and content id before registering."),
        "clone": ("_remote_cmds", "Make a new lake in DIRECTORY from the remote at URL (records and, unless --records-only, objects)."),
    },
    experiments: {
        "create": ("_experiments_cmds", "Check a spec, freeze its inputs to artifact ids and record it; prints the experiment id."),
        "execute": ("_experiments_cmds", "Run an experiment: verify inputs, project, simulate, publish results with lineage."),
        "list": ("_experiments_cmds", "Experiments, newest first, with their latest run."),
        "show": ("_experiments_cmds", "Spec, runs, results, metrics table and lineage of an experiment."),
        "compare": ("_experiments_cmds", "Metrics of experiments (their latest succeeded runs) or of any runs (--run) side by side, with every parameter."),
        "plot": ("_experiments_cmds", "A PNG of an experiment's latest run; prints which curves it drew and which it left out."),
        "plugins": ("_experiments_cmds", "Every registered strategy and indicator: parameters, where it comes from, code hash."),
        "code": ("_experiments_cmds", "The user plugin code a run recorded (of a result, run or experiment): shown, or written to --out DIR."),
        "reproduce": ("_experiments_cmds", "Re-run the run behind a result (or run, or experiment) and prove its ids are identical."),
    },
}  # fmt: skip
for _group, _table in _LAZY.items():
    assert isinstance(_group, LakeGroup)
    for _name, (_module, _help) in _table.items():
        _group.add_lazy(_name, _module, _help)
    _group.on_load = lambda: attach_completion(lake, experiments)

attach_completion(lake, experiments)


def lake_main() -> None:
    lake(prog_name="lake")


def experiments_main() -> None:
    experiments(prog_name="experiments")


if __name__ == "__main__":  # pragma: no cover
    lake_main()
