"""The plugin contract of issue #13 through the API: registry, create checks, output contract, look-ahead
guard, code identity, sources, reproduce with user code."""

from __future__ import annotations

import shutil
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.experiments import (
    CodeChanged,
    LookAhead,
    PluginGone,
    SimError,
    SpecError,
    create,
    execute,
    parse_spec,
    plugins,
    reproduce,
)
from artifact_lake.projections import Lake
from artifact_lake.sim import Bars, indicator, strategy
from artifact_lake.sim import plugins as registry

from .conftest import BOLLINGER, SPEC, write


def _bars(n: int = 600, seed: int = 3) -> Bars:
    return Bars.from_table(synthetic_ohlcv(("A",), bars=n, seed=seed).drop_columns(["symbol"]))


def test_decorators_record_metadata_and_return_the_function_unchanged():
    def zz(bars: Bars, n: int = 5, mode: Literal["a", "b"] = "a", need: float = 1.0, on: bool = True):
        return np.zeros(len(bars))

    def req(bars: Bars, k: float) -> np.ndarray:
        return np.zeros(len(bars))

    assert indicator(zz) is zz
    assert strategy(name="req_strategy")(req) is req
    p = registry.get("indicator", "zz")
    assert [(x.name, x.type, x.default, x.choices) for x in p.params] == [
        ("n", "int", 5, ()),
        ("mode", "str", "a", ("a", "b")),
        ("need", "float", 1.0, ()),
        ("on", "bool", True, ()),
    ]
    r = registry.get("strategy", "req_strategy")
    assert r.params[0].required and r.params[0].type == "float"


def test_a_parameter_without_a_supported_annotation_is_refused():
    def bad(bars: Bars, x: list = []):  # noqa: B006
        return bars.close

    with pytest.raises(registry.PluginDefinitionError, match="parameter 'x' needs an annotation"):
        strategy(bad)


def test_create_checks_plugin_parameters_like_builtins(plake, plugin_file, monkeypatch):
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin_file))
    exp, created = create(plake, parse_spec(SPEC))
    assert created and exp.spec.n_combos == 3
    cases = [
        (SPEC.replace("n = 30", "nn = 30"), "unknown spec key strategy.'nn' (did you mean 'n'?)"),
        (SPEC.replace("n = 30", 'n = "x"'), "spec key 'strategy.n': must be int, not str 'x'"),
        (SPEC.replace("k = [1.5, 2.0, 2.5]", "k = [1.5, true]"), "spec key 'sweep.k': must be number, not bool True"),
        (SPEC.replace("bollinger", "bolinger"), "unknown strategy 'bolinger' (did you mean 'bollinger'?)"),
    ]
    for text, message in cases:
        with pytest.raises(SpecError) as err:
            create(plake, parse_spec(text))
        assert message in str(err.value)


def test_required_parameter_choices_and_check_function(plake, tmp_path, monkeypatch):
    path = write(
        tmp_path / "req.py",
        """
        from typing import Literal
        import numpy as np
        from artifact_lake.sim import Bars, strategy

        def _check(k: float, mode: str = "up") -> None:
            if k > 3:
                raise ValueError("k above 3 never trades")

        @strategy(check=_check)
        def needs_k(bars: Bars, k: float, mode: Literal["up", "down"] = "up") -> np.ndarray:
            return np.zeros(len(bars))
        """,
    )
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    base = 'kind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "needs_k"\n'
    with pytest.raises(SpecError, match="'strategy.k': missing: 'needs_k' needs it"):
        create(plake, parse_spec(base))
    with pytest.raises(SpecError, match=r"'strategy.mode': must be one of 'up', 'down', not str 'sideways'"):
        create(plake, parse_spec(base + 'k = 1.0\nmode = "sideways"\n'))
    with pytest.raises(SpecError, match=r"strategy 'needs_k' \(k=4\.0\): k above 3 never trades"):
        create(plake, parse_spec(base + "[sweep]\nk = [1.0, 4.0]\n"))
    exp, _ = create(plake, parse_spec(base + "[sweep]\nk = [1.0, 2.0]\n"))
    assert exp.spec.n_combos == 2


@pytest.mark.parametrize("name", ["os:system", "../evil.py", "builtins.eval", "sentinel_mod", "sentinel_mod:run"])
def test_a_spec_never_imports_a_module_it_names(plake, tmp_path, monkeypatch, name):
    flag = tmp_path / "imported.flag"
    write(tmp_path / "sentinel_mod.py", f"open({str(flag)!r}, 'w').write('imported')\n")
    write(tmp_path / "evil.py", f"open({str(flag)!r}, 'w').write('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    text = f'kind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "{name}"\n'
    with pytest.raises(SpecError) as err:
        create(plake, parse_spec(text))
    assert "strategy.name" in str(err.value) and "\n" not in str(err.value)
    assert not flag.exists()


def test_output_contract_is_one_line_naming_plugin_combination_and_bar(plake, tmp_path, monkeypatch):
    path = write(
        tmp_path / "broken.py",
        """
        import numpy as np
        from artifact_lake.sim import Bars, strategy

        @strategy
        def broken(bars: Bars, mode: str = "inf") -> np.ndarray:
            out = np.zeros(len(bars))
            if mode == "inf":
                out[7] = np.inf
                return out
            if mode == "short":
                return out[:-1]
            return out.astype(str)
        """,
    )
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    for mode, message in [
        ("inf", "strategy 'broken' (mode='inf'): bar 7 is inf"),
        ("short", "strategy 'broken' (mode='short'): returned shape (1199,), not one value per bar (1200,)"),
        ("str", "strategy 'broken' (mode='str'): returned dtype <U32, not float"),
    ]:
        create(plake, parse_spec(f'name = "b-{mode}"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n'
                                 f'[strategy]\nname = "broken"\nmode = "{mode}"\n'))  # fmt: skip
        with pytest.raises(SimError) as err:
            execute(plake, f"b-{mode}")
        assert message in str(err.value) and "\n" not in str(err.value)


LEAKY = """
import numpy as np
from artifact_lake.sim import Bars, strategy

@strategy
def peeks(bars: Bars, k: float = 0.0) -> np.ndarray:
    out = np.full(len(bars), np.nan)
    up = bars.close[1:] > bars.close[:-1] + k   # tomorrow's close decides today's order
    out[:-1] = np.where(up, 1.0, 0.0)
    return out
"""

RANDOM = """
import numpy as np
from artifact_lake.sim import Bars, strategy

@strategy
def coin(bars: Bars) -> np.ndarray:
    return np.sign(np.random.default_rng().standard_normal(len(bars)))
"""


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [(LEAKY, "peeks", "look-ahead: strategy 'peeks' (k=0.0; A): bar 299 is"), (RANDOM, "coin", "strategy 'coin'")],
)
def test_lookahead_guard_fails_the_run_and_publishes_nothing(plake, tmp_path, monkeypatch, source, name, message):
    path = write(tmp_path / f"{name}.py", source)
    monkeypatch.setenv("LAKE_PLUGINS", str(path))
    create(plake, parse_spec(f'name = "x"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "{name}"\n'))
    before = plake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0]
    with pytest.raises(LookAhead) as err:
        execute(plake, "x")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert plake.db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == before


@pytest.mark.parametrize("name", ["sma_cross", "rsi_threshold", "breakout"])
def test_every_builtin_passes_the_guard(name):
    plugins.load()
    p = registry.get("strategy", name)
    b = _bars(3000)
    for values in ({}, {"direction": "both"}):
        full = registry.check_output(p, p(b, values), len(b), values)
        report = plugins.guard(p, b, values, full, "")
        assert len(report["cuts"]) >= 3


def test_cuts_are_deterministic_and_bounded():
    assert plugins.cuts(100_000) == plugins.cuts(100_000)
    assert len(plugins.cuts(100_000)) >= 3 and max(plugins.cuts(100_000)) <= plugins.GUARD_WINDOW
    assert len(plugins.cuts(10)) >= 3


@settings(max_examples=25, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=8),
    direction=st.sampled_from(["long", "short", "both"]),
    seed=st.integers(0, 5),
)
def test_sma_cross_sweep_path_equals_per_combination(pairs, direction, seed):
    p = registry.get("strategy", "sma_cross")
    b = _bars(300, seed)
    combos = [p.bind({"fast": f, "slow": f + s, "direction": direction}) for f, s in pairs]
    fast = list(p.sweep(b, combos))
    for values, got in zip(combos, fast, strict=True):
        np.testing.assert_array_equal(got, p(b, values))


def test_execute_records_code_publishes_sources_and_reuses_only_same_code(plake, plugin_file, monkeypatch):
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin_file))
    create(plake, parse_spec(SPEC))
    run = execute(plake, "boll")
    assert set(run.plugins) == {"bollinger", "zscore"}
    rec = run.plugins["bollinger"]
    assert rec["origin"] == f"file {plugin_file}" and rec["source"] == run.plugins["zscore"]["source"]
    assert run.checks["plugins"]["bollinger"]["combinations"] == 6  # 3 combinations x 2 symbols
    assert run.checks["plugins"]["bollinger"]["cuts"] >= 18 and "lookahead_guard" in run.timings
    src = plake.read(rec["source"])
    assert src.column("path").to_pylist() == ["my_strategies.py"]
    assert src.column("text").to_pylist() == [plugin_file.read_text()]
    parents = {n.id for n in plake.lineage(run.results["metrics"]).nodes}
    assert rec["source"] in parents
    assert execute(plake, "boll").reused
    plugin_file.write_text(BOLLINGER.replace("out[z > 0] = 0.0", "out[z > 0.5] = 0.0"))
    again = execute(plake, "boll")
    assert not again.reused and again.plugins["bollinger"]["hash"] != rec["hash"]
    assert again.results["metrics"] != run.results["metrics"]
    n_sources = plake.db.execute("SELECT count(*) FROM artifacts WHERE type = 'source'").fetchone()[0]
    assert n_sources == 2  # one per distinct closure
    assert execute(plake, "boll", force=True).plugins["bollinger"]["source"] == again.plugins["bollinger"]["source"]
    assert plake.db.execute("SELECT count(*) FROM artifacts WHERE type = 'source'").fetchone()[0] == 2


def test_reproduce_with_user_code_same_changed_and_gone(plake, plugin_file, monkeypatch, tmp_path):
    monkeypatch.setenv("LAKE_PLUGINS", str(plugin_file))
    create(plake, parse_spec(SPEC))
    run = execute(plake, "boll")
    assert reproduce(plake, run.results["metrics"]).identical
    copy = tmp_path / "copied"
    shutil.copytree(plake.root, copy)
    with Lake.open(copy) as other:
        assert reproduce(other, run.results["trades"]).identical
    plugin_file.write_text(BOLLINGER.replace("out[z > 0] = 0.0", "out[z > 0.5] = 0.0"))
    with pytest.raises(CodeChanged) as err:
        reproduce(plake, run.results["metrics"])
    diff = err.value.changes[0]["diff"]
    assert "-    out[z > 0] = 0.0\n+    out[z > 0.5] = 0.0" in diff and err.value.exit_code == 1
    report = reproduce(plake, run.results["metrics"], allow_code_change=True)
    assert not report.identical and report.code_changes[0]["plugin"] == "bollinger"
    monkeypatch.setenv("LAKE_PLUGINS", "")
    registry.unregister_module(registry.get("strategy", "bollinger").module)
    with pytest.raises(PluginGone, match=f"'bollinger' \\(from file {plugin_file}\\)"):
        reproduce(plake, run.results["metrics"])


def test_a_plugin_package_folder_hashes_every_py_file(plake, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    write(pkg / "__init__.py", "from . import strat  # noqa: F401\n")
    write(
        pkg / "strat.py",
        """
        import numpy as np
        from artifact_lake.sim import Bars, strategy
        from .helpers import THRESHOLD

        @strategy
        def pkg_strategy(bars: Bars) -> np.ndarray:
            return np.where(bars.close > bars.close[0] * THRESHOLD, 1.0, 0.0)
        """,
    )
    helpers = write(pkg / "helpers.py", "THRESHOLD = 1.0\n")
    plugins.load([str(pkg)])
    first = plugins.closure(registry.get("strategy", "pkg_strategy"))
    assert sorted(first.files) == ["mypkg/__init__.py", "mypkg/helpers.py", "mypkg/strat.py"]
    helpers.write_text("THRESHOLD = 1.01\n")
    assert plugins.closure(registry.get("strategy", "pkg_strategy")).hash != first.hash
