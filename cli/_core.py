"""The CLI's machinery: the root groups and their commands' classes (one-line errors, ``--lake`` after any
command, ``-h``), the options every command shares, ``--out`` checks and shell completion's wiring.

Only click and the standard library load here; what a command needs loads inside it.
"""

from __future__ import annotations

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
    """A group that turns lake errors into one line and an exit code; its commands take ``--lake`` too.

    Commands of their own modules load lazily (:meth:`add_lazy`): ``lake find`` imports none of them, and
    ``lake --help`` lists them from their recorded one-line help (a test keeps it equal to the real one).
    """

    command_class = LakeCommand
    group_class = type  # sub-groups are LakeGroups as well

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = {}
        """Command name -> (module of ``artifact_lake.cli`` that registers it, its one-line help)."""
        self.on_load: Callable[[], None] | None = None
        """Called after a lazy module registered its commands (shell completion wires them)."""

    def add_lazy(self, name: str, module: str, short_help: str) -> None:
        self.lazy[name] = (module, short_help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import importlib

            importlib.import_module(f"artifact_lake.cli.{self.lazy[cmd_name][0]}")
            if self.on_load is not None:
                self.on_load()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        for name in names:
            cmd = self.commands.get(name)
            if cmd is None:  # not loaded: a stand-in with its recorded help, shortened the way click shortens
                rows.append((name, click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

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


def open_lake(ctx: click.Context, *, create: bool = False, store_only: bool = False) -> Lake:
    """The lake of ``--lake``; ``store_only`` for commands that only read the store (``find``, ``show``, ...):
    they skip importing projections (and DuckDB's wrappers), a measured 7 ms of every such command."""
    if store_only:
        from artifact_lake.artifact_store import Lake as StoreLake

        opener: Any = StoreLake
    else:
        from artifact_lake.projections import Lake

        opener = Lake
    try:
        lake: Lake = opener.open(ctx.obj["lake"], create=create)
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
    def callback(ctx: click.Context, lake_path: str | None, debug: bool, plugin_paths: tuple[str, ...]) -> None:
        ctx.ensure_object(dict)
        ctx.obj["lake"] = lake_path
        ctx.obj["debug"] = debug
        ctx.obj["plugins"] = list(plugin_paths)  # imported only by the commands that need plugins (_experiments_cmds)

    callback = click.option(
        "--plugins",
        "plugin_paths",
        multiple=True,
        envvar="LAKE_PLUGINS",
        type=click.Path(),
        help="Strategy/indicator plugins: a .py file or package folder; repeatable (env: LAKE_PLUGINS, os.pathsep).",
    )(callback)
    callback = click.version_option(package_name="artifact-lake")(callback)
    callback = click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")(callback)
    group = click.group(name=name, cls=LakeGroup, help=help_text, epilog=EXIT_CODES, context_settings=CONTEXT)(callback)
    group.params.insert(0, lake_option(root=True))
    return group


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


def attach_completion(lake: click.Group, experiments: click.Group) -> None:
    """References, types, specs and keys complete in bash, zsh and fish (README: shell completion)."""

    def walk(group: click.Group, table: dict[str, str]) -> None:
        for command in list(group.commands.values()):
            if isinstance(command, click.Group):
                walk(command, table)
                continue
            for param in command.params:
                name = table.get(param.name or "")
                if name is not None and param._custom_shell_complete is None:
                    param._custom_shell_complete = _completer(name)

    walk(experiments, _EXPERIMENT_COMPLETERS)
    walk(lake, _LAKE_COMPLETERS)
