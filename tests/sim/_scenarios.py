"""Fixed scenarios whose outputs are digested; run compiled and under NUMBA_DISABLE_JIT=1 to compare."""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from artifact_lake.sim import Bars, Execution, breakout, rsi_threshold, run, run_grid, sma_cross


def random_bars(seed: int, n: int) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.003, n))
    spread = np.abs(rng.normal(0, 0.006, n))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread * rng.random(n))
    volume = rng.integers(0, 500, n).astype(float)
    return Bars.from_arrays(np.arange(n, dtype=np.int64) * 3_600_000_000, open_, high, low, close, volume)


SETTINGS = [
    Execution(fee_bps=20),
    Execution(fee_bps=10, slippage_bps=5, stop_loss=0.02, take_profit=0.03, units="fractional"),
    Execution(fill="close", latency_bars=2, trailing_stop=0.03, sizing="fraction", size=0.5),
    Execution(participation=0.2, remainder="carry", max_hold_bars=15, leverage=2, close_at_end=True),
]


def digest() -> str:
    h = hashlib.sha256()
    b = random_bars(5, 1500)
    signals = [
        sma_cross(b.close, 5, 20, "both"),
        rsi_threshold(b.close, 10, 35, 65, "long"),
        breakout(b.high, b.low, b.close, 12, "short"),
    ]
    for ex in SETTINGS:
        for sig in signals:
            r = run(b, sig, ex)
            for arr in (r.trades, r.equity, r.cash, r.position):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(repr(sorted(r.metrics.items())).encode())
    for m in run_grid(b, [3, 5, 8], [10, 20, 30], SETTINGS[1]):
        h.update(repr(sorted(m.items())).encode())
    return h.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(digest())
