from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.projections import Lake

BOLLINGER = '''
import numpy as np
from artifact_lake.sim import Bars, indicator, strategy


@indicator
def zscore(bars: Bars, n: int = 20) -> np.ndarray:
    """Distance of the close from its n-bar mean, in standard deviations."""
    c = bars.close
    out = np.full(len(c), np.nan)
    for i in range(n - 1, len(c)):
        w = c[i - n + 1 : i + 1]
        sd = w.std()
        out[i] = (c[i] - w.mean()) / sd if sd > 0 else 0.0
    return out


@strategy
def bollinger(bars: Bars, n: int = 20, k: float = 2.0, direction: str = "long") -> np.ndarray:
    """Long below the lower band, flat again at the mean."""
    z = zscore(bars, n)
    out = np.full(len(z), np.nan)
    out[z < -k] = 1.0
    out[z > 0] = 0.0
    return out
'''

SPEC = """
name = "boll"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "bollinger"
n = 30
[sweep]
k = [1.5, 2.0, 2.5]
"""


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test registers its own plugins: the registry and the loaded paths are restored afterwards."""
    from artifact_lake.experiments import plugins
    from artifact_lake.sim import plugins as registry

    saved = dict(registry.REGISTRY)
    loaded = dict(plugins._loaded_paths)
    yield
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)
    plugins._loaded_paths.clear()
    plugins._loaded_paths.update(loaded)
    plugins.configure(None)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def plugin_file(tmp_path):
    return write(tmp_path / "my_strategies.py", BOLLINGER)


@pytest.fixture
def plake(tmp_path):
    lk = Lake.open(tmp_path / "lake")
    lk.publish(synthetic_ohlcv(("A", "B"), bars=1200, seed=3), "ohlcv", name="px")
    yield lk
    lk.close()
