"""``lake ui``: the lake, its lineage and its experiments in a browser (extra ``ui``; see docs/ui.md).

Only click loads at import; starlette, uvicorn and jinja2 load inside the command.
"""

from __future__ import annotations

import click

from .main import lake


@lake.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.pass_context
def ui_cmd(ctx: click.Context, host: str, port: int) -> None:
    """Serve a read-only web UI of the lake: artifacts, lineage, experiments, charts, reproduce.

    The manifest is opened read-only, so a lake on a read-only mount is served; nothing is loaded from the
    internet. Every page is also JSON: add .json to its path.
    """
    from artifact_lake.schemas.errors import MissingExtra

    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("ui", "lake ui", exc.name or "starlette") from exc
    from artifact_lake.artifact_store.lake import default_path

    from .web.app import create_app

    app = create_app(default_path(ctx.obj["lake"]))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {app.state.ui.root} read-only at http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    server.run()
