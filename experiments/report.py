"""Views over experiment results: compare metrics side by side, plot what a run produced.

* :func:`compare` gives one row per (experiment, combination, symbol) with every parameter of the strategy
  (swept and fixed, defaults included) and the main metrics as raw numbers (NaN stays NaN; the CLI prints
  it as ``null`` in JSON and ``n/a`` for people).
* :func:`plot` draws a backtest as one panel per symbol (equity above, drawdown in percent below, one colour
  per combination) and a train experiment as its training curve plus the validation split: policy vs
  buy-and-hold vs flat. It draws at most ``max_lines`` curves, chosen by total return, and its
  :class:`PlotReport` names every curve it left out: nothing is dropped silently.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import tracker
from .errors import NotFoundExperiment

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from artifact_lake.projections import Lake

PORTFOLIO = "*"
"""The symbol of alert-replay results: the whole portfolio, shown as ``portfolio``."""
TRAIN_LABELS = ("policy", "buy_and_hold", "flat")
"""The strategies of a train experiment's validation metrics, in combo order."""
COMPARE_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades", "final_equity")


def latest_run(lake: Lake, ref: str) -> tuple[tracker.Experiment, tracker.Run]:
    exp = tracker.get_experiment(lake.db, ref)
    run = next((r for r in tracker.runs_of(lake.db, exp.id) if r.status == "succeeded"), None)
    if run is None:
        raise NotFoundExperiment(
            f"experiment {exp.name!r} has no succeeded run (run: experiments execute {exp.id[:12]})"
        )
    return exp, run


def symbol_label(symbol: str) -> str:
    """``portfolio`` for alert replay's whole-portfolio symbol ``*``; any other symbol as it is."""
    return "portfolio" if symbol == PORTFOLIO else symbol


def format_percent(value: float | None) -> str:
    """``+533.41%``, as ``experiments show`` prints returns; ``n/a`` for a missing or non-finite value."""
    return f"{value:+.2%}" if _finite(value) else "n/a"


def format_number(value: float | None) -> str:
    """``1,234.57``; ``n/a`` for a missing or non-finite value."""
    return f"{value:,.2f}" if _finite(value) else "n/a"


def format_params(params: dict[str, Any], sep: str = ", ") -> str:
    """``fast=5, slow=30, stop_loss=none, require_coverage=false``: parameters as a spec would write them."""

    def one(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list | tuple):
            return "[" + ", ".join(one(x) for x in v) + "]"
        return str(v)

    return sep.join(f"{k}={one(v)}" for k, v in params.items())


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def strategy_params(exp: tracker.Experiment, combo: int) -> dict[str, Any]:
    """Every parameter behind combination ``combo``: the swept and written ones, then the strategy's defaults.

    A train experiment's parameters are its ``env``, ``reward`` and ``trainer`` settings as written (they
    describe the policy, so only the ``policy`` row carries them; see :func:`compare`).
    """
    from .strategies import strategy_defaults

    doc = exp.spec.doc
    if exp.kind == "train":
        if doc.get("sweep"):  # a trial sweep: trial ``combo``'s own settings
            from .train import trial_doc

            doc = trial_doc(exp.spec, combo, exp.spec.combos()[combo])
        settings = {
            f"{sec}.{k}": v for sec in ("env", "reward", "trainer") for k, v in sorted(doc.get(sec, {}).items())
        }
        return {"seed": doc["seed"], **settings} if exp.spec.doc.get("sweep") else settings
    chosen = exp.spec.combos()[combo]
    params = {k: v for k, v in chosen.items() if k not in ("name", "symbols")}
    for key, default in strategy_defaults(str(chosen.get("name"))).items():
        params.setdefault(key, default)
    return dict(sorted(params.items()))


def _strategy_label(exp: tracker.Experiment, m: dict[str, Any]) -> str:
    if exp.kind == "train":
        return str(m.get("strategy") or TRAIN_LABELS[int(m["combo"])])
    return str(exp.spec.doc.get("strategy", {}).get("name", ""))


def compare(lake: Lake, refs: list[str], runs: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (run, combination, symbol): of each experiment's latest succeeded run (``refs``), then of
    each run named in ``runs`` (ids or prefixes: any succeeded run, such as two runs of one experiment before
    and after a code change).

    Each row holds the experiment, run, combo, symbol (``*`` is a portfolio), strategy (for a train
    experiment: policy, buy_and_hold or flat), ``params`` (every parameter, swept and fixed), ``swept`` (the
    names of the swept ones) and the metrics of :data:`COMPARE_METRICS` as stored.
    """
    chosen = [latest_run(lake, ref) for ref in refs]
    for run_id in runs or []:
        run = tracker.get_run(lake.db, run_id)
        if run.status != "succeeded" or "metrics" not in run.results:
            raise NotFoundExperiment(f"run {run.id[:12]} is {run.status}: only succeeded runs have results")
        chosen.append((tracker.get_experiment(lake.db, run.experiment), run))
    rows: list[dict[str, Any]] = []
    for exp, run in chosen:
        swept = exp.spec.swept
        for m in lake.read(run.results["metrics"]).to_pylist():
            label = _strategy_label(exp, m)
            params = strategy_params(exp, int(m["combo"])) if exp.kind != "train" or label == "policy" else {}
            rows.append(
                {
                    "experiment": exp.name,
                    "experiment_id": exp.id,
                    "run": run.id,
                    "combo": m["combo"],
                    "symbol": m["symbol"],
                    "strategy": label,
                    "params": params,
                    "swept": swept,
                    **{k: m.get(k) for k in COMPARE_METRICS},
                }
            )
    return rows


@dataclass(frozen=True)
class Curve:
    """One curve of a plot: a (combination, symbol) of a backtest, or a strategy of a train experiment's
    validation."""

    combo: int
    symbol: str
    """As stored: ``*`` is alert replay's whole portfolio."""
    name: str
    """The parameters that tell it apart (``fast=5 slow=30``), or the strategy (``policy``); may be empty."""
    total_return: float
    sharpe: float

    @property
    def label(self) -> str:
        """``#3 fast=10 slow=60 on BTC/USDT``: what a person reads in the legend and the CLI."""
        name = f" {self.name}" if self.name else ""
        return f"#{self.combo}{name} on {symbol_label(self.symbol)}"

    def legend(self, width: int = 0, note: str = "") -> str:
        """``#3 fast=10 slow=60   +5.58%  Sharpe   1.89``, the name padded to ``width`` (monospace columns)."""
        ret, sharpe = format_percent(self.total_return), format_number(self.sharpe)
        return f"{self.short:<{width}}  {ret:>9}  Sharpe {sharpe:>6}{note}"

    @property
    def short(self) -> str:
        """The label without the symbol: ``#3 fast=10 slow=60``, or a train strategy's name."""
        if self.name in TRAIN_LABELS:
            return self.name
        return f"#{self.combo} {self.name}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "combo": self.combo,
            "symbol": self.symbol,
            "label": self.label,
            "total_return": self.total_return,
            "sharpe": self.sharpe,
        }


@dataclass(frozen=True)
class PlotReport:
    """What :func:`plot` drew: the PNG, the curves drawn and those left out, and how they were chosen."""

    out: Path
    kind: str
    drawn: list[Curve]
    left_out: list[Curve] = field(default_factory=list)
    selection: str = "every curve"
    """How the drawn curves were chosen, in words."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "kind": self.kind,
            "lines": len(self.drawn),
            "total": len(self.drawn) + len(self.left_out),
            "selection": self.selection,
            "drawn": [c.to_dict() for c in self.drawn],
            "left_out": [c.to_dict() for c in self.left_out],
        }


def _rank_key(c: Curve) -> tuple[bool, float, int]:
    return (not _finite(c.total_return), -c.total_return if _finite(c.total_return) else 0.0, c.combo)


def choose_curves(curves: list[Curve], max_lines: int) -> tuple[list[Curve], list[Curve], str]:
    """(drawn, left out, selection in words): all curves when they fit, else the best by total return on
    each symbol, ``max_lines`` split as evenly as the symbols allow (earlier symbols get the remainder)."""
    if max_lines < 1:
        raise ValueError("max_lines must be at least 1")
    if len(curves) <= max_lines:
        return list(curves), [], f"all {len(curves)} curves"
    symbols = sorted({c.symbol for c in curves})
    by_symbol = {s: sorted((c for c in curves if c.symbol == s), key=_rank_key) for s in symbols}
    quota = {s: max_lines // len(symbols) + (i < max_lines % len(symbols)) for i, s in enumerate(symbols)}
    # a symbol with fewer curves than its share hands the rest on to the others
    spare = sum(max(0, quota[s] - len(by_symbol[s])) for s in symbols)
    for s in symbols:
        quota[s] = min(quota[s], len(by_symbol[s]))
    for s in symbols:
        extra = min(spare, len(by_symbol[s]) - quota[s])
        quota[s] += extra
        spare -= extra
    keep = {(c.combo, c.symbol) for s in symbols for c in by_symbol[s][: quota[s]]}
    drawn = [c for c in curves if (c.combo, c.symbol) in keep]
    left = [c for c in curves if (c.combo, c.symbol) not in keep]
    shares = sorted(set(quota.values()))
    each = f"the {shares[0]} best" if len(shares) == 1 else "the best"
    where = "" if len(symbols) == 1 else " on each symbol"
    return drawn, left, f"{len(drawn)} of {len(curves)} curves: {each} by total return{where} (--max-lines)"


def plot(lake: Lake, ref: str, out: str, *, max_lines: int = 12) -> PlotReport:
    """A PNG of the latest succeeded run of experiment ``ref``; see the module docstring for what it shows.

    Example::

        report = plot(lake, "sma", "sma.png", max_lines=8)
        print(report.selection, [c.label for c in report.left_out])
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp, run = latest_run(lake, ref)
    path = Path(out)
    if exp.kind == "train" and exp.spec.doc.get("sweep"):
        fig, report = _plot_trials(lake, exp, run, path, max_lines)
    elif exp.kind == "train":
        fig, report = _plot_train(lake, exp, run, path)
    else:
        fig, report = _plot_backtest(lake, exp, run, path, max_lines)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return report


# ---- drawing -------------------------------------------------------------------------------------------------

_STYLES = ("-", "--", ":", "-.")


def _style(i: int) -> dict[str, Any]:
    """Colour and line style of the ``i``-th combination: tab10's ten distinct hues, then dashed, dotted..."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {"color": cmap(i % 10), "linestyle": _STYLES[(i // 10) % len(_STYLES)]}


def _time_axis(ax: Axes, ts: np.ndarray) -> None:
    """Dates in UTC with the year; hours and minutes when the data spans a few days or less."""
    import datetime as dt

    import matplotlib.dates as mdates
    import numpy as np

    class Spaced(mdates.AutoDateLocator):
        # day ticks restart at each month's first day (..., Feb 29, Mar 1, ...): drop a tick that
        # crowds the one before it, so labels never overlap
        def __call__(self) -> Any:
            ticks = np.asarray(super().__call__())  # type: ignore[no-untyped-call]
            if len(ticks) < 3:
                return ticks
            step = float(np.median(np.diff(ticks)))
            kept = [ticks[0]]
            for t in ticks[1:]:
                if t - kept[-1] >= 0.75 * step:
                    kept.append(t)
            return np.asarray(kept)

    span = (ts.max() - ts.min()) / np.timedelta64(1, "D") if len(ts) else 0.0
    fmt = "%Y-%m-%d" if span > 4 else "%Y-%m-%d\n%H:%M"
    ax.xaxis.set_major_locator(Spaced(minticks=3, maxticks=8, tz=dt.UTC))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=dt.UTC))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)")


def _drawdown(values: np.ndarray) -> np.ndarray:
    import numpy as np

    peak = np.maximum.accumulate(values)
    out: np.ndarray = np.where(peak > 0, values / np.where(peak > 0, peak, 1.0) - 1.0, 0.0)
    return out


def _legend(ax: Axes, title: str, mono: bool = True) -> None:
    """The legend outside the axes, on the right; monospace keeps the return and Sharpe columns aligned."""
    prop = {"family": "monospace", "size": 8} if mono else {"size": 8}
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), prop=prop, title=title or None, title_fontsize=8,
        alignment="left", frameon=False,
    )  # fmt: skip


def _percent_axis(ax: Axes) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


def _money_axis(ax: Axes) -> None:
    from matplotlib.ticker import StrMethodFormatter

    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _fixed_text(exp: tracker.Experiment) -> str:
    strategy = str(exp.spec.doc.get("strategy", {}).get("name", ""))
    shown = format_params({k: v for k, v in strategy_params(exp, 0).items() if k not in exp.spec.swept})
    return f"{strategy}" + (f" ({shown})" if shown else "")


def _left_out_text(left: list[Curve], limit: int = 8) -> str:
    names = ", ".join(c.label for c in left[:limit])
    more = f" and {len(left) - limit} more" if len(left) > limit else ""
    return f"left out {len(left)}: {names}{more}"


def _plot_backtest(
    lake: Lake, exp: tracker.Experiment, run: tracker.Run, path: Path, max_lines: int
) -> tuple[Figure, PlotReport]:
    import matplotlib.pyplot as plt
    import numpy as np
    import pyarrow.compute as pc

    swept = exp.spec.swept
    curves = [
        Curve(
            combo=int(m["combo"]),
            symbol=str(m["symbol"]),
            name=format_params({k: m[k] for k in swept}, " "),
            total_return=float(m["total_return"]),
            sharpe=float(m["sharpe"]),
        )
        for m in lake.read(run.results["metrics"]).to_pylist()
    ]
    have = {c[0] for c in lake.get(run.results["equity"]).columns}
    exposure = "gross_exposure" in have  # a portfolio: gross and net exposure under the drawdown
    columns = ["combo", "symbol", "ts", "equity"] + (["gross_exposure", "net_exposure"] if exposure else [])
    eq = lake.read(run.results["equity"], columns=columns)
    kept = eq.group_by(["combo", "symbol"]).aggregate([])  # a large sweep keeps equity for its [results] only
    present = set(zip(kept.column("combo").to_pylist(), kept.column("symbol").to_pylist(), strict=True))
    with_equity = [c for c in curves if (c.combo, c.symbol) in present]
    drawn, left, selection = choose_curves(with_equity, max_lines)
    if len(with_equity) < len(curves):
        selection += f" (equity kept for {len(with_equity)} of {len(curves)} by the spec's [results])"
    symbols = sorted({c.symbol for c in drawn})
    colour_of = {combo: i for i, combo in enumerate(sorted({c.combo for c in drawn}))}
    n = max(len(symbols), 1)
    rows = 3 if exposure else 2
    fig = plt.figure(figsize=(13, 1.3 + (6.0 if exposure else 4.6) * n), layout="constrained")
    grid = fig.add_gridspec(rows * n, 1, height_ratios=([3, 1.3, 1.3] if exposure else [3, 1.3]) * n)
    first: Axes | None = None
    for i, symbol in enumerate(symbols):
        top = fig.add_subplot(grid[rows * i], sharex=first)
        first = first or top
        bottom = fig.add_subplot(grid[rows * i + 1], sharex=first)
        under = fig.add_subplot(grid[rows * i + 2], sharex=first) if exposure else None
        mask = pc.equal(eq.column("symbol"), symbol)
        part = eq.filter(mask)
        mine = sorted((c for c in drawn if c.symbol == symbol), key=_rank_key)
        width = max(len(c.short) for c in mine)
        seen: list[tuple[Curve, np.ndarray]] = []
        for c in mine:
            one = part.filter(pc.equal(part.column("combo"), c.combo))
            ts = one.column("ts").to_numpy(zero_copy_only=False)
            values = one.column("equity").to_numpy()
            # a curve drawn exactly over an earlier one would vanish: say so in the legend
            twin = next((f"  (same as #{o.combo})" for o, v in seen if np.array_equal(v, values)), "")
            seen.append((c, values))
            style = _style(colour_of[c.combo])
            top.plot(ts, values, linewidth=1.2, label=c.legend(width, twin), **style)
            bottom.plot(ts, _drawdown(values), linewidth=0.9, **style)
            if under is not None:
                under.plot(ts, one.column("gross_exposure").to_numpy(), linewidth=0.9, **style)
                under.plot(ts, one.column("net_exposure").to_numpy(), linewidth=0.9, alpha=0.6, **style)
        if under is not None:
            under.set_ylabel("exposure\n(gross, net)")
            _percent_axis(under)
            under.grid(alpha=0.3)
            bottom.tick_params(labelbottom=False)
        last = under if under is not None else bottom
        shown = sum(c.symbol == symbol for c in drawn)
        total = sum(c.symbol == symbol for c in curves)
        top.set_title(f"{symbol_label(symbol)}: equity ({shown} of {total} curves)", loc="left", fontsize=10)
        top.set_ylabel("equity")
        _money_axis(top)
        top.grid(alpha=0.3)
        bottom.set_ylabel("drawdown")
        _percent_axis(bottom)
        bottom.grid(alpha=0.3)
        top.tick_params(labelbottom=False)
        if i < n - 1:
            last.tick_params(labelbottom=False)
        else:
            _time_axis(last, ts)
        _legend(top, "combination, total return, Sharpe (best first)")
    title = textwrap.fill(f"{exp.name} (run {run.id[:8]}): {_fixed_text(exp)}", 150)
    fig.suptitle(title, fontsize=11)
    note = f"drawn: {selection}" + (f"; {_left_out_text(left)}" if left else "")
    fig.supxlabel(textwrap.fill(note, 190), x=0.01, ha="left", fontsize=8)
    report = PlotReport(out=path, kind=exp.kind, drawn=drawn, left_out=left, selection=selection)
    return fig, report


def validation_equity(lake: Lake, exp: tracker.Experiment, run: tracker.Run) -> dict[str, Any]:
    """Per-bar validation equity of the policy, buy-and-hold and flat, computed again from what the run
    published (the policy's tensors and the frozen bars), as :mod:`.train` computed its metrics.

    Returns ``ts`` (all bars), ``close`` (all bars), ``split`` (index of the first validation bar),
    ``symbol`` and ``equity`` ({strategy: (ts, values)}) of the validation bars.
    """
    from .train import _constant, _market, load_policy, train_bars

    agent, _, _ = load_policy(lake, run.results["policy"])  # first: without torch, one line naming the extra
    from artifact_lake.sim.policy import backtest

    symbol, market = _market(train_bars(lake, exp.spec), exp.spec)
    start, _, end = market.start_range("validation")
    results = {
        "policy": backtest(agent, market, start, end),
        "buy_and_hold": _constant(market, start, end, 1.0),
        "flat": _constant(market, start, end, 0.0),
    }
    ts = market.bars.ts.astype("datetime64[us]")
    return {
        "symbol": symbol,
        "ts": ts,
        "close": market.bars.close,
        "split": start,
        "equity": {k: (ts[start : end + 1], r.equity) for k, r in results.items()},
    }


def _plot_train(lake: Lake, exp: tracker.Experiment, run: tracker.Run, path: Path) -> tuple[Figure, PlotReport]:
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = {str(m["strategy"]): m for m in lake.read(run.results["metrics"]).to_pylist()}
    curve = lake.read(run.results["training_curve"]).to_pydict()
    val = validation_equity(lake, exp, run)
    ts, split = val["ts"], int(val["split"])
    fig = plt.figure(figsize=(13, 12), layout="constrained")
    grid = fig.add_gridspec(4, 1, height_ratios=[2.2, 2, 3, 1.3])
    learn = fig.add_subplot(grid[0])
    steps = np.asarray(curve["steps"], dtype=float)
    ret = np.asarray(curve["episodic_return"], dtype=float)
    learn.plot(steps, ret, marker="o", markersize=3, linewidth=1.2, color="tab:blue", label="mean episodic return")
    learn.set_xlabel("environment steps")
    learn.set_ylabel("episodic return")
    learn.grid(alpha=0.3)
    missing = int(np.sum(~np.isfinite(ret)))
    note = f" ({missing} updates finished no episode)" if missing else ""
    learn.set_title(f"training curve: {len(steps)} updates{note}", loc="left", fontsize=10)
    _legend(learn, "", mono=False)

    price = fig.add_subplot(grid[1])
    price.plot(ts, val["close"], linewidth=0.9, color="0.25", label="close")
    price.axvspan(ts[0], ts[split], color="tab:blue", alpha=0.07, label="train")
    price.axvspan(ts[split], ts[-1], color="tab:orange", alpha=0.12, label="validation")
    price.axvline(ts[split], color="tab:red", linewidth=1.0, linestyle="--", label=f"split {_when(ts[split])}")
    price.set_ylabel("close")
    price.set_title(f"{val['symbol']}: train / validation split", loc="left", fontsize=10)
    price.grid(alpha=0.3)
    _time_axis(price, ts)
    _legend(price, "", mono=False)

    top = fig.add_subplot(grid[2])
    bottom = fig.add_subplot(grid[3], sharex=top)
    drawn: list[Curve] = []
    width = max(len(n) for n in TRAIN_LABELS)
    colours = {"policy": "tab:blue", "buy_and_hold": "tab:orange", "flat": "0.45"}
    for i, name in enumerate(TRAIN_LABELS):
        m = metrics.get(name, {})
        c = Curve(i, val["symbol"], name, float(m.get("total_return", math.nan)), float(m.get("sharpe", math.nan)))
        drawn.append(c)
        vts, values = val["equity"][name]
        style: dict[str, Any] = {"color": colours[name], "linestyle": "--" if name == "flat" else "-"}
        top.plot(vts, values, linewidth=1.4 if name == "policy" else 1.1, label=c.legend(width), **style)
        bottom.plot(vts, _drawdown(values), linewidth=0.9, **style)
    _equity_axes(top, bottom, val["equity"]["policy"][0], f"{len(ts) - split:,} bars from {_when(ts[split])}")
    _legend(top, "strategy, total return, Sharpe")
    fig.suptitle(f"{exp.name} (run {run.id[:8]}): PPO policy on {val['symbol']}", fontsize=11)
    return fig, PlotReport(out=path, kind=exp.kind, drawn=drawn, selection="policy, buy_and_hold and flat")


def _equity_axes(top: Axes, bottom: Axes, ts: np.ndarray, what: str) -> None:
    """The validation panels: equity above (money), drawdown below (percent), one time axis."""
    top.set_title(f"validation ({what}): equity", loc="left", fontsize=10)
    top.set_ylabel("equity")
    _money_axis(top)
    top.grid(alpha=0.3)
    top.tick_params(labelbottom=False)
    bottom.set_ylabel("drawdown")
    _percent_axis(bottom)
    bottom.grid(alpha=0.3)
    _time_axis(bottom, ts)


def _plot_trials(
    lake: Lake, exp: tracker.Experiment, run: tracker.Run, path: Path, max_lines: int
) -> tuple[Figure, PlotReport]:
    """A trial sweep: every trial's training curve, and its policy's validation equity beside buy-and-hold
    (at most ``max_lines`` trials, the best by validation total return; the rest named as left out)."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = lake.read(run.results["metrics"]).to_pylist()
    curves = [
        Curve(int(m["combo"]), str(m["symbol"]), "policy", float(m["total_return"]), float(m["sharpe"])) for m in rows
    ]
    drawn, left, selection = choose_curves(curves, max_lines)
    selection = selection.replace("curves", "trials")
    fig = plt.figure(figsize=(13, 10), layout="constrained")
    grid = fig.add_gridspec(3, 1, height_ratios=[2.2, 3, 1.3])
    learn = fig.add_subplot(grid[0])
    top = fig.add_subplot(grid[1])
    bottom = fig.add_subplot(grid[2], sharex=top)
    labels = {int(m["combo"]): format_params({k: m[k] for k in exp.spec.swept}) for m in rows}
    width = max(len(f"#{c.combo} {labels[c.combo]}") for c in drawn)
    val: dict[str, Any] = {}
    for i, c in enumerate(drawn):
        trial = tracker.get_experiment(lake.db, str(rows[c.combo]["experiment"]))
        policy = rows[c.combo]["policy"]  # the run whose policy the sweep's row describes (a trial may have more)
        trial_run = next(r for r in tracker.runs_of(lake.db, trial.id) if r.results.get("policy") == policy)
        curve = lake.read(trial_run.results["training_curve"]).to_pydict()
        style = _style(i)
        learn.plot(
            np.asarray(curve["steps"], float), np.asarray(curve["episodic_return"], float), linewidth=1.1, **style
        )
        val = validation_equity(lake, trial, trial_run)
        vts, values = val["equity"]["policy"]
        text = f"#{c.combo} {labels[c.combo]}".ljust(width)
        label = f"{text}  {format_percent(c.total_return):>8}  Sharpe {format_number(c.sharpe):>6}"
        top.plot(vts, values, linewidth=1.2, label=label, **style)
        bottom.plot(vts, _drawdown(values), linewidth=0.9, **style)
    vts, hold = val["equity"]["buy_and_hold"]  # the same bars for every trial; its fees are the last drawn's
    settings_swept = any(k.startswith(("env.", "execution.")) for k in exp.spec.swept)
    hold_label = f"buy_and_hold (#{drawn[-1].combo}'s settings)" if settings_swept else "buy_and_hold"
    top.plot(vts, hold, linewidth=1.1, color="0.35", linestyle="--", label=hold_label.ljust(width))
    bottom.plot(vts, _drawdown(hold), linewidth=0.9, color="0.35", linestyle="--")
    learn.set_xlabel("environment steps")
    learn.set_ylabel("episodic return")
    learn.set_title(f"training curves of {len(drawn)} trials", loc="left", fontsize=10)
    learn.grid(alpha=0.3)
    _equity_axes(top, bottom, vts, f"on {val['symbol']} from {_when(vts[0])}")
    _legend(top, "trial, total return, Sharpe (validation)")
    if left:
        fig.text(0.01, 0.005, _left_out_text(left), fontsize=8, va="bottom")
    fig.suptitle(f"{exp.name} (run {run.id[:8]}): {len(rows)} PPO trials on {val['symbol']}", fontsize=11)
    return fig, PlotReport(out=path, kind=exp.kind, drawn=drawn, left_out=left, selection=selection)


def _when(t: Any) -> str:
    import numpy as np

    return str(np.datetime_as_string(t, unit="m")).replace("T", " ") + " UTC"
