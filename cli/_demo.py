"""``lake demo``: the whole story on bundled, seeded synthetic data (no network)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


def run_demo(path: str | None, *, as_json: bool = False) -> None:
    from artifact_store import Lake
    from artifact_store.samples import resample_ohlcv, synthetic_ohlcv
    from cli._render import artifacts_table, console, emit_json, lineage_tree, show_artifact

    root = Path(path) if path else Path(tempfile.mkdtemp(prefix="artifact-lake-demo-"))
    c = console()
    say = (lambda *_: None) if as_json else c.rule
    with Lake.open(root) as lk:
        say("1. publish a seeded synthetic 1-minute OHLCV sample (2 symbols, synthetic prices)")
        minute = synthetic_ohlcv(("BTC/USDT", "ETH/USDT"), bars=2_880, seed=7)
        raw = lk.publish(minute, "ohlcv", name="demo/ohlcv-1m", meta={"source": "synthetic", "timeframe": "1m"})
        if not as_json:
            c.print(f"{raw.id}  ({raw.rows:,} rows, {'deduplicated' if raw.deduplicated else 'stored'})")

        say("2. derive hourly bars from it (lineage edge 1m -> 1h)")
        hourly = lk.publish(
            resample_ohlcv(minute, 3600),
            "ohlcv",
            name="demo/ohlcv-1h",
            inputs=[raw.id],
            meta={"source": "synthetic", "timeframe": "1h"},
        )
        if not as_json:
            c.print(f"{hourly.id}  ({hourly.rows:,} rows)")

        found = lk.find(meta={"source": "synthetic"})
        art = lk.get(hourly.id)
        lin = lk.lineage(hourly.id)
        if as_json:
            emit_json(
                {
                    "lake": str(lk.root),
                    "published": [raw.to_dict(), hourly.to_dict()],
                    "find": [a.to_dict() for a in found],
                    "lineage": lin.to_dict(),
                }
            )
            return
        say("3. lake find --meta source=synthetic")
        artifacts_table(found)
        say(f"4. lake show {hourly.id[:12]}")
        show_artifact(art, lk.parents(art.id), lk.children(art.id), lk.runs_of(art.id))
        say(f"5. lake lineage {hourly.id[:12]}")
        lineage_tree(lin, None)
        say("done")
    click.echo(f"The demo lake is at {root}. Try next:")
    for cmd in (
        f"lake --lake {root} find --type ohlcv",
        f"lake --lake {root} cat demo/ohlcv-1h --limit 5",
        f"lake --lake {root} lineage demo/ohlcv-1h --format mermaid",
        f"lake --lake {root} verify",
    ):
        click.echo(f"  {cmd}")
