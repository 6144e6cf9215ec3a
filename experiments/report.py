"""Views over experiment results: compare metrics side by side, plot equity and drawdown."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import tracker
from .errors import NotFoundExperiment

if TYPE_CHECKING:
    import pyarrow as pa

    from artifact_lake.projections import Lake


def latest_run(lake: Lake, ref: str) -> tuple[tracker.Experiment, tracker.Run]:
    exp = tracker.get_experiment(lake.db, ref)
    run = next((r for r in tracker.runs_of(lake.db, exp.id) if r.status == "succeeded"), None)
    if run is None:
        raise NotFoundExperiment(
            f"experiment {exp.name!r} has no succeeded run (run: experiments execute {exp.id[:12]})"
        )
    return exp, run


def compare(lake: Lake, refs: list[str]) -> pa.Table:
    """One row per (experiment, combination, symbol) with the main metrics and the swept parameters."""
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for ref in refs:
        exp, run = latest_run(lake, ref)
        for m in lake.read(run.results["metrics"]).to_pylist():
            params = {k: m[k] for k in exp.spec.swept}
            rows.append(
                {
                    "experiment": exp.name,
                    "combo": m["combo"],
                    "symbol": m["symbol"],
                    "params": ", ".join(f"{k}={v}" for k, v in params.items()),
                    "total_return": m["total_return"],
                    "sharpe": m["sharpe"],
                    "max_drawdown": m["max_drawdown"],
                    "n_trades": m["n_trades"],
                    "final_equity": m["final_equity"],
                }
            )
    return pa.Table.from_pylist(rows)


def plot(lake: Lake, ref: str, out: str, *, max_lines: int = 12) -> tuple[Path, int]:
    """Equity (top) and drawdown (bottom) per combination and symbol of the latest run, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pyarrow.compute as pc

    exp, run = latest_run(lake, ref)
    eq = lake.read(run.results["equity"])
    metrics = {(m["combo"], m["symbol"]): m for m in lake.read(run.results["metrics"]).to_pylist()}
    keys = sorted(
        {(c, s) for c, s in zip(eq.column("combo").to_pylist(), eq.column("symbol").to_pylist(), strict=True)}
    )
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for ax in (top, bottom):
        ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])  # distinct colours, 20 curves
    for combo, symbol in keys[:max_lines]:
        part = eq.filter(pc.and_(pc.equal(eq.column("combo"), combo), pc.equal(eq.column("symbol"), symbol)))
        ts = part.column("ts").to_numpy(zero_copy_only=False)
        values = part.column("equity").to_numpy()
        peak = np.maximum.accumulate(values)
        params = ", ".join(f"{k}={metrics[(combo, symbol)][k]}" for k in exp.spec.swept)
        label = f"{symbol} {params}".strip()
        top.plot(ts, values, linewidth=1, label=label)
        bottom.plot(ts, values / peak - 1.0, linewidth=0.8)
    top.set_title(f"{exp.name} (run {run.id[:8]}): equity")
    top.set_ylabel("equity")
    bottom.set_ylabel("drawdown")
    if keys:
        top.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, min(len(keys), max_lines)
