"""The ``lake`` and ``experiments`` commands: parse options, call one library function, render.

Only click and the standard library load at import; pyarrow, duckdb, numba and torch load inside the
commands that need them, so ``lake find`` starts in a fraction of a second. Errors are caught in one place
(:class:`LakeGroup`): a :class:`~schemas.errors.LakeError` prints one ``error: ...`` line and exits with
its code (2 bad input, 1 failed check); anything else is a bug: exit 70, traceback only with ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from artifact_lake.projections import Lake

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 70


EXIT_CODES = """\b
Exit codes: 0 ok; 1 a check failed (verify, reproduce); 2 bad input or usage
(one 'error:' line, the lake unchanged); 70 internal error (traceback with --debug).
The lake is --lake PATH (before or after the command), else $LAKE_HOME, else ./lake."""

CONTEXT = {"help_option_names": ["-h", "--help"]}


class _CommandLakeOption(click.Option):
    """``--lake`` after a command: only a value typed there counts ($LAKE_HOME is the root group's to read)."""

    def consume_value(self, ctx: click.Context, opts: Any) -> tuple[Any, Any]:
        from click.core import ParameterSource

        value, source = super().consume_value(ctx, opts)
        if source != ParameterSource.COMMANDLINE:
            return None, ParameterSource.DEFAULT
        return value, source


def _lake_after_command(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:  # typed after the command: it beats the one before it
        ctx.ensure_object(dict)["lake"] = value


def lake_option(*, root: bool) -> click.Option:
    """``--lake``, accepted by the root group and by every command."""
    return (click.Option if root else _CommandLakeOption)(
        ["--lake", "lake_path"],
        type=click.Path(file_okay=False),
        default=None,
        envvar="LAKE_HOME",
        show_envvar=True,
        expose_value=root,
        callback=None if root else _lake_after_command,
        help="Lake folder (default: $LAKE_HOME, else ./lake).",
    )


# One instance for every command: an option holds no per-command state, and building 30 of them cost 3 ms of
# every start-up (measured; bench/bench_startup.py).
_COMMAND_LAKE = lake_option(root=False)


def _usage_line(exc: click.UsageError) -> str:
    """A click usage error as one line (click prints usage, a hint and the error on three or four)."""
    where = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
    return f"error: {' '.join(exc.format_message().split())}{where}"


def check_out(ctx: click.Context, out: str) -> None:
    """``--out FILE`` must be a file in an existing folder, never a file the lake keeps (objects, manifest, ...)."""
    import os
    from pathlib import Path

    from artifact_lake.artifact_store.errors import InvalidInput
    from artifact_lake.artifact_store.lake import default_path

    path = Path(out)
    if path.is_dir():
        raise InvalidInput(f"--out {out}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"--out {out}: the folder {parent} does not exist")
    root = default_path((ctx.obj or {}).get("lake")).resolve()
    target = Path(os.path.realpath(path))
    kept = [root / "objects", root / "projections", root / "tmp", root / "quarantine"]
    if (
        target.name.startswith("manifest.sqlite")
        and target.parent == root
        or any(target == k or k in target.parents for k in kept)
    ):
        raise InvalidInput(f"--out {out}: is inside the lake's own files ({root}); write it somewhere else")


class _OneLineUsage(click.Command):
    """Usage errors of parsing (a bad value, a missing argument) as one ``error:`` line, exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            click.echo(_usage_line(exc), err=True)
            ctx.exit(exc.exit_code)


class LakeCommand(_OneLineUsage):
    """A command that also takes ``--lake`` after its name, and completes references, types and specs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)
        if not any("--lake" in p.opts for p in self.params if isinstance(p, click.Option)):
            self.params.append(_COMMAND_LAKE)

    def invoke(self, ctx: click.Context) -> Any:
        # every command's --out is checked the same way before any work (one line, nothing written)
        if ctx.params.get("out"):
            check_out(ctx, str(ctx.params["out"]))
        return super().invoke(ctx)


class LakeGroup(_OneLineUsage, click.Group):
    """A group that turns lake errors into one line and an exit code; its commands take ``--lake`` too."""

    command_class = LakeCommand
    group_class = type  # sub-groups are LakeGroups as well

    def invoke(self, ctx: click.Context) -> Any:
        import errno

        from artifact_lake.schemas.errors import LakeError

        try:
            return super().invoke(ctx)
        except LakeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            click.echo(_usage_line(exc), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EROFS:
                where = f" {exc.filename}" if exc.filename else ""
                click.echo(f"error: read-only file system: cannot write{where}", err=True)
                ctx.exit(2)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                # the machine, not the input and not a bug: nothing is half-registered (publishes commit last)
                where = f" {exc.filename}" if exc.filename else ""
                click.echo(f"error: disk full while writing{where} ({exc.strerror})", err=True)
                ctx.exit(2)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
            ctx.exit(INTERNAL_ERROR)


def json_option(f: F) -> F:
    """``--json``: machine-readable output instead of rich tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")(f)


def open_lake(ctx: click.Context, *, create: bool = False) -> Lake:
    from artifact_lake.projections import Lake

    try:
        lake = Lake.open(ctx.obj["lake"], create=create)
    except (NotADirectoryError, FileExistsError, PermissionError) as exc:
        from artifact_lake.artifact_store.errors import InvalidInput

        raise InvalidInput(f"cannot open a lake at {ctx.obj['lake'] or '$LAKE_HOME or ./lake'}: {exc}") from exc
    ctx.call_on_close(lake.close)
    return lake


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``KEY=VALUE`` options into a dict; a malformed one is bad input."""
    from artifact_lake.artifact_store.errors import InvalidInput

    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"malformed {option} {item!r}: use KEY=VALUE")
        out[key.strip()] = value
    return out


def root_group(name: str, help_text: str) -> click.Group:
    """A top-level command group with --lake, --debug and --version, whose errors LakeGroup turns into lines."""

    @click.pass_context
    def callback(ctx: click.Context, lake_path: str | None, debug: bool) -> None:
        ctx.ensure_object(dict)
        ctx.obj["lake"] = lake_path
        ctx.obj["debug"] = debug

    callback = click.version_option(package_name="artifact-lake")(callback)
    callback = click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")(callback)
    group = click.group(name=name, cls=LakeGroup, help=help_text, epilog=EXIT_CODES, context_settings=CONTEXT)(callback)
    group.params.insert(0, lake_option(root=True))
    return group


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
@json_option
@click.pass_context
def publish_cmd(
    ctx: click.Context,
    file: str,
    type_: str,
    name: str | None,
    inputs: tuple[str, ...],
    meta: tuple[str, ...],
    as_json: bool,
) -> None:
    """Validate a Parquet FILE against its type and store it; prints the artifact id."""
    from artifact_lake.cli._render import emit_json

    pairs = parse_pairs(meta, "--meta")
    rec = open_lake(ctx, create=True).publish(file, type_, name=name, inputs=inputs, meta=pairs)
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

    lk = open_lake(ctx)
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

    tbl = open_lake(ctx).head(ref, limit)
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

    lk = open_lake(ctx)
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

    arts = open_lake(ctx).find(type=type_, name=name, meta=parse_pairs(meta, "--meta"), since=since, limit=limit)
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

    lin = open_lake(ctx).lineage(ref, up=direction in ("up", "both"), down=direction in ("down", "both"), depth=depth)
    if as_json or fmt == "json":
        emit_json(lin.to_dict())
    elif fmt == "tree":
        lineage_tree(lin, depth)
    else:
        click.echo(lineage_text(lin, fmt))


@lake.command("verify")
@click.argument("refs", nargs=-1)
@click.option("--quick", is_flag=True, help="Check file hashes only, not the content ids (no decoding).")
@json_option
@click.pass_context
def verify_cmd(ctx: click.Context, refs: tuple[str, ...], quick: bool, as_json: bool) -> None:
    """Recompute hashes of all (or the given) artifacts; report missing, changed and orphan objects.

    Without REFS it also checks the manifest (SQLite's integrity check and the lake's invariants) and lists
    what it leaves alone in objects/ and tmp/ (symlinks, foreign files). Exits 1 when anything is wrong.
    """
    from artifact_lake.artifact_store.errors import ManifestDamaged, VerifyFailed
    from artifact_lake.artifact_store.maintenance import damaged
    from artifact_lake.cli._render import console, emit_json

    try:
        lk = open_lake(ctx)
        report = lk.verify(list(refs) or None, content=not quick)
        if not refs:  # runs whose process died before they finished (gc records them as interrupted)
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


def parse_inputs(values: tuple[str, ...]) -> dict[str, list[str]]:
    """``--input ROLE=REF`` (repeatable) into {role: [refs]}."""
    out: dict[str, list[str]] = {}
    for role, ref in ((k, v) for item in values for k, v in parse_pairs((item,), "--input").items()):
        out.setdefault(role, []).append(ref)
    return out


@lake.group("projection")
def projection_group() -> None:
    """Disposable DuckDB projections of artifact sets (build, list, show, drop)."""


@projection_group.command("build")
@click.argument("spec")
@click.option("--input", "inputs", multiple=True, help="ROLE=REF (id, prefix or name); repeatable.")
@click.option("--param", "params", multiple=True, help="K=V parameter of the spec; repeatable.")
@json_option
@click.pass_context
def projection_build_cmd(
    ctx: click.Context, spec: str, inputs: tuple[str, ...], params: tuple[str, ...], as_json: bool
) -> None:
    """Build the projection of SPEC over the inputs (or reuse it); prints its key."""
    from artifact_lake.cli._render import emit_json

    proj = open_lake(ctx).projection(spec, parse_inputs(inputs), parse_pairs(params, "--param"))
    if as_json:
        emit_json(proj.to_dict())
    else:
        click.echo(proj.key)
        click.echo("reused" if proj.reused else "built", err=True)


@projection_group.command("list")
@json_option
@click.pass_context
def projection_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every projection of the lake, with its spec and size."""
    from artifact_lake.cli._render import emit_json, projections_table

    items = open_lake(ctx).projections.list()
    if as_json:
        emit_json(items)
    else:
        projections_table(items)


@projection_group.command("show")
@click.argument("key")
@json_option
@click.pass_context
def projection_show_cmd(ctx: click.Context, key: str, as_json: bool) -> None:
    """What a projection holds: spec, parameters, inputs, relations and row counts (read from the file)."""
    from artifact_lake.cli._render import emit_json

    info = open_lake(ctx).projections.show(key)
    if as_json:
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:13} {v}")


@projection_group.command("drop")
@click.argument("key", required=False)
@click.option("--all", "drop_all", is_flag=True, help="Drop every projection.")
@json_option
@click.pass_context
def projection_drop_cmd(ctx: click.Context, key: str | None, drop_all: bool, as_json: bool) -> None:
    """Delete a projection (or --all). Nothing is lost: building again gives the same answers."""
    from artifact_lake.artifact_store.errors import InvalidInput
    from artifact_lake.cli._render import emit_json

    if (key is None) == (not drop_all):
        raise InvalidInput("give a projection KEY or --all (not both)")
    dropped = open_lake(ctx).projections.drop(None if drop_all else key)
    if as_json:
        emit_json({"dropped": dropped})
    else:
        click.echo(f"dropped {len(dropped)} projection(s)")


@lake.command("query")
@click.argument("sql")
@click.option("--projection", "key", default=None, help="Key (or prefix) of a built projection.")
@click.option("--spec", default=None, help="Build (or reuse) this spec's projection and query it.")
@click.option("--input", "inputs", multiple=True, help="ROLE=REF for --spec; repeatable.")
@click.option("--param", "params", multiple=True, help="K=V for --spec; repeatable.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result to this file.")
@click.option(
    "--publish",
    is_flag=True,
    help="Publish the result as an artifact with lineage from the inputs (computed on one thread, in a fixed order).",
)
@click.option("--type", "type_", default="table", show_default=True, help="Artifact type for --publish.")
@click.option("--name", default=None, help="Name for --publish.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def query_cmd(
    ctx: click.Context,
    sql: str,
    key: str | None,
    spec: str | None,
    inputs: tuple[str, ...],
    params: tuple[str, ...],
    fmt: str,
    out: str | None,
    publish: bool,
    type_: str,
    name: str | None,
    as_json: bool,
) -> None:
    """Run read-only SQL against a projection; render it, write it, or publish it as an artifact.

    The SQL runs sandboxed: it sees only the projection's tables and cannot read or write files, attach
    databases, load extensions or change settings. A projection that changed since the lake built it is refused.
    """
    from artifact_lake.artifact_store.errors import InvalidInput
    from artifact_lake.cli._render import arrow_table, emit_json

    lk = open_lake(ctx)
    if (key is None) == (spec is None):
        raise InvalidInput("give --projection KEY or --spec SPEC (with --input ROLE=REF)")
    proj = (
        lk.projections.get(key)
        if key
        else lk.projection(spec or "", parse_inputs(inputs), parse_pairs(params, "--param"))
    )
    result = proj.arrow(sql, deterministic=publish)  # a published result must not vary with thread timing
    if publish:
        parents = sorted({i for ids in proj.inputs.values() for i in ids})
        rec = lk.publish(result, type_, name=name, inputs=parents, meta={"query": sql, "projection": proj.key})
        if as_json or fmt == "json":
            emit_json(rec.to_dict())
        else:
            click.echo(rec.id)
        return
    fmt = "json" if as_json else fmt
    if fmt == "parquet" and out is None:
        raise InvalidInput("--format parquet needs --out FILE")
    if out is not None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if fmt == "csv":
            pcsv.write_csv(result, out)
        elif fmt == "json":
            with open(out, "w", encoding="utf-8") as f:
                import json

                from artifact_lake.cli._render import strict

                json.dump(strict(result.to_pylist()), f, default=str, allow_nan=False)
        else:
            pq.write_table(result, out)
        click.echo(out)
    elif fmt == "csv":
        import io

        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(result, buf)
        sys.stdout.write(buf.getvalue().decode())
    elif fmt == "json":
        emit_json(result.to_pylist())
    else:
        arrow_table(result)


@lake.group("ingest")
def ingest_group() -> None:
    """Bring data in, validated: ccxt OHLCV backfills, CSV/Parquet files, alert feeds."""


@ingest_group.command("ccxt")
@click.argument("exchange")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--timeframe", required=True, help="Candle length as the exchange names it, e.g. 1m, 1h, 1d.")
@click.option("--since", required=True, help="Start (ISO time, UTC unless it says otherwise).")
@click.option("--until", default=None, help="End (ISO time); default: now.")
@click.option("--partition", type=click.Choice(["day", "month"]), default="day", show_default=True)
@click.option(
    "--api-url", default=None, help="Replace the exchange's REST base URL (testnets, proxies, local servers)."
)
@click.option("--restart", is_flag=True, help="Ignore the checkpoint and fetch the whole range again.")
@click.option(
    "--retries", default=6, show_default=True, type=click.IntRange(min=0), help="Retries of a failing request."
)
@click.option(
    "--rate-limit-ms", default=None, type=click.IntRange(min=0), help="Override ccxt's delay between requests."
)
@json_option
@click.pass_context
def ingest_ccxt_cmd(
    ctx: click.Context,
    exchange: str,
    symbols: tuple[str, ...],
    timeframe: str,
    since: str,
    until: str | None,
    partition: str,
    api_url: str | None,
    restart: bool,
    retries: int,
    rate_limit_ms: int | None,
    as_json: bool,
) -> None:
    """Backfill OHLCV candles through ccxt into day or month partitions; resumable."""
    from artifact_lake.artifact_store.ingest import backfill
    from artifact_lake.cli._render import backfill_progress, emit_json

    lk = open_lake(ctx, create=True)
    with backfill_progress(enabled=not as_json) as progress:
        report = backfill(
            lk,
            exchange,
            list(symbols),
            timeframe,
            since,
            until,
            partition=partition,
            api_url=api_url,
            restart=restart,
            retries=retries,
            rate_limit_ms=rate_limit_ms,
            progress=progress,
        )
    if as_json:
        emit_json(report.to_dict())
        return
    for symbol, info in report.symbols.items():
        parts = info["partitions"]
        click.echo(
            f"{symbol}: {info['candles']:,} candles in {info['pages']} pages, {len(parts)} partition(s), "
            f"{info['gaps']} missing, {info['duplicates']} duplicates dropped, {info['quarantined']} quarantined"
        )
        for part in parts:
            click.echo(
                f"  {part['name']}  {part['id'][:12]}  {part['rows']:,} rows"
                + ("  (unchanged)" if part["deduplicated"] else "")
            )


@ingest_group.command("file")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--type", "type_", required=True, help="Artifact type of the curated artifact (ohlcv, alerts, ...).")
@click.option("--map", "maps", multiple=True, help="SRC=DST column rename; repeatable.")
@click.option("--tz", default=None, help="Time zone of times without one (default UTC), e.g. Europe/Berlin.")
@click.option("--ts-unit", type=click.Choice(["s", "ms", "us", "ns"]), default=None, help="Unit of numeric times.")
@click.option("--symbol", default=None, help="Symbol for every row (when the file has none).")
@click.option("--name", default=None, help="Name of the curated artifact.")
@json_option
@click.pass_context
def ingest_file_cmd(
    ctx: click.Context,
    path: str,
    type_: str,
    maps: tuple[str, ...],
    tz: str | None,
    ts_unit: str | None,
    symbol: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Import a CSV or Parquet file: the raw file as a table artifact, the curated one with lineage from it."""
    from artifact_lake.artifact_store.ingest import import_file
    from artifact_lake.cli._render import emit_json

    result = import_file(
        open_lake(ctx, create=True),
        path,
        type_,
        mapping=parse_pairs(maps, "--map"),
        tz=tz,
        ts_unit=ts_unit,
        symbol=symbol,
        name=name,
    )
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(result.id)
        click.echo(f"{result.rows:,} rows; raw file artifact {result.raw_id[:12]}", err=True)


@ingest_group.command("alerts")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--source", default=None, help="Feed name (default: the file name).")
@click.option("--as-of", default=None, help="The feed's time: alerts after it are quarantined (default: now).")
@json_option
@click.pass_context
def ingest_alerts_cmd(ctx: click.Context, path: str, source: str | None, as_of: str | None, as_json: bool) -> None:
    """Ingest an alert feed: valid rows as day-partitioned alerts, bad rows quarantined with the reason."""
    from artifact_lake.artifact_store.ingest import ingest_alerts
    from artifact_lake.cli._render import emit_json

    result = ingest_alerts(open_lake(ctx, create=True), path, source=source, as_of=as_of)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"{result.rows} rows: {result.valid} alerts in {len(result.alerts)} day(s), {result.quarantined} quarantined"
    )
    for reason, n in result.reasons.items():
        click.echo(f"  quarantined {n}: {reason}")
    for a in result.alerts:
        click.echo(f"  alerts/{result.source}/{a['day']}  {a['id'][:12]}  {a['rows']} rows")


@lake.command("coverage")
@click.argument("alerts", nargs=-1, required=True)
@click.option("--ohlcv", "ohlcv", multiple=True, required=True, help="OHLCV artifact (id, prefix or name); repeatable.")
@click.option("--before", default="1h", show_default=True, help="Window start before each alert (e.g. 30m).")
@click.option("--after", default="1d", show_default=True, help="Window end after each alert (e.g. 4h).")
@click.option("--name", default=None, help="Name of the coverage artifact.")
@json_option
@click.pass_context
def coverage_cmd(
    ctx: click.Context,
    alerts: tuple[str, ...],
    ohlcv: tuple[str, ...],
    before: str,
    after: str,
    name: str | None,
    as_json: bool,
) -> None:
    """Publish per-alert OHLCV coverage (full, partial, none, missing ranges) and print a summary."""
    from artifact_lake.cli._render import emit_json
    from artifact_lake.projections import coverage

    cov = coverage(open_lake(ctx), list(alerts), list(ohlcv), before=before, after=after, name=name)
    if as_json:
        emit_json(cov.to_dict())
        return
    from rich.table import Table

    from artifact_lake.cli._render import console

    table = Table(title=f"coverage {cov.id[:12]} ({cov.rows} alerts)")
    table.add_column("coverage")
    table.add_column("alerts", justify="right")
    for k, v in cov.counts.items():
        table.add_row(k, str(v))
    console().print(table)
    click.echo(cov.id)


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


@experiments.command("create")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Name for people (overrides the spec's name).")
@click.option(
    "--replace",
    is_flag=True,
    help="Move the name to this spec when another experiment holds it (that one keeps its id).",
)
@click.option(
    "--max-combinations",
    default=None,
    type=click.IntRange(min=1),
    help="Refuse a sweep of more combinations than this (default 10000); counted, never expanded.",
)
@json_option
@click.pass_context
def exp_create_cmd(
    ctx: click.Context, spec_file: str, name: str | None, replace: bool, max_combinations: int | None, as_json: bool
) -> None:
    """Check a spec, freeze its inputs to artifact ids and record it; prints the experiment id."""
    from artifact_lake.cli._render import emit_json
    from artifact_lake.experiments import create, load_spec_file

    raw = load_spec_file(spec_file)
    exp, created = create(open_lake(ctx), raw, name=name, replace=replace, max_combinations=max_combinations)
    if as_json:
        emit_json(exp.to_dict() | {"created_now": created})
    else:
        click.echo(exp.id)
        click.echo(f"{'created' if created else 'exists'}: {exp.name}", err=True)


@experiments.command("execute")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Run again even if a run of this code already succeeded.")
@json_option
@click.pass_context
def exp_execute_cmd(ctx: click.Context, ref: str, force: bool, as_json: bool) -> None:
    """Run an experiment: verify inputs, project, simulate, publish results with lineage."""
    from artifact_lake.cli._render import emit_json, progress_bar, run_summary
    from artifact_lake.experiments import execute

    lk = open_lake(ctx)
    with progress_bar(enabled=not as_json) as progress:
        run = execute(lk, ref, force=force, progress=progress)
    if as_json:
        emit_json(
            {
                "experiment": run.experiment,
                "run": run.id,
                "status": run.status,
                "reused": run.reused,
                "results": run.results,
                "duration": run.duration,
                "timings": run.timings,
            }
        )
    else:
        run_summary(lk, run)


@experiments.command("list")
@json_option
@click.pass_context
def exp_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Experiments, newest first, with their latest run."""
    from artifact_lake.cli._render import emit_json, experiments_table
    from artifact_lake.experiments import list_experiments

    items = list_experiments(open_lake(ctx).db)
    if as_json:
        emit_json([e.to_dict() | {"latest_run": r.to_dict() if r else None} for e, r in items])
    else:
        experiments_table(items)


@experiments.command("show")
@click.argument("ref")
@json_option
@click.pass_context
def exp_show_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Spec, runs, results, metrics table and lineage of an experiment."""
    from artifact_lake.cli._render import emit_json, show_experiment
    from artifact_lake.experiments import get_experiment, runs_of

    lk = open_lake(ctx)
    exp = get_experiment(lk.db, ref)
    runs = runs_of(lk.db, exp.id)
    if as_json:
        latest = next((r for r in runs if r.status == "succeeded"), None)
        metrics = lk.read(latest.results["metrics"]).to_pylist() if latest and "metrics" in latest.results else []
        emit_json(exp.to_dict() | {"runs": [r.to_dict() for r in runs], "metrics": metrics})
    else:
        show_experiment(lk, exp, runs)


@experiments.command("compare")
@click.argument("refs", nargs=-1, required=True)
@json_option
@click.pass_context
def exp_compare_cmd(ctx: click.Context, refs: tuple[str, ...], as_json: bool) -> None:
    """Metrics of several experiments side by side (their latest succeeded runs), with every parameter.

    Each experiment's fixed parameters are listed above the table, the swept ones in it. --json gives one
    object per row with all parameters (params), the swept names (swept) and the raw metrics (NaN: null).
    """
    from artifact_lake.cli._render import compare_table, emit_json
    from artifact_lake.experiments.report import compare

    rows = compare(open_lake(ctx), list(refs))
    if as_json:
        emit_json(rows)
    else:
        compare_table(rows)


@experiments.command("reproduce")
@click.argument("ref")
@json_option
@click.pass_context
def exp_reproduce_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Re-run the run behind a result (or run, or experiment) and prove its ids are identical.

    Exits 0 when every result id matches, 1 with a per-artifact diff otherwise.
    """
    _reproduce(ctx, ref, as_json)


def _reproduce(ctx: click.Context, ref: str, as_json: bool) -> None:
    from artifact_lake.cli._render import emit_json, reproduce_report
    from artifact_lake.experiments import NotReproduced, reproduce

    report = reproduce(open_lake(ctx), ref)
    if as_json:
        emit_json(report.to_dict())
    else:
        reproduce_report(report)
    if not report.identical:
        raise NotReproduced(report.summary)


@lake.command("reproduce")
@click.argument("ref")
@json_option
@click.pass_context
def lake_reproduce_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Same as `experiments reproduce`: re-run the run behind a result and compare ids (exit 1 if different)."""
    _reproduce(ctx, ref, as_json)


@experiments.command("plot")
@click.argument("ref")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option(
    "--max-lines",
    default=12,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many curves: the best by total return on each symbol; the others are listed.",
)
@json_option
@click.pass_context
def exp_plot_cmd(ctx: click.Context, ref: str, out: str, max_lines: int, as_json: bool) -> None:
    """A PNG of an experiment's latest run; prints which curves it drew and which it left out.

    Backtests: one panel per symbol (equity above, drawdown below), one colour per combination, each
    curve's total return and Sharpe in the legend. Train: the training curve, the train/validation split
    and the validation equity of the policy, buy-and-hold and flat.
    """
    from artifact_lake.cli._render import emit_json
    from artifact_lake.experiments.report import plot

    report = plot(open_lake(ctx), ref, out, max_lines=max_lines)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(str(report.out))
    click.echo(f"drew {report.selection}", err=True)
    if report.left_out:
        click.echo(f"left out {len(report.left_out)} (raise --max-lines to draw them):", err=True)
        for c in report.left_out:
            click.echo(f"  {c.label}", err=True)


# parameter name -> completer in cli/_complete.py; experiments' REF is an experiment (or an artifact)
_LAKE_COMPLETERS = {
    "ref": "artifact_refs", "refs": "artifact_refs", "ohlcv": "artifact_refs", "alerts": "artifact_refs",
    "inputs": "role_refs", "type_": "types", "spec": "specs", "key": "projection_keys",
}  # fmt: skip
_EXPERIMENT_COMPLETERS = {**_LAKE_COMPLETERS, "ref": "experiment_refs", "refs": "experiment_refs"}


def _completer(name: str) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from ._complete import complete_items  # only on <TAB>: sqlite3 stays out of every other start-up

        return complete_items(name, ctx, incomplete)

    return complete


def _attach_completion() -> None:
    """References, types, specs and keys complete in bash, zsh and fish (README: shell completion)."""

    def walk(group: click.Group, table: dict[str, str]) -> None:
        for command in group.commands.values():
            if isinstance(command, click.Group):
                walk(command, table)
                continue
            for param in command.params:
                name = table.get(param.name or "")
                if name is not None and param._custom_shell_complete is None:
                    param._custom_shell_complete = _completer(name)

    walk(experiments, _EXPERIMENT_COMPLETERS)
    walk(lake, _LAKE_COMPLETERS)


# -- command modules of their own (each imports only click at the top; heavy imports inside the commands) ---------
# Add one line per module here, e.g. `from . import _remote_cmds  # noqa: E402,F401` where the module registers its
# commands with `@lake.command(...)` / `@experiments.command(...)` after `from .main import lake, experiments`.

_attach_completion()


def lake_main() -> None:
    lake(prog_name="lake")


def experiments_main() -> None:
    experiments(prog_name="experiments")


if __name__ == "__main__":  # pragma: no cover
    lake_main()
