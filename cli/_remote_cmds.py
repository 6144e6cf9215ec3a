"""``lake remote add|list|remove``, ``lake push``, ``lake pull`` and ``lake clone`` (docs/scale-out.md).

Only click loads at import; the store's remote code (and obstore for ``s3://``) loads inside the commands.
"""

from __future__ import annotations

from typing import Any

import click

from ._core import json_option, open_lake
from .main import lake


def _ensure_experiment_tables(lk: Any) -> None:
    """Pulled runs and experiments need the tracker's tables (the store cannot import experiments)."""
    from artifact_lake.experiments.tracker import ensure_tables

    if not lk.read_only:
        ensure_tables(lk.db)


@lake.group("remote")
def remote_group() -> None:
    """Remotes this lake pushes to and pulls from: s3://BUCKET/PREFIX or file:///PATH."""


@remote_group.command("add")
@click.argument("name")
@click.argument("url")
@json_option
@click.pass_context
def remote_add_cmd(ctx: click.Context, name: str, url: str, as_json: bool) -> None:
    """Add remote NAME at URL (s3://BUCKET/PREFIX with the AWS environment's credentials, or file:///PATH)."""
    from artifact_lake.artifact_store.remote import add_remote
    from artifact_lake.cli._render import emit_json

    info = add_remote(open_lake(ctx, create=True), name, url)
    if as_json:
        emit_json(info.to_dict())
    else:
        click.echo(f"remote {info.name} -> {info.url}")


@remote_group.command("list")
@json_option
@click.pass_context
def remote_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """The lake's remotes, by name."""
    from artifact_lake.artifact_store.remote import list_remotes
    from artifact_lake.cli._render import emit_json

    remotes = list_remotes(open_lake(ctx))
    if as_json:
        emit_json([r.to_dict() for r in remotes])
    else:
        for r in remotes:
            click.echo(f"{r.name}\t{r.url}")


@remote_group.command("remove")
@click.argument("name")
@json_option
@click.pass_context
def remote_remove_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Forget remote NAME (nothing on the remote is touched)."""
    from artifact_lake.artifact_store.remote import remove_remote
    from artifact_lake.cli._render import emit_json

    info = remove_remote(open_lake(ctx), name)
    if as_json:
        emit_json(info.to_dict())
    else:
        click.echo(f"removed remote {info.name} ({info.url})")


@lake.command("push")
@click.argument("refs", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Push every artifact of the lake.")
@click.option("--remote", default=None, help="Remote name (default: the only remote, or origin).")
@json_option
@click.pass_context
def push_cmd(ctx: click.Context, refs: tuple[str, ...], all_: bool, remote: str | None, as_json: bool) -> None:
    """Upload REFS (with their lineage) that the remote lacks, then their records as one immutable segment.

    Objects go under content-addressed keys with conditional creates: nothing is ever overwritten, and
    pushes from several machines need no lock. Run it again after an interruption: it uploads the rest.
    """
    from artifact_lake.artifact_store.remote import push
    from artifact_lake.cli._render import emit_json, progress_bar

    lk = open_lake(ctx)
    with progress_bar(enabled=not as_json) as progress:
        report = push(lk, refs, all_=all_, remote=remote, progress=progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(
            f"pushed to {report.remote}: {report.uploaded} of {report.objects} object(s) uploaded "
            f"({report.bytes:,} bytes), segment {str(report.segment)[:12]}"
            + ("" if report.segment_new else " (already there)")
        )


def _pull_summary(report: Any) -> None:
    click.echo(
        f"pulled from {report.remote}: {report.segments} segment(s), {report.artifacts} new record(s), "
        f"{report.downloaded} object(s) downloaded ({report.bytes:,} bytes), {report.reused} reused; "
        f"{report.records_only} artifact(s) records only"
    )
    for c in report.conflicts:
        click.echo(
            f"conflict: {c['name']}@v{c['version']} is {str(c['local'])[:12]} here and {c['remote'][:12]} on "
            f"{report.remote}; kept here, the remote's recorded as {c['recorded_as']}",
            err=True,
        )
    for s in report.skipped:
        click.echo(f"skipped {s}", err=True)


@lake.command("pull")
@click.argument("refs", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Fetch every object the remote holds.")
@click.option("--with-inputs", is_flag=True, help="Fetch the objects of every ancestor of REFS too.")
@click.option("--records-only", is_flag=True, help="Merge the remote's records only; objects are fetched on read.")
@click.option("--remote", default=None, help="Remote name (default: the only remote, or origin).")
@json_option
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    refs: tuple[str, ...],
    all_: bool,
    with_inputs: bool,
    records_only: bool,
    remote: str | None,
    as_json: bool,
) -> None:
    """Merge the remote's records, then download REFS, checking file hash and content id before registering.

    A name version that differs here is never overwritten: the remote's is recorded as REMOTE/NAME.
    """
    from artifact_lake.artifact_store.remote import get_remote, pull
    from artifact_lake.cli._render import emit_json, progress_bar

    lk = open_lake(ctx)
    get_remote(lk, remote)  # an unknown remote is one line before anything is written
    _ensure_experiment_tables(lk)
    with progress_bar(enabled=not as_json) as progress:
        report = pull(
            lk, refs, all_=all_, with_inputs=with_inputs, records_only=records_only, remote=remote, progress=progress
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        _pull_summary(report)


@lake.command("clone")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default="origin", show_default=True, help="Name of the remote in the new lake.")
@click.option("--records-only", is_flag=True, help="Fetch the records only; objects are fetched when first read.")
@json_option
def clone_cmd(url: str, directory: str, name: str, records_only: bool, as_json: bool) -> None:
    """Make a new lake in DIRECTORY from the remote at URL (records and, unless --records-only, objects)."""
    from artifact_lake.artifact_store._backends import check_url, open_backend
    from artifact_lake.artifact_store.remote import clone
    from artifact_lake.cli._render import emit_json, progress_bar

    open_backend(check_url(url))  # a bad URL or a missing extra: one line before the folder is made
    with progress_bar(enabled=not as_json) as progress:
        lk, report = clone(
            url, directory, name=name, records_only=records_only, progress=progress, prepare=_ensure_experiment_tables
        )
    lk.close()
    if as_json:
        emit_json({"lake": str(lk.root)} | report.to_dict())
    else:
        click.echo(f"cloned {url} into {lk.root}")
        _pull_summary(report)
