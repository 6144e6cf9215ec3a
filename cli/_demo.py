"""``lake demo``: the whole story on bundled, seeded synthetic data (no network, documented as synthetic).

publish data and an alert feed -> build a projection -> create and execute an SMA sweep and an alert replay
-> show metrics -> draw the lineage of a result -> plot equity -> reproduce a result from its hash -> write
a plugin strategy, register it as ``--plugins`` does, sweep it, reproduce it, edit it and show reproduce's
code diff (a code change is part of the story: the demo still exits 0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

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


PLUGIN_FILE = "demo_strategies.py"
PLUGIN = '''"""A researcher's own strategy, as `lake demo` writes it: Bollinger bands on a z-score indicator."""

import numpy as np

from artifact_lake.sim import Bars, indicator, strategy


@indicator
def demo_zscore(bars: Bars, n: int = 20) -> np.ndarray:
    """Distance of the close from its n-bar mean, in standard deviations (NaN before n bars)."""
    c = bars.close
    out = np.full(len(c), np.nan)
    if len(c) >= n:
        w = np.lib.stride_tricks.sliding_window_view(c, n)
        sd = w.std(axis=1)
        out[n - 1 :] = np.where(sd > 0, (c[n - 1 :] - w.mean(axis=1)) / np.where(sd > 0, sd, 1.0), 0.0)
    return out


@strategy
def demo_bollinger(bars: Bars, n: int = 20, k: float = 2.0) -> np.ndarray:
    """Long below the lower band (z < -k), flat again at the mean (z > 0)."""
    z = demo_zscore(bars, n)
    out = np.full(len(z), np.nan)
    out[z < -k] = 1.0
    out[z > 0] = 0.0
    return out
'''
PLUGIN_EDIT = ("out[z > 0] = 0.0", "out[z > 0.5] = 0.0")

PLUGIN_SPEC = """# A sweep of the demo plugin (demo_strategies.py, registered with --plugins)
name = "demo-bollinger"
kind = "backtest"
seed = 7

[inputs]
ohlcv = ["demo/ohlcv-1m"]

[strategy]
name = "demo_bollinger"
n = 30

[execution]
cash = 10000.0
fee_bps = 5.0

[sweep]
k = [1.5, 2.0, 2.5]
"""


def _plugin_story(lk: Any, root: Path, say: Any, as_json: bool) -> dict[str, Any]:
    """Steps 8-10: write, register (the path ``--plugins`` takes), sweep, reproduce, edit, show the code diff."""
    from artifact_lake.cli._render import console, reproduce_report, run_summary
    from artifact_lake.experiments import CodeChanged, create, execute, parse_spec, plugins, reproduce

    c = console()
    file = root / PLUGIN_FILE
    file.write_text(PLUGIN)
    (root / "specs" / "bollinger.toml").write_text(PLUGIN_SPEC)
    ctx = click.get_current_context(silent=True)
    given = list(((ctx.find_root().obj or {}) if ctx is not None else {}).get("plugins") or [])
    before = plugins._configured
    plugins.configure([*given, str(file)])  # what `--plugins FILE` does (cli/_experiments_cmds.use_plugins)
    try:
        plugins.load()
        say(f"8. register your own strategy ({file.name}: demo_bollinger on the indicator demo_zscore) and sweep it")
        exp, _ = create(lk, parse_spec(PLUGIN_SPEC))
        run = execute(lk, exp.id)
        if not as_json:
            run_summary(lk, run)
            checked = run.checks.get("plugins", {})
            c.print(f"code hash {run.plugins['demo_bollinger']['hash'][:12]}; look-ahead guard checked {checked}")
        metrics_id = run.results["metrics"]
        say(f"9. reproduce the plugin's result {metrics_id[:12]} (the lake kept its code)")
        same = reproduce(lk, metrics_id)
        if not as_json:
            reproduce_report(same)
        say(f"10. edit {file.name} ({PLUGIN_EDIT[0]!r} -> {PLUGIN_EDIT[1]!r}) and reproduce again")
        file.write_text(file.read_text().replace(*PLUGIN_EDIT))
        try:
            reproduce(lk, metrics_id)
        except CodeChanged as exc:
            changes, message = exc.changes, str(exc)
        else:  # pragma: no cover - the edit always changes the code hash
            changes, message = [], "the code did not change"
        if not as_json:
            c.print(f"reproduce refuses (exit 1 on the CLI): {message}")
            for ch in changes:
                if not ch["diff"].startswith("(same files as"):
                    c.print(ch["diff"], markup=False, highlight=False)
        return {
            "file": str(file),
            "id": exp.id,
            "run": run.id,
            "results": run.results,
            "code": {name: rec["hash"] for name, rec in run.plugins.items()},
            "checks": run.checks,
            "reproduce": same.to_dict(),
            "edited": {"refused": bool(changes), "message": message, "changes": changes},
        }
    finally:
        plugins.unload(str(file))  # the demo's names do not stay registered in this process
        plugins.configure(before)


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
        plugin = _plugin_story(lk, root, say, as_json)
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
                    "plugin": plugin,
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
        f"experiments --lake {root} --plugins {root / PLUGIN_FILE} reproduce {plugin['results']['metrics'][:12]}",
        f"experiments --lake {root} code demo-bollinger --out {root / 'recorded'}",
        f'lake --lake {root} query --spec ohlcv --input ohlcv=demo/ohlcv-1m "SELECT * FROM gaps"',
        f"lake --lake {root} verify",
    ):
        click.echo(f"  {cmd}")
