"""OHLCV backfills through the real ccxt client: paged, rate-limited, retried, resumable, validated.

* Pages of ``fetch_ohlcv`` sized by the exchange's own limit (``exchange.features``), ``enableRateLimit``
  on, retries with exponential backoff and jitter on network errors, rate limits and unavailability
  (ccxt's ``OperationFailed`` family); permanent errors (bad symbol, bad timeframe, auth) end the backfill
  with one clear line.
* Candles are cut into UTC day or month partitions. A complete partition is published as one ``ohlcv``
  artifact named ``ohlcv/<exchange>/<symbol>/<timeframe>/<period>``; the partition still open at the end of
  the range is published as ``<period>.partial`` (a later backfill publishes the final one).
* Within a partition, duplicate candles collapse (the copy fetched last wins, deterministic for a given
  answer of the exchange) and out-of-order ones are sorted; missing candles are never invented: their count
  and ranges go into the partition's meta (and the ``ohlcv`` projection's ``gaps``); candles failing the
  schema go to a ``quarantine`` artifact with the reason.
* A checkpoint per (exchange, symbol, timeframe) in the manifest records where the last published final
  partition ended; an interrupted backfill (Ctrl-C, SIGKILL) resumes there. Publishing is idempotent, so a
  partition published just before a kill is simply deduplicated on resume: no duplicates, no holes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .. import manifest as mf
from .. import openlineage
from ..errors import InvalidInput
from ..lake import Lake, parse_iso

if TYPE_CHECKING:
    import pyarrow as pa

_DDL = """
CREATE TABLE IF NOT EXISTS ingest_checkpoints (
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    next_ms INTEGER NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe)
) WITHOUT ROWID
"""


class ExchangeFailed(InvalidInput):
    """The exchange refused the request for good (bad symbol, bad timeframe, authentication) or kept failing."""


@dataclass
class Backfill:
    """What one backfill did, per symbol."""

    exchange: str
    timeframe: str
    symbols: dict[str, dict[str, Any]] = field(default_factory=dict)
    ccxt_seconds: float = 0.0
    """Time spent inside ccxt calls (network, parsing, rate limiting)."""
    our_seconds: float = 0.0
    """Time spent validating, hashing and publishing."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "timeframe": self.timeframe,
            "symbols": self.symbols,
            "ccxt_seconds": self.ccxt_seconds,
            "our_seconds": self.our_seconds,
        }


def parse_time_ms(text: str | int | None, what: str) -> int | None:
    if text is None or isinstance(text, int):
        return text
    return int(parse_iso(text, what).timestamp() * 1000)


def _period(ms: int, partition: str) -> tuple[str, int, int]:
    """(label, start ms, end ms exclusive) of the UTC day or month holding ``ms``."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    if partition == "day":
        start = datetime(t.year, t.month, t.day, tzinfo=UTC)
        label = start.strftime("%Y-%m-%d")
        end = datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    else:
        start = datetime(t.year, t.month, 1, tzinfo=UTC)
        label = start.strftime("%Y-%m")
        end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return label, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def make_exchange(
    name: str, api_url: str | None = None, *, timeout_ms: int = 10_000, rate_limit_ms: int | None = None
) -> Any:
    """A ccxt client with rate limiting on; ``api_url`` replaces the scheme and host of every REST URL."""
    import ccxt

    if name not in ccxt.exchanges:
        import difflib

        hint = difflib.get_close_matches(name, ccxt.exchanges, n=1)
        raise InvalidInput(f"unknown exchange {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": {"fetchMarkets": ["spot"], "fetchCurrencies": False},
    }
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange = getattr(ccxt, name)(config)
    if api_url:
        base = urlparse(api_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise InvalidInput(f"--api-url {api_url!r}: give a base URL such as http://127.0.0.1:8080")

        def rebase(value: Any) -> Any:
            if isinstance(value, str) and value.startswith("http"):
                u = urlparse(value)
                return u._replace(scheme=base.scheme, netloc=base.netloc).geturl()
            if isinstance(value, dict):
                return {k: rebase(v) for k, v in value.items()}
            return value

        exchange.urls["api"] = rebase(exchange.urls["api"])
    return exchange


def _call(
    fn: Callable[[], Any],
    *,
    retries: int,
    base_delay: float,
    rng: random.Random,
    on_retry: Callable[[str], None] | None,
) -> Any:
    import ccxt

    attempt = 0
    while True:
        try:
            return fn()
        except ccxt.ExchangeError as exc:  # permanent: bad symbol, bad request, auth
            raise ExchangeFailed(f"the exchange refused the request: {type(exc).__name__}: {exc}") from exc
        except ccxt.OperationFailed as exc:  # network errors, rate limits, unavailability: retry
            attempt += 1
            if attempt > retries:
                raise ExchangeFailed(f"gave up after {retries} retries: {type(exc).__name__}: {exc}") from exc
            if on_retry is not None:
                on_retry(type(exc).__name__)
            time.sleep(base_delay * 2 ** (attempt - 1) * (0.5 + rng.random()))


def _checkpoint(lake: Lake, exchange: str, symbol: str, timeframe: str) -> int | None:
    lake.db.execute(_DDL)
    row = lake.db.execute(
        "SELECT next_ms FROM ingest_checkpoints WHERE exchange = ? AND symbol = ? AND timeframe = ?",
        (exchange, symbol, timeframe),
    ).fetchone()
    return None if row is None else int(row[0])


def _set_checkpoint(lake: Lake, exchange: str, symbol: str, timeframe: str, next_ms: int) -> None:
    with mf.immediate(lake.db):
        lake.db.execute(
            "INSERT INTO ingest_checkpoints (exchange, symbol, timeframe, next_ms, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET next_ms = max(next_ms, excluded.next_ms),"
            " updated = excluded.updated",
            (exchange, symbol, timeframe, next_ms, mf.now_iso()),
        )


def _candles_table(rows: list[list[Any]], symbol: str) -> tuple[pa.Table, int]:
    """Sorted, deduplicated candles (the copy fetched last wins) and the number of duplicates dropped."""
    import numpy as np
    import pyarrow as pa

    arr = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)  # None -> NaN, then the checks see it
    ts = arr[:, 0].astype(np.int64)
    # last occurrence of every open time: first occurrence in the reversed order
    _, first_rev = np.unique(ts[::-1], return_index=True)
    keep = len(ts) - 1 - first_rev  # ascending open time
    arr, ts = arr[keep], ts[keep]
    table = pa.table(
        {
            "ts": pa.array(ts * 1000, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array([symbol] * len(ts), pa.string()),
            "open": arr[:, 1],
            "high": arr[:, 2],
            "low": arr[:, 3],
            "close": arr[:, 4],
            "volume": arr[:, 5],
        }
    )
    return table, len(rows) - len(ts)


def _gaps(ts_ms: Any, start: int, end: int, step: int) -> list[tuple[int, int]]:
    """Missing candle ranges [first, last] (ms) between ``start`` and ``end`` (exclusive)."""
    import numpy as np

    edges = np.concatenate([[start - step], np.asarray(ts_ms, dtype=np.int64), [end]])
    jumps = np.flatnonzero(np.diff(edges) > step)
    return [(int(edges[i] + step), int(edges[i + 1] - step)) for i in jumps]


def _outputs(report: Backfill) -> list[openlineage.Ref]:
    return [(p["id"], p["name"]) for info in report.symbols.values() for p in info["partitions"]]


@openlineage.emits(
    lambda a: f"ingest/ccxt/{a['exchange']}",
    inputs=lambda a: [openlineage.External(f"ccxt://{a['exchange']}", f"{s}/{a['timeframe']}") for s in a["symbols"]],
    outputs=_outputs,
)
def backfill(
    lake: Lake,
    exchange: str,
    symbols: list[str],
    timeframe: str,
    since: str | int,
    until: str | int | None = None,
    *,
    partition: str = "day",
    api_url: str | None = None,
    restart: bool = False,
    retries: int = 6,
    base_delay: float = 0.5,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    exchange_client: Any = None,
) -> Backfill:
    """Backfill ``symbols`` from ``since`` to ``until`` (default: now) into day or month partitions."""
    import ccxt

    from artifact_lake.schemas import bad_rows, conform

    if partition not in ("day", "month"):
        raise InvalidInput(f"--partition must be day or month, not {partition!r}")
    since_ms = parse_time_ms(since, "--since")
    until_ms = parse_time_ms(until, "--until")
    assert since_ms is not None
    ex = exchange_client or make_exchange(exchange, api_url, timeout_ms=timeout_ms, rate_limit_ms=rate_limit_ms)
    rng = random.Random(0)
    report = Backfill(exchange, timeframe)
    retries_seen: dict[str, int] = {}

    def retry(kind: str) -> None:
        retries_seen[kind] = retries_seen.get(kind, 0) + 1

    t0 = time.perf_counter()
    _call(ex.load_markets, retries=retries, base_delay=base_delay, rng=rng, on_retry=retry)
    report.ccxt_seconds += time.perf_counter() - t0
    if timeframe not in (ex.timeframes or {}):
        raise ExchangeFailed(f"{exchange} has no timeframe {timeframe!r} (it has {', '.join(ex.timeframes or {})})")
    step = int(ex.parse_timeframe(timeframe) * 1000)
    limit = int((ex.features or {}).get("spot", {}).get("fetchOHLCV", {}).get("limit") or 500)
    if until_ms is not None:
        end_ms = until_ms
    else:  # the exchange's clock decides which candles are closed; the local one if it has none
        t1 = time.perf_counter()
        try:
            end_ms = int(_call(ex.fetch_time, retries=retries, base_delay=base_delay, rng=rng, on_retry=retry))
        except (ExchangeFailed, ccxt.NotSupported, TypeError):
            end_ms = ex.milliseconds()
        report.ccxt_seconds += time.perf_counter() - t1
    schema = lake.registry.get("ohlcv")
    for symbol in symbols:
        if symbol not in ex.markets:
            raise ExchangeFailed(f"{exchange} has no market {symbol!r}")
        start = since_ms
        if not restart:
            cp = _checkpoint(lake, exchange, symbol, timeframe)
            if cp is not None and cp > start:
                start = cp
        start = -(-start // step) * step
        info: dict[str, Any] = {
            "resumed_from": start if start != since_ms else None,
            "candles": 0,
            "pages": 0,
            "partitions": [],
            "gaps": 0,
            "duplicates": 0,
            "quarantined": 0,
        }
        report.symbols[symbol] = info
        cursor = start
        pending: list[list[Any]] = []
        label, p_start, p_end = _period(start, partition)
        while True:
            if cursor < end_ms:
                t1 = time.perf_counter()
                page = _call(
                    partial(ex.fetch_ohlcv, symbol, timeframe, since=cursor, limit=limit),
                    retries=retries,
                    base_delay=base_delay,
                    rng=rng,
                    on_retry=retry,
                )
                report.ccxt_seconds += time.perf_counter() - t1
                info["pages"] += 1
                # closed candles of the range only (the one still forming at `end` is left out)
                page = [r for r in page if cursor <= r[0] and r[0] + step <= end_ms]
                cursor = max(r[0] for r in page) + step if page else cursor + limit * step
                pending += page
                info["candles"] += len(page)
                if progress is not None:
                    progress(
                        {
                            "symbol": symbol,
                            "candles": info["candles"],
                            "pages": info["pages"],
                            "done_ms": min(cursor, end_ms) - start,
                            "total_ms": max(end_ms - start, 1),
                        }
                    )
            finished = cursor >= end_ms
            # publish every partition wholly behind the cursor (all of them once the range is done)
            while p_start < end_ms and (p_end <= cursor or finished):
                t2 = time.perf_counter()
                part = [r for r in pending if p_start <= r[0] < p_end]
                pending = [r for r in pending if r[0] >= p_end]
                complete = p_end <= end_ms
                _publish_partition(
                    lake,
                    schema,
                    conform,
                    bad_rows,
                    exchange,
                    symbol,
                    timeframe,
                    step,
                    label,
                    p_start,
                    min(p_end, end_ms),
                    part,
                    complete,
                    partition,
                    info,
                    ccxt.__version__,
                )
                if complete:
                    _set_checkpoint(lake, exchange, symbol, timeframe, p_end)
                report.our_seconds += time.perf_counter() - t2
                label, p_start, p_end = _period(p_end, partition)
            if finished:
                break
        info["retries"] = dict(retries_seen)
    return report


def _publish_partition(
    lake: Lake,
    schema: Any,
    conform: Any,
    bad_rows: Any,
    exchange: str,
    symbol: str,
    timeframe: str,
    step: int,
    label: str,
    start: int,
    end: int,
    rows: list[list[Any]],
    complete: bool,
    partition: str,
    info: dict[str, Any],
    ccxt_version: str,
) -> None:
    import json

    import pyarrow as pa

    table, dups = _candles_table(rows, symbol)
    table = conform(table, schema, f"{exchange} {symbol} {timeframe} {label}")
    bad, reasons = bad_rows(table, schema)
    base = f"{exchange}/{symbol}/{timeframe}/{label}" + ("" if complete else ".partial")
    if len(bad):
        import numpy as np

        keep = pa.array(np.setdiff1d(np.arange(table.num_rows), bad), pa.int64())
        records = table.take(pa.array(bad)).to_pylist()
        quarantine = pa.table(
            {
                "row": pa.array(bad, pa.int64()),
                "reason": pa.array(reasons, pa.string()),
                "record": pa.array([json.dumps(r, default=str, sort_keys=True) for r in records], pa.string()),
            }
        )
        lake.publish(
            quarantine,
            "quarantine",
            name=f"quarantine/{base}",
            meta={"source": "ccxt", "exchange": exchange, "symbol": symbol, "timeframe": timeframe},
        )
        table = table.take(keep)
        info["quarantined"] += len(bad)
    ts_ms = table.column("ts").cast(pa.int64()).to_numpy() // 1000
    gaps = _gaps(ts_ms, start, end, step)
    missing = sum((b - a) // step + 1 for a, b in gaps)
    meta = {
        "source": "ccxt",
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "partition": partition,
        "period": label,
        "complete": complete,
        "ccxt_version": ccxt_version,
        "first_ts": int(ts_ms[0]) if len(ts_ms) else None,
        "last_ts": int(ts_ms[-1]) if len(ts_ms) else None,
        "gap_count": missing,
        "gaps": [
            [datetime.fromtimestamp(a / 1000, UTC).isoformat(), datetime.fromtimestamp(b / 1000, UTC).isoformat()]
            for a, b in gaps[:100]
        ],
        "duplicates_dropped": dups,
    }
    rec = lake.publish(table, "ohlcv", name=f"ohlcv/{base}", meta=meta)
    info["partitions"].append(
        {
            "name": f"ohlcv/{base}",
            "id": rec.id,
            "rows": rec.rows,
            "gap_count": missing,
            "deduplicated": rec.deduplicated,
        }
    )
    info["gaps"] += missing
    info["duplicates"] += dups
