"""ccxt backfills with the real ccxt client against a local Binance-speaking server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time

import pyarrow as pa
import pytest
from click.testing import CliRunner

from artifact_lake.artifact_store.ingest import backfill
from artifact_lake.artifact_store.ingest.ccxt_source import ExchangeFailed
from artifact_lake.cli.main import lake as lake_cli
from tests.conftest import PYTHON, lake_state, subprocess_env
from tests.fakes.binance import FakeBinance

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
MIN = 60_000


def run_backfill(lk, fb, symbols=("BTC/USDT",), **kw):
    kw.setdefault("rate_limit_ms", 1)
    kw.setdefault("base_delay", 0.01)
    return backfill(
        lk, "binance", list(symbols), "1m", kw.pop("since", "2024-01-01"), kw.pop("until", None), api_url=fb.url, **kw
    )


def test_a_backfill_survives_every_injected_fault(plake):
    gaps = {T0 + 10 * MIN, T0 + 11 * MIN, T0 + DAY + 5 * MIN}
    faults = ["429", "500", "timeout", "503", "duplicate", "shuffle", "bad"]
    with FakeBinance(now_ms=T0 + 2 * DAY + 30 * MIN, faults=faults, gaps=gaps, timeout_sleep=1.0) as fb:
        report = run_backfill(plake, fb, timeout_ms=400)
    info = report.symbols["BTC/USDT"]
    assert info["retries"] == {"DDoSProtection": 1, "OperationFailed": 2, "RequestTimeout": 1}
    names = [p["name"] for p in info["partitions"]]
    assert names == [
        "ohlcv/binance/BTC/USDT/1m/2024-01-01",
        "ohlcv/binance/BTC/USDT/1m/2024-01-02",
        "ohlcv/binance/BTC/USDT/1m/2024-01-03.partial",
    ]
    assert info["duplicates"] == 1 and info["quarantined"] == 1
    day1 = plake.get(names[0])
    assert day1.meta["gap_count"] == 2 and day1.meta["gaps"] == [
        ["2024-01-01T00:10:00+00:00", "2024-01-01T00:11:00+00:00"]
    ]
    assert day1.meta["complete"] is True and day1.meta["exchange"] == "binance" and day1.meta["ccxt_version"]
    assert plake.get(names[2]).meta["complete"] is False
    # candles are exactly the exchange's, sorted, no duplicates, nothing invented
    got = plake.read(names[0])
    assert got.column("ts").to_pylist() == sorted(set(got.column("ts").to_pylist()))
    assert got.num_rows == 1440 - 2
    # the third page (after 2 x 1000 candles) had the bad candle: it is on day 2, quarantined with its reason
    assert plake.read(names[1]).num_rows == 1440 - 1 - 1
    q = plake.read("quarantine/binance/BTC/USDT/1m/2024-01-02").to_pylist()
    assert len(q) == 1 and "breaks high >=" in q[0]["reason"] or "breaks low <=" in q[0]["reason"]
    # the gaps are visible through the ohlcv projection
    p = plake.projection("ohlcv", {"ohlcv": names[:2]})
    gap_rows = p.arrow("SELECT missing_bars FROM gaps ORDER BY first_missing").column("missing_bars").to_pylist()
    assert sum(gap_rows) == 2 + 1 + 1  # the two gaps, one quarantined candle, one gap on day 2


def test_rerun_is_idempotent_and_the_open_period_is_replaced_when_complete(plake):
    with FakeBinance(now_ms=T0 + DAY + 2 * 60 * MIN) as fb:
        first = run_backfill(plake, fb)
        before = lake_state(plake.root)
        again = run_backfill(plake, fb, restart=True)
        assert all(p["deduplicated"] for p in again.symbols["BTC/USDT"]["partitions"])
        assert lake_state(plake.root)["files"] == before["files"]
        assert first.symbols["BTC/USDT"]["partitions"][-1]["name"].endswith("2024-01-02.partial")
        fb.now_ms = T0 + 2 * DAY + 5 * MIN  # a day later: 2024-01-02 is complete now
        later = run_backfill(plake, fb)
    names = [p["name"] for p in later.symbols["BTC/USDT"]["partitions"]]
    assert names == ["ohlcv/binance/BTC/USDT/1m/2024-01-02", "ohlcv/binance/BTC/USDT/1m/2024-01-03.partial"]
    assert later.symbols["BTC/USDT"]["resumed_from"] == T0 + DAY  # from the checkpoint, not from --since
    assert plake.read("ohlcv/binance/BTC/USDT/1m/2024-01-02").num_rows == 1440
    assert plake.resolve("ohlcv/binance/BTC/USDT/1m/2024-01-02.partial@v1")  # the open version stays in history


def test_month_partitions_and_an_explicit_until(plake):
    with FakeBinance(now_ms=T0 + 40 * DAY) as fb:
        rep = backfill(
            plake,
            "binance",
            ["ETH/USDT"],
            "1h",
            "2024-01-30",
            "2024-02-02T00:00:00Z",
            partition="month",
            api_url=fb.url,
            rate_limit_ms=1,
        )
    parts = rep.symbols["ETH/USDT"]["partitions"]
    assert [(p["name"], p["rows"]) for p in parts] == [
        ("ohlcv/binance/ETH/USDT/1h/2024-01", 48),
        ("ohlcv/binance/ETH/USDT/1h/2024-02.partial", 24),
    ]


def test_permanent_failures_are_one_clear_line(plake):
    with FakeBinance(now_ms=T0 + DAY, faults=["503"] * 10) as fb:
        with pytest.raises(ExchangeFailed, match="gave up after 2 retries: OperationFailed"):
            run_backfill(plake, fb, retries=2)
        for args, line in [
            (["DOGE/USDT", "--timeframe", "1m"], "error: binance has no market 'DOGE/USDT'"),
            (["BTC/USDT", "--timeframe", "7m"], "error: binance has no timeframe '7m'"),
            (["BTC/USDT", "--timeframe", "1m", "--partition", "year"], "Invalid value for '--partition'"),
        ]:
            r = CliRunner().invoke(
                lake_cli,
                [
                    "--lake",
                    str(plake.root),
                    "ingest",
                    "ccxt",
                    "binance",
                    *args,
                    "--since",
                    "2024-01-01",
                    "--api-url",
                    fb.url,
                ],
            )
            assert r.exit_code == 2 and line in r.stderr, r.stderr
    r = CliRunner().invoke(
        lake_cli,
        [
            "--lake",
            str(plake.root),
            "ingest",
            "ccxt",
            "binanse",
            "BTC/USDT",
            "--timeframe",
            "1m",
            "--since",
            "2024-01-01",
        ],
    )
    assert r.exit_code == 2 and r.stderr.startswith("error: unknown exchange 'binanse'; did you mean 'binance'?")


KILLED = textwrap.dedent(
    """
    import sys, time
    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.ingest import backfill
    from artifact_lake.artifact_store.ingest import ccxt_source

    real = ccxt_source._publish_partition
    def slow(*a, **k):
        real(*a, **k)
        time.sleep(0.5)  # leave the test time to kill us between partitions
    ccxt_source._publish_partition = slow
    backfill(Lake.open(sys.argv[1]), "binance", ["BTC/USDT"], "1h", "2024-01-01", None, api_url=sys.argv[2], rate_limit_ms=1)
    """
)


def test_kill_and_resume_leaves_no_holes_and_no_duplicates(plake):
    with FakeBinance(now_ms=T0 + 10 * DAY) as fb:
        proc = subprocess.Popen(
            [PYTHON, "-c", KILLED, str(plake.root), fb.url],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            n = plake.db.execute("SELECT count(*) FROM names WHERE name LIKE 'ohlcv/binance/BTC/USDT/1h/%'").fetchone()[
                0
            ]
            if n >= 3 or proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        done_before = plake.db.execute(
            "SELECT count(*) FROM names WHERE name LIKE 'ohlcv/binance/BTC/USDT/1h/%'"
        ).fetchone()[0]
        assert 3 <= done_before < 10
        report = backfill(plake, "binance", ["BTC/USDT"], "1h", "2024-01-01", None, api_url=fb.url, rate_limit_ms=1)
    assert report.symbols["BTC/USDT"]["resumed_from"] is not None
    names = [
        r[0]
        for r in plake.db.execute(
            "SELECT DISTINCT name FROM names WHERE name LIKE 'ohlcv/binance/BTC/USDT/1h/%' ORDER BY name"
        )
    ]
    assert names == [f"ohlcv/binance/BTC/USDT/1h/2024-01-{d:02d}" for d in range(1, 11)]
    p = plake.projection("ohlcv", {"ohlcv": names})
    hours = p.arrow("SELECT epoch_ms(ts) AS t FROM ohlcv ORDER BY ts").column("t").to_pylist()
    assert hours == list(range(T0, T0 + 10 * DAY, 60 * MIN))  # every hour once: no hole, no duplicate
    assert p.arrow("SELECT count(*) AS n FROM gaps").to_pylist() == [{"n": 0}]
    assert plake.verify().ok


def test_cli_json_and_progress_free_output(plake):
    with FakeBinance(now_ms=T0 + DAY // 2) as fb:
        r = CliRunner().invoke(
            lake_cli,
            [
                "--lake",
                str(plake.root),
                "ingest",
                "ccxt",
                "binance",
                "BTC/USDT",
                "--timeframe",
                "5m",
                "--since",
                "2024-01-01",
                "--api-url",
                fb.url,
                "--rate-limit-ms",
                "1",
                "--json",
            ],
        )
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["symbols"]["BTC/USDT"]["candles"] == 144
    assert out["ccxt_seconds"] > 0 and out["our_seconds"] > 0
    assert isinstance(pa.__version__, str)
