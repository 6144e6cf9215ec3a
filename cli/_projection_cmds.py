"""``lake projection ...`` and ``lake query``: sandboxed DuckDB projections of artifact sets."""

from __future__ import annotations

import sys

import click

from ._core import json_option, open_lake, parse_pairs
from .main import lake


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
