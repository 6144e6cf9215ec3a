"""``lake demo``: the whole story on bundled, seeded synthetic data (no network, documented as synthetic).

publish data and an alert feed -> build a projection -> create and execute an SMA sweep and an alert replay
-> show metrics -> draw the lineage of a result -> plot equity -> reproduce a result from its hash.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

SMA_SPEC = """# SMA-cross sweep on the demo data (synthetic prices)
name = "demo-sma"
kind = "backtest"
seed = 7

[inputs]
ohlcv = ["demo/ohlcv-1m"]

[strategy]
name = "sma_cross"
direction = "long"

[execution]
cash = 10000.0
fill = "next_open"
fee_bps = 5.0
units = "fractional"

[sweep]
fast = [10, 30]
slow = [60, 240]
"""

ALERT_SPEC = """# Replay the demo alert feed with a take-profit ladder, a stop and a time limit
name = "demo-alerts"
kind = "backtest"
seed = 7

[inputs]
ohlcv = ["demo/ohlcv-1m"]
alerts = ["demo/alerts"]

[strategy]
name = "alert_replay"
take_profit = [0.004, 0.008]
stop_loss = 0.004
max_hold_bars = 120
size = 0.2
max_concurrent = 4

[execution]
cash = 10000.0
fee_bps = 5.0
"""


def run_demo(path: str | None, *, as_json: bool = False) -> None:
    from artifact_lake.artifact_store.samples import resample_ohlcv, synthetic_alerts, synthetic_ohlcv
    from artifact_lake.cli._render import (
        artifacts_table,
        console,
        emit_json,
        lineage_tree,
        reproduce_report,
        run_summary,
    )
    from artifact_lake.experiments import create, execute, parse_spec, reproduce
    from artifact_lake.experiments.report import plot
    from artifact_lake.projections import Lake

    root = Path(path) if path else Path(tempfile.mkdtemp(prefix="artifact-lake-demo-"))
    c = console()
    say = (lambda *_: None) if as_json else c.rule
    with Lake.open(root) as lk:
        say("1. publish seeded synthetic data: 3 symbols x 3 days of 1-minute bars, an alert feed, hourly bars")
        minute = synthetic_ohlcv(("BTC/USDT", "ETH/USDT", "SOL/USDT"), bars=3 * 1440, seed=7)
        raw = lk.publish(minute, "ohlcv", name="demo/ohlcv-1m", meta={"source": "synthetic", "timeframe": "1m"})
        alerts = lk.publish(
            synthetic_alerts(minute, 60, seed=11), "alerts", name="demo/alerts", meta={"source": "synthetic"}
        )
        hourly = lk.publish(
            resample_ohlcv(minute, 3600),
            "ohlcv",
            name="demo/ohlcv-1h",
            inputs=[raw.id],
            meta={"source": "synthetic", "timeframe": "1h"},
        )
        if not as_json:
            artifacts_table(lk.find(meta={"source": "synthetic"}))

        say("2. build the ohlcv projection (DuckDB) and look at it")
        proj = lk.projection("ohlcv", {"ohlcv": [raw.id]})
        counts = proj.arrow(
            "SELECT symbol, count(*) AS bars, min(close) AS low, max(close) AS high FROM ohlcv GROUP BY ALL ORDER BY 1"
        )
        if not as_json:
            from artifact_lake.cli._render import arrow_table

            c.print(f"projection {proj.key[:12]} ({'reused' if proj.reused else 'built'})")
            arrow_table(counts)

        specs = root / "specs"
        specs.mkdir(exist_ok=True)
        (specs / "sma.toml").write_text(SMA_SPEC)
        (specs / "alerts.toml").write_text(ALERT_SPEC)
        say("3. create and execute an SMA-cross sweep (4 combinations x 3 symbols)")
        sma, _ = create(lk, parse_spec(SMA_SPEC))
        sma_run = execute(lk, sma.id)
        if not as_json:
            run_summary(lk, sma_run)

        say("4. create and execute an alert replay (take-profit ladder, stop-loss, max hold, 4 positions at most)")
        rep, _ = create(lk, parse_spec(ALERT_SPEC))
        rep_run = execute(lk, rep.id)
        if not as_json:
            run_summary(lk, rep_run)

        metrics_id = sma_run.results["metrics"]
        say(f"5. lineage of the sweep's metrics {metrics_id[:12]}")
        lin = lk.lineage(metrics_id, depth=3)
        if not as_json:
            lineage_tree(lin, 3)

        say("6. plot equity and drawdown")
        drawn = plot(lk, sma.id, str(root / "demo-sma.png"))
        png, lines = drawn.out, len(drawn.drawn)
        if not as_json:
            c.print(f"wrote {png} ({lines} curves)")

        say(f"7. reproduce {metrics_id[:12]} from its hash")
        report = reproduce(lk, metrics_id)
        if not as_json:
            reproduce_report(report)
        if as_json:
            emit_json(
                {
                    "lake": str(lk.root),
                    "published": [raw.to_dict(), alerts.to_dict(), hourly.to_dict()],
                    "projection": proj.key,
                    "experiments": {
                        "sma": {"id": sma.id, "run": sma_run.id, "results": sma_run.results},
                        "alerts": {"id": rep.id, "run": rep_run.id, "results": rep_run.results},
                    },
                    "lineage": lin.to_dict(),
                    "plot": str(png),
                    "reproduce": report.to_dict(),
                }
            )
            return
        say("done")
    click.echo(f"The demo lake is at {root} (specs in {specs}). Try next:")
    for cmd in (
        f"experiments --lake {root} list",
        f"experiments --lake {root} show demo-sma",
        f"experiments --lake {root} compare demo-sma demo-alerts",
        f"lake --lake {root} lineage {metrics_id[:12]} --format mermaid",
        f"lake --lake {root} reproduce {metrics_id[:12]}",
        f'lake --lake {root} query --spec ohlcv --input ohlcv=demo/ohlcv-1m "SELECT * FROM gaps"',
        f"lake --lake {root} verify",
    ):
        click.echo(f"  {cmd}")
