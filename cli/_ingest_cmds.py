"""``lake ingest ...`` (ccxt backfills, files, alert feeds) and ``lake coverage``."""

from __future__ import annotations

import click

from ._core import json_option, open_lake, parse_pairs
from .main import lake


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


def _list_presets(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from artifact_lake.artifact_store.ingest.presets import PRESETS

    for preset in PRESETS.values():
        click.echo(f"{preset.name:<16} {preset.type:<7} {preset.description}")
    ctx.exit(0)


@ingest_group.command("file")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--type", "type_", default=None, help="Artifact type of the curated artifact (default: ohlcv).")
@click.option("--preset", default=None, help="A known layout: binance-klines, yahoo, backtesting (see --list-presets).")
@click.option(
    "--list-presets", is_flag=True, is_eager=True, expose_value=False, callback=_list_presets, help="List presets."
)
@click.option("--map", "maps", multiple=True, help="SRC=DST column rename; repeatable (standard names need none).")
@click.option("--drop", multiple=True, help="Leave this column of the file out of the typed artifact; repeatable.")
@click.option("--keep-extra", is_flag=True, help="Leave every column the type lacks out (the raw artifact keeps them).")
@click.option("--tz", default=None, help="Time zone of times and dates without one (default UTC), e.g. Europe/Berlin.")
@click.option("--ts-unit", type=click.Choice(["s", "ms", "us", "ns"]), default=None, help="Unit of numeric times.")
@click.option("--ts-format", default=None, help="strptime format of text times, e.g. '%d/%m/%Y %H:%M'.")
@click.option("--delimiter", default=None, help="CSV field separator (default: sniffed), e.g. ';' or '\\t'.")
@click.option(
    "--decimal", type=click.Choice([".", ","]), default=None, help="Decimal separator (',' reads '.' as thousands)."
)
@click.option(
    "--no-header", is_flag=True, help="The file has no header row: its first row is data (name them with --columns)."
)
@click.option(
    "--columns", default=None, help="Column names in file order, comma-separated: ts,open,high,low,close,volume."
)
@click.option("--skip-rows", default=0, type=click.IntRange(min=0), help="Lines to skip before the header.")
@click.option("--symbol", default=None, help="Symbol for every row (default when the file has none: its file name).")
@click.option("--calendar", default=None, help="Trading calendar kept in the meta: 24/7 (default) or e.g. XNYS.")
@click.option("--meta", multiple=True, help="KEY=VALUE stored on the curated artifact; repeatable.")
@click.option("--name", default=None, help="Name of the curated artifact.")
@json_option
@click.pass_context
def ingest_file_cmd(
    ctx: click.Context,
    path: str,
    type_: str | None,
    preset: str | None,
    maps: tuple[str, ...],
    drop: tuple[str, ...],
    keep_extra: bool,
    tz: str | None,
    ts_unit: str | None,
    ts_format: str | None,
    delimiter: str | None,
    decimal: str | None,
    no_header: bool,
    columns: str | None,
    skip_rows: int,
    symbol: str | None,
    calendar: str | None,
    meta: tuple[str, ...],
    name: str | None,
    as_json: bool,
) -> None:
    """Import a CSV/TSV (also gzip or a zip of one), JSON lines or Parquet file: the raw file as a table
    artifact, the curated one with lineage from it. Delimiter, header and types are sniffed."""
    from artifact_lake.artifact_store.ingest import import_file
    from artifact_lake.artifact_store.ingest.sniff import CsvOptions
    from artifact_lake.cli._render import emit_json

    names = tuple(c.strip() for c in columns.split(",")) if columns is not None else None
    if delimiter == "\\t":
        delimiter = "\t"
    result = import_file(
        open_lake(ctx, create=True),
        path,
        type_,
        mapping=parse_pairs(maps, "--map"),
        tz=tz,
        ts_unit=ts_unit,
        ts_format=ts_format,
        symbol=symbol,
        name=name,
        csv=CsvOptions(delimiter, decimal, False if no_header else None, names, skip_rows),
        preset=preset,
        drop=drop,
        keep_extra=keep_extra,
        meta=parse_pairs(meta, "--meta"),
        calendar=calendar,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(result.id)
    click.echo(
        f"read {result.rows_read:,} rows ({result.format}): stored {result.rows:,}, quarantined"
        f" {result.rows_quarantined:,}, duplicates dropped {result.duplicates_dropped:,};"
        f" raw file artifact {result.raw_id[:12]}"
        + ("; deduplicated: already in the lake" if result.deduplicated else ""),
        err=True,
    )
    if result.sorted:
        click.echo("  rows were not in time order (newest first?): sorted by time", err=True)
    if result.columns:
        click.echo("  columns: " + ", ".join(f"{k or '(unnamed)'} -> {v}" for k, v in result.columns.items()), err=True)
    if result.dropped:
        click.echo(f"  left out (kept in the raw artifact): {', '.join(result.dropped)}", err=True)
    if result.symbol is not None:
        click.echo(f"  symbol {result.symbol} for every row", err=True)


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
