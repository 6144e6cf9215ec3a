"""Result tables of backtests in their published column order and types (the simulator's arrays in,
pyarrow tables out). Row order is the caller's: combination, then symbol, then time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

METRIC_COLUMNS = (
    "final_equity",
    "total_return",
    "n_trades",
    "open_trades",
    "max_drawdown",
    "sharpe",
    "sortino",
    "cagr",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "fees",
    "max_drawdown_days",
)


def cat(parts: list[Any], dtype: Any = None) -> np.ndarray:
    if not parts:
        return np.array([], dtype=dtype)
    return np.concatenate(parts)


def strings(parts: list[Any]) -> pa.Array:
    """A string column from parts that are pyarrow arrays (``pa.repeat(symbol, n)``: no Python string per row)
    or NumPy object arrays."""
    import pyarrow as pa

    arrays = [p if isinstance(p, pa.Array) else pa.array(p, pa.string()) for p in parts]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def ts_array(values: np.ndarray) -> pa.Array:
    import pyarrow as pa

    mask = values == np.iinfo(np.int64).min
    return pa.array(values.astype(np.int64), pa.timestamp("us", tz="UTC"), mask=mask)


def trades_table(cols: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    if not cols:
        cols = {
            "combo": [],
            "symbol": [],
            "side": [],
            "size": [],
            "entry_ts": [],
            "exit_ts": [],
            "entry_price": [],
            "exit_price": [],
            "fees": [],
            "pnl": [],
            "exit_reason": [],
            "entry_idx": [],
            "exit_idx": [],
            "return": [],
            "mae": [],
            "mfe": [],
        }
    exit_price = cat(cols["exit_price"], np.float64)
    return pa.table(
        {
            "combo": pa.array(cat(cols["combo"], np.int64), pa.int64()),
            "symbol": strings(cols["symbol"]),
            "side": pa.array(cat(cols["side"], np.int8), pa.int8()),
            "size": pa.array(cat(cols["size"], np.float64), pa.float64()),
            "entry_ts": ts_array(cat(cols["entry_ts"], np.int64)),
            "exit_ts": ts_array(cat(cols["exit_ts"], np.int64)),
            "entry_price": pa.array(cat(cols["entry_price"], np.float64), pa.float64()),
            "exit_price": pa.array(exit_price, pa.float64(), mask=np.isnan(exit_price)),
            "fees": pa.array(cat(cols["fees"], np.float64), pa.float64()),
            "pnl": pa.array(cat(cols["pnl"], np.float64), pa.float64()),
            "exit_reason": pa.array(cat(cols["exit_reason"], object), pa.string()),
            "entry_idx": pa.array(cat(cols["entry_idx"], np.int64), pa.int64()),
            "exit_idx": pa.array(cat(cols["exit_idx"], np.int64), pa.int64()),
            "return": pa.array(cat(cols["return"], np.float64), pa.float64()),
            "mae": pa.array(cat(cols["mae"], np.float64), pa.float64()),
            "mfe": pa.array(cat(cols["mfe"], np.float64), pa.float64()),
        }
    )


def equity_table(cols: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "combo": pa.array(cat(cols["combo"], np.int64), pa.int64()),
            "symbol": strings(cols["symbol"]),
            "ts": ts_array(cat(cols["ts"], np.int64)),
            "equity": pa.array(cat(cols["equity"], np.float64), pa.float64()),
            "cash": pa.array(cat(cols["cash"], np.float64), pa.float64()),
            "position": pa.array(cat(cols["position"], np.float64), pa.float64()),
        }
    )


def same_value(a: Any, b: Any) -> bool:
    """Two metric values are the same: equal, or both NaN."""
    return bool(a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)))
