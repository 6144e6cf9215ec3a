"""What `experiments create` refuses before anything runs (issue #12, items 15 and 16), and the closed-trades
convention of the metrics it leads to (item 19)."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from artifact_lake.cli.main import experiments as exp_cli
from artifact_lake.experiments import create, execute, get_experiment, parse_spec
from tests.conftest import PYTHON, lake_state, subprocess_env
from tests.experiments.test_experiments import SPEC, elake  # noqa: F401 - the fixture


def _create(root, spec_text: str, tmp_path, *args: str):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec_text)
    return CliRunner().invoke(exp_cli, ["--lake", str(root), "create", str(spec_file), *args])


def _one_line(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# -- item 15: a sweep is counted, never expanded ----------------------------------------------------------
BOMB = SPEC.replace(
    "fast = [5, 10]\nslow = [30, 60]",
    "fast = [{}]\nslow = [{}]\ndirection = [{}]".format(
        ", ".join(str(i) for i in range(1, 1001)),
        ", ".join(str(i) for i in range(2000, 3000)),
        ", ".join(['"long"'] * 1000),
    ),
)
COUNT = (
    "import resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))\n"  # 1 GiB: the old expansion took 3.7 GB
    "from artifact_lake.cli.main import experiments_main\n"
    "sys.argv = ['experiments', '--lake', sys.argv[1], 'create', sys.argv[2]]\n"
    "experiments_main()\n"
)


def test_a_sweep_bomb_is_counted_and_refused_in_one_line_without_memory(elake, tmp_path):  # noqa: F811
    spec_file = tmp_path / "bomb.toml"
    spec_file.write_text(BOMB)
    assert 15_000 < len(BOMB) < 30_000
    before = lake_state(elake.root)
    r = subprocess.run(
        [PYTHON, "-c", COUNT, str(elake.root), str(spec_file)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == (
        "error: spec key 'sweep': 1000 direction x 1000 fast x 1000 slow make 1,000,000,000 combinations, more than"
        " the limit of 10,000 (raise it with --max-combinations, or sweep fewer values)"
    )
    assert lake_state(elake.root) == before


def test_the_combination_limit_can_be_raised(elake, tmp_path):  # noqa: F811
    spec = SPEC.replace("fast = [5, 10]", "fast = [5, 10, 15]")  # 3 x 2 = 6 combinations
    said = _one_line(_create(elake.root, spec, tmp_path, "--max-combinations", "5"))
    assert said.startswith("error: spec key 'sweep': 3 fast x 2 slow make 6 combinations, more than the limit of 5")
    r = _create(elake.root, spec, tmp_path, "--max-combinations", "6")
    assert r.exit_code == 0, r.output
    assert get_experiment(elake.db, "sma").spec.n_combos == 6


# -- item 16: names, symbols, a name taken by another spec ------------------------------------------------
@pytest.mark.parametrize("name", ["my exp", "../../etc", "a/b", "-x", "", "x" * 101, "sma@v2"])
def test_a_name_that_cannot_name_results_is_refused_at_create(elake, tmp_path, name):  # noqa: F811
    before = lake_state(elake.root)
    said = _one_line(_create(elake.root, SPEC, tmp_path, "--name", name))
    assert said == (
        f"error: spec key 'name': {name!r} cannot name an experiment: use 1 to 100 letters, digits and"
        " . _ : = + - starting with a letter or digit (no spaces, no '/', no '..')"
    )
    said = _one_line(_create(elake.root, SPEC.replace('name = "sma"', f"name = {name!r}"), tmp_path))
    assert f"{name!r} cannot name an experiment" in said
    assert lake_state(elake.root) == before


def test_a_missing_symbol_is_refused_at_create_not_after_a_run(elake, tmp_path):  # noqa: F811
    spec = SPEC.replace('direction = "long"', 'direction = "long"\nsymbols = ["A", "Z"]')
    before = lake_state(elake.root)
    said = _one_line(_create(elake.root, spec, tmp_path))
    assert said == "error: spec key 'strategy.symbols': Z not in the ohlcv inputs (A, B)"
    assert lake_state(elake.root) == before
    ok = _create(elake.root, spec.replace('"A", "Z"', '"B"'), tmp_path)
    assert ok.exit_code == 0, ok.output


def test_a_missing_training_symbol_is_refused_at_create(elake, tmp_path):  # noqa: F811
    pytest.importorskip("torch")
    from tests.experiments.test_train import TRAIN

    said = _one_line(_create(elake.root, TRAIN.replace('symbol = "A"', 'symbol = "Z"'), tmp_path))
    assert said == "error: spec key 'env.symbol': Z not in the ohlcv inputs (A, B)"
    said = _one_line(_create(elake.root, TRAIN.replace('symbol = "A"\n', ""), tmp_path))
    assert said == "error: spec key 'env.symbol': the ohlcv inputs hold A, B; name the one to train on"


def test_a_name_held_by_another_spec_moves_only_with_replace(elake, tmp_path):  # noqa: F811
    first, _ = create(elake, parse_spec(SPEC))
    other = SPEC.replace("fee_bps = 10.0", "fee_bps = 25.0")
    before = lake_state(elake.root)
    said = _one_line(_create(elake.root, other, tmp_path))
    assert said == (
        f"error: spec key 'name': 'sma' already names experiment {first.id[:12]}, created from a different spec;"
        " choose another name (--name) or move the name with --replace"
    )
    assert lake_state(elake.root) == before and get_experiment(elake.db, "sma").id == first.id
    again = _create(elake.root, SPEC, tmp_path)  # the same spec again: idempotent
    assert again.exit_code == 0 and again.stdout.strip() == first.id and "exists: sma" in again.stderr
    moved = _create(elake.root, other, tmp_path, "--replace")
    assert moved.exit_code == 0, moved.output
    assert get_experiment(elake.db, "sma").id == moved.stdout.strip() != first.id
    assert get_experiment(elake.db, first.id).id == first.id  # the old one keeps its id
    renamed = _create(elake.root, other.replace("fee_bps = 25.0", "fee_bps = 30.0"), tmp_path, "--name", "sma-30")
    assert renamed.exit_code == 0 and "created: sma-30" in renamed.stderr


# -- item 19: n_trades counts closed trades, as backtesting.py's "# Trades" -------------------------------
def test_metrics_count_closed_trades_and_the_open_one_apart(elake):  # noqa: F811
    run = execute(elake, create(elake, parse_spec(SPEC))[0].id)
    trades = elake.read(run.results["trades"]).to_pylist()
    metrics = elake.read(run.results["metrics"]).to_pylist()
    assert sum(m["open_trades"] for m in metrics) > 0  # the premise: some combination ends in a position
    for m in metrics:
        mine = [t for t in trades if (t["combo"], t["symbol"]) == (m["combo"], m["symbol"])]
        assert m["n_trades"] == sum(t["exit_ts"] is not None for t in mine)
        assert m["open_trades"] == sum(t["exit_reason"] == "open" for t in mine) <= 1
    assert elake.get(run.results["metrics"]).columns[:5] == [
        ["combo", "int64"],
        ["symbol", "string"],
        ["final_equity", "double"],
        ["total_return", "double"],
        ["n_trades", "int64"],
    ]
    assert ["open_trades", "int64"] in elake.get(run.results["metrics"]).columns


def test_swept_symbols_are_checked_too(elake, tmp_path):  # noqa: F811
    spec = SPEC.replace("slow = [30, 60]", 'slow = [30, 60]\nsymbols = [["A"], ["B", "Q"]]')
    said = _one_line(_create(elake.root, spec, tmp_path))
    assert said == "error: spec key 'sweep.symbols': Q not in the ohlcv inputs (A, B)"
