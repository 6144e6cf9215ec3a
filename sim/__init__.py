"""Pure compute: numba backtest kernels, the execution model and signal generators.

sim imports nothing from the lake: arrays in, arrays out, testable and benchmarkable on its own.
"""

from .alerts import AlertPolicy, alert_replay
from .engine import Bars, Execution, Result, run, run_grid, run_many, summarize, warm
from .env import ENV_ID, EnvConfig, Market, TradingEnv, VectorTradingEnv, register
from .plugins import Param, Plugin, check_output, check_weights, indicator, portfolio_strategy, strategy
from .portfolio import PORTFOLIO_METRIC_NAMES, Panel, PortfolioResult, fill_dt, run_portfolio
from .portfolio_strategies import equal_weight, xs_momentum
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
    "check_weights",
    "equal_weight",
    "fill_dt",
    "Panel",
    "PORTFOLIO_METRIC_NAMES",
    "portfolio_strategy",
    "PortfolioResult",
    "run_portfolio",
    "xs_momentum",
    "indicator",
    "strategy",
    "Result",
    "alert_replay",
    "breakout",
    "rsi",
    "rsi_threshold",
    "run",
    "run_grid",
    "run_many",
    "warm",
    "sma",
    "sma_cross",
    "summarize",
    "trade_dt",
]
