"""Pure compute: numba backtest kernels, the execution model and signal generators.

sim imports nothing from the lake: arrays in, arrays out, testable and benchmarkable on its own.
"""

from .alerts import AlertPolicy, alert_replay
from .engine import Bars, Execution, Result, run, run_grid, summarize
from .env import ENV_ID, EnvConfig, Market, TradingEnv, VectorTradingEnv, register
from .plugins import Param, Plugin, check_output, indicator, strategy
from .records import EXIT_REASONS, METRIC_NAMES, trade_dt
from .strategies import breakout, rsi, rsi_threshold, sma, sma_cross

register()  # gymnasium.make("ArtifactLake/Trading-v0", data=...) works once this package is imported

__all__ = [
    "ENV_ID",
    "AlertPolicy",
    "EXIT_REASONS",
    "METRIC_NAMES",
    "Bars",
    "EnvConfig",
    "Market",
    "TradingEnv",
    "VectorTradingEnv",
    "Execution",
    "Param",
    "Plugin",
    "check_output",
    "indicator",
    "strategy",
    "Result",
    "alert_replay",
    "breakout",
    "rsi",
    "rsi_threshold",
    "run",
    "run_grid",
    "sma",
    "sma_cross",
    "summarize",
    "trade_dt",
]
