"""Seeded synthetic sample data for the demo and the tests: documented as synthetic, never real prices.

Prices follow a geometric random walk with fat-ish tails; each bar's high and low bracket its open and
close, volume is positive. The same seed gives the same table on every machine (numpy's PCG64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def synthetic_ohlcv(
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT"),
    bars: int = 2_000,
    *,
    seed: int = 7,
    start_us: int = START_US,
    step_s: int = 60,
    price0: tuple[float, ...] | None = None,
) -> pa.Table:
    """A multi-symbol OHLCV table (rows sorted by symbol then ts) from seeded random walks."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    starts = price0 or tuple(100.0 * (i + 1) ** 2 for i in range(len(symbols)))
    ts = start_us + np.arange(bars, dtype=np.int64) * step_s * 1_000_000
    parts = []
    for sym, p0 in zip(symbols, starts, strict=True):
        shocks = rng.standard_t(5, size=bars) * 0.0015
        close = p0 * np.exp(np.cumsum(shocks))
        open_ = np.concatenate([[p0], close[:-1]])
        spread = np.abs(rng.normal(0, 0.001, size=bars)) * close
        high = np.maximum(open_, close) + spread
        low = np.minimum(open_, close) - spread * rng.random(bars)
        volume = np.round(rng.lognormal(3.0, 0.6, size=bars), 4)
        parts.append(
            pa.table(
                {
                    "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                    "symbol": pa.array([sym] * bars, pa.string()),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pa.concat_tables(parts)


def resample_ohlcv(table: pa.Table, every_s: int) -> pa.Table:
    """Aggregate an OHLCV table (sorted by symbol, ts) into bars of ``every_s`` seconds."""
    import numpy as np
    import pyarrow as pa

    ts = table.column("ts").cast(pa.int64()).to_numpy()
    sym = table.column("symbol").to_numpy(zero_copy_only=False)
    bucket = ts // (every_s * 1_000_000) * (every_s * 1_000_000)
    change = np.ones(len(ts), dtype=bool)
    change[1:] = (bucket[1:] != bucket[:-1]) | (sym[1:] != sym[:-1])
    starts = np.flatnonzero(change)
    cols = {c: table.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    ends = np.append(starts[1:], len(ts))
    return pa.table(
        {
            "ts": pa.array(bucket[starts], pa.timestamp("us", tz="UTC")),
            "symbol": pa.array(sym[starts], pa.string()),
            "open": cols["open"][starts],
            "high": np.maximum.reduceat(cols["high"], starts),
            "low": np.minimum.reduceat(cols["low"], starts),
            "close": cols["close"][ends - 1],
            "volume": np.add.reduceat(cols["volume"], starts),
        }
    )


def synthetic_alerts(ohlcv: pa.Table, n: int = 40, *, seed: int = 11, source: str = "demo-feed") -> pa.Table:
    """A seeded synthetic alert feed over an OHLCV table's span: random times, symbols and sides."""
    import json

    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ts = ohlcv.column("ts").cast(pa.int64()).to_numpy()
    symbols = ohlcv.column("symbol").to_numpy(zero_copy_only=False)
    close = ohlcv.column("close").to_numpy()
    rows = np.sort(rng.choice(len(ts), size=min(n, len(ts)), replace=False))
    # alerts fire a few seconds after a bar closes, quoting that close
    when = ts[rows] + 60_000_000 + rng.integers(1, 30, len(rows)) * 1_000_000
    sides = rng.choice(["buy", "sell"], len(rows))
    return pa.table(
        {
            "ts": pa.array(when, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array(symbols[rows], pa.string()),
            "side": pa.array(sides, pa.string()),
            "source": pa.array([source] * len(rows), pa.string()),
            "price": pa.array(close[rows], pa.float64()),
            "payload": pa.array([json.dumps({"n": int(i)}) for i in range(len(rows))], pa.string()),
        }
    )
