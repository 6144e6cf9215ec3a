"""Correctness against a real peer: backtesting.py's SMA(10, 20) long-only crossover on its GOOG data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

from artifact_lake.sim import Bars, Execution, run, sma_cross  # noqa: E402


class SmaLongOnly(Strategy):
    fast = 10
    slow = 20

    def init(self):
        self.sma1 = self.I(SMA, self.data.Close, self.fast)
        self.sma2 = self.I(SMA, self.data.Close, self.slow)

    def next(self):
        if crossover(self.sma1, self.sma2):
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()


def _peer(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open" and pandas notices are the peer's
        bt = Backtest(GOOG, SmaLongOnly, cash=10_000, commission=0.002, **kw)
        return bt.run()


def _ours(**kw):
    ts = GOOG.index.values.astype("datetime64[us]").astype(np.int64)
    bars = Bars.from_arrays(
        ts, GOOG.Open.values, GOOG.High.values, GOOG.Low.values, GOOG.Close.values, GOOG.Volume.values
    )
    return run(bars, sma_cross(bars.close, 10, 20, "long"), Execution(cash=10_000, fee_bps=20, **kw))


def test_same_trades_and_final_equity_as_backtesting_py():
    stats = _peer()
    res = _ours()
    peer = stats["_trades"]
    ours = res.trades[res.trades["exit_idx"] >= 0]
    assert len(ours) == len(peer) > 10
    assert ours["entry_idx"].tolist() == peer["EntryBar"].tolist()
    assert ours["exit_idx"].tolist() == peer["ExitBar"].tolist()
    assert ours["size"].tolist() == peer["Size"].astype(float).tolist()
    np.testing.assert_allclose(ours["entry_price"], peer["EntryPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["exit_price"], peer["ExitPrice"], rtol=1e-12)
    np.testing.assert_allclose(ours["pnl"], peer["PnL"], rtol=1e-9)
    assert res.metrics["final_equity"] == pytest.approx(stats["Equity Final [$]"], rel=1e-9)
    np.testing.assert_allclose(res.equity, stats["_equity_curve"]["Equity"].values, rtol=1e-9)


def test_n_trades_counts_closed_trades_like_the_peers_trades_count_and_the_open_one_apart():
    stats = _peer()
    res = _ours()
    assert res.metrics["n_trades"] == stats["# Trades"] == len(stats["_trades"])
    assert res.metrics["open_trades"] == 1 and len(res.trades) == stats["# Trades"] + 1
    closed = _ours(close_at_end=True)
    assert closed.metrics["n_trades"] == stats["# Trades"] + 1 and closed.metrics["open_trades"] == 0


def test_open_trade_at_the_end_is_marked_like_the_peer_and_close_at_end_pays_the_exit_fee():
    marked = _ours()
    last = marked.trades[-1]
    assert last["exit_idx"] == -1 and np.isnan(last["exit_price"])  # still open, as backtesting.py leaves it
    closed = _ours(close_at_end=True)
    end = closed.trades[-1]
    close = GOOG.Close.values[-1]
    assert end["exit_idx"] == len(GOOG) - 1 and end["exit_price"] == close
    exit_fee = end["size"] * close * 0.002
    assert closed.metrics["final_equity"] == pytest.approx(marked.metrics["final_equity"] - exit_fee, rel=1e-12)
