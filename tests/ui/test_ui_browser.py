"""``lake ui`` in a real browser: Playwright drives the operating system's Chromium against a real server process.

Clicks through search, an artifact, a lineage node, its run, the experiment, a heatmap cell and that
combination's equity chart; checks that charts are drawn and that the console shows no error. With
``LAKE_UI_SHOTS=DIR`` it saves a screenshot of each page there (docs/ui.md uses them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("LAKE_UI_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (bash .ci/install test installs it)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True, viewport={"width": 1360, "height": 900}
        )
        pg = ctx.new_page()
        pg.errors = []  # type: ignore[attr-defined]
        pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))  # type: ignore[attr-defined]
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
        yield pg
        ctx.close()


def shot(pg: Any, name: str) -> None:
    folder = os.environ.get("LAKE_UI_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def canvas_has_ink(pg: Any, selector: str) -> bool:
    """True when the chart's canvas holds more than one colour (a blank canvas holds one)."""
    return bool(
        pg.eval_on_selector(
            selector + " canvas",
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      const seen = new Set(); for (let i = 0; i < d.length; i += 64) seen.add(d[i] + ',' + d[i+1] + ',' + d[i+2] + ',' + d[i+3]);
                      return seen.size > 3; }""",
        )
    )


def test_click_through(server: Server, page: Any) -> None:
    pg = page
    pg.goto(server.url + "/")
    assert pg.locator("#by-type").inner_text().count("ohlcv") >= 1
    shot(pg, "overview")

    # search: the one-minute bars by name glob
    pg.click("text=Artifacts")
    pg.fill("input[name=name]", "demo/ohlcv-1m*")
    pg.click("#search button")
    pg.wait_for_selector("#artifact-rows tr:has-text('demo/ohlcv-1m')")
    assert pg.locator("#artifact-rows tr").count() == 1
    shot(pg, "artifacts")

    # the artifact, and a lineage node downstream: the metrics of demo-sma
    pg.click("#artifact-rows a")
    pg.wait_for_selector("#lineage")
    assert pg.locator("#schema").inner_text().count("close") == 1
    shot(pg, "artifact")
    pg.click("#lineage a.node:has-text('exp/demo-sma/metrics')")
    pg.wait_for_selector("#made-by")
    assert "metrics" in pg.locator("h1").inner_text()

    # its run, then the experiment
    pg.click("#made-by")
    pg.wait_for_selector("#run-facts")
    assert "succeeded" in pg.locator("#run-facts").inner_text()
    shot(pg, "run")
    pg.click("#run-experiment")
    pg.wait_for_selector("#heatmap")
    pg.wait_for_function("document.querySelector('#equity-chart').dataset.drawn > 0")
    assert canvas_has_ink(pg, "#equity-chart") and canvas_has_ink(pg, "#drawdown-chart")

    # the metric picker redraws the heatmap in place
    pg.select_option("#metric-picker", "sharpe")
    pg.wait_for_selector("#heatmap caption:has-text('sharpe')")
    shot(pg, "experiment")

    # a heatmap cell opens that combination's equity chart
    cell = pg.locator("#heatmap td.cell a").first
    combo = cell.get_attribute("data-combo")
    cell.click()
    pg.wait_for_selector("#combo-params")
    pg.wait_for_function("document.querySelector('#equity-chart').dataset.drawn > 0")
    assert f"#{combo}" in pg.locator("#equity").inner_text()
    assert pg.locator("#equity-chart .u-legend .u-series").count() == 2  # x plus the one combination
    assert canvas_has_ink(pg, "#equity-chart")
    # hover shows values in the legend; a drag zooms the x axis
    box = pg.locator("#equity-chart .u-over").bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    assert any(ch.isdigit() for ch in pg.locator("#equity-chart .u-legend .u-series").nth(1).inner_text())
    before = pg.evaluate("document.querySelector('#equity-chart .u-axis') !== null")
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5)
    pg.mouse.up()
    assert before
    shot(pg, "combination")

    # sortable metrics table
    pg.click("#metrics thead th:has-text('sharpe')")  # first click: largest first
    values = [float(v) for v in pg.eval_on_selector_all(
        "#metrics tbody tr", "rows => rows.map(r => r.cells[Array.from(r.closest('table').tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('sharpe'))].dataset.v)") if v]  # fmt: skip
    assert values == sorted(values, reverse=True)

    # experiments list, compare
    pg.click("header >> text=Experiments")
    pg.wait_for_selector("#experiments")
    shot(pg, "experiments")
    for box_ in pg.locator("#experiments input[type=checkbox]").all():
        box_.check()
    pg.click("#compare-button")
    pg.wait_for_function("document.querySelector('#compare-chart').dataset.drawn > 0")
    assert canvas_has_ink(pg, "#compare-chart")
    shot(pg, "compare")

    assert pg.errors == []  # type: ignore[attr-defined]


def test_reproduce_in_the_background(server: Server, page: Any) -> None:
    pg = page
    pg.goto(server.url + "/experiment/demo-sma")
    pg.click("#reproduce")
    pg.wait_for_selector("#verdict", timeout=120_000)
    assert pg.locator("#verdict").inner_text() == "identical"
    shot(pg, "reproduce")
    assert pg.errors == []  # type: ignore[attr-defined]


def test_a_portfolio_shows_its_gross_and_net_exposure(tmp_path: Path, page: Any) -> None:
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    from .conftest import start_ui, stop

    root = tmp_path / "portfolio"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A", "B", "C", "D"), bars=2000, seed=5), "ohlcv", name="px")
        spec = 'name = "mom"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "xs_momentum"\n'
        spec += 'every = 24\n[portfolio]\ndirection = "both"\n[sweep]\nlookback = [10, 30]\n'
        create(lk, parse_spec(spec))
        execute(lk, "mom")
    server = start_ui(root)
    try:
        pg = page
        pg.goto(server.url + "/experiment/mom")
        pg.wait_for_function("document.querySelector('#exposure-chart').dataset.drawn > 0")
        assert canvas_has_ink(pg, "#equity-chart") and canvas_has_ink(pg, "#exposure-chart")
        legend = pg.locator("#exposure-chart .u-legend").inner_text()
        assert "gross" in legend and "net" in legend
        shot(pg, "portfolio")
        assert pg.errors == []  # type: ignore[attr-defined]
    finally:
        stop(server.proc)


def test_runs_ticked_on_an_experiment_page_are_compared(tmp_path: Path, page: Any) -> None:
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.experiments import create, execute, parse_spec
    from artifact_lake.projections import Lake

    from .conftest import start_ui, stop

    root = tmp_path / "two-runs"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A",), bars=1500, seed=4), "ohlcv", name="px")
        spec = 'name = "twice"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "sma_cross"\n'
        create(lk, parse_spec(spec + "[sweep]\nfast = [5, 10]\nslow = [30]\n"))
        runs = [execute(lk, "twice").id, execute(lk, "twice", force=True).id]
    server = start_ui(root)
    try:
        pg = page
        pg.goto(server.url + "/experiment/twice")
        for run_id in runs:
            pg.check(f"input[name=run][value='{run_id}']")
        pg.click("#compare-runs-button")
        pg.wait_for_function("document.querySelector('#compare-chart').dataset.drawn > 0")
        shown = pg.locator("#compare tbody").inner_text()
        assert all(run_id[:8] in shown for run_id in runs)
        assert pg.locator("#compare tbody tr").count() == 4  # two combinations of each run
        assert canvas_has_ink(pg, "#compare-chart")
        assert pg.errors == []  # type: ignore[attr-defined]
    finally:
        stop(server.proc)
