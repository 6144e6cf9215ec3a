"""A local HTTP server on 127.0.0.1 that speaks enough of Binance's spot REST API for ccxt's real client:
``/api/v3/exchangeInfo`` and ``/api/v3/klines``, over a seeded candle series, with injectable faults.

Faults (``FakeBinance.faults``, consumed in order by kline requests): ``429`` (rate limited, with
Retry-After), ``500``/``503`` (unavailable), ``timeout`` (answers after the client gave up), ``duplicate``
(the page repeats its first candle), ``shuffle`` (the page's candles out of order), and ``bad`` (one
candle whose high is below its low). ``gaps`` are candle open times (ms) the exchange never had.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

SYMBOLS = {"BTCUSDT": ("BTC", "USDT", 30_000.0), "ETHUSDT": ("ETH", "USDT", 2_000.0)}
INTERVALS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}


def _noise(k: np.ndarray, salt: float) -> np.ndarray:
    """Deterministic pseudo-noise in [-0.5, 0.5) from an integer index (no state, any page boundaries)."""
    x = np.sin(k * 12.9898 + salt * 78.233) * 43758.5453
    return x - np.floor(x) - 0.5


def candles(symbol: str, opens_ms: np.ndarray, step_ms: int) -> list[list]:
    """Binance kline rows: the same (symbol, open time) always gives the same candle."""
    base = SYMBOLS[symbol][2]
    salt = float(sum(map(ord, symbol)))
    k = (opens_ms // step_ms).astype(np.float64)
    o = base * (1 + 0.01 * np.sin(k / 500.0)) * (1 + 0.001 * _noise(k, salt))
    c = o * (1 + 0.002 * _noise(k, salt + 1))
    h = np.maximum(o, c) * (1 + 0.001 * np.abs(_noise(k, salt + 2)))
    lo = np.minimum(o, c) * (1 - 0.001 * np.abs(_noise(k, salt + 3)))
    v = 5 + 4 * _noise(k, salt + 4)
    return [
        [
            int(t),
            f"{a:.2f}",
            f"{b:.2f}",
            f"{d:.2f}",
            f"{e:.2f}",
            f"{f:.5f}",
            int(t) + step_ms - 1,
            f"{f * e:.2f}",
            10,
            f"{f / 2:.5f}",
            f"{f * e / 2:.2f}",
            "0",
        ]
        for t, a, b, d, e, f in zip(
            opens_ms.tolist(), o.tolist(), h.tolist(), lo.tolist(), c.tolist(), v.tolist(), strict=True
        )
    ]


class FakeBinance:
    """Start with ``with FakeBinance(now_ms=...) as ex: ex.url``; ``ex.requests`` counts kline calls."""

    def __init__(
        self,
        *,
        now_ms: int,
        listed_from_ms: int = 0,
        faults: list[str] | None = None,
        gaps: set[int] | None = None,
        timeout_sleep: float = 1.5,
        max_limit: int = 1000,
    ) -> None:
        self.now_ms = now_ms
        self.listed_from_ms = listed_from_ms
        self.faults = list(faults or [])
        self.gaps = set(gaps or ())
        self.timeout_sleep = timeout_sleep
        self.max_limit = max_limit
        self.requests = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def reply(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v3/exchangeInfo":
                    return self.reply(200, fake.exchange_info())
                if url.path == "/api/v3/time":
                    return self.reply(200, {"serverTime": fake.now_ms})
                if url.path == "/api/v3/klines":
                    return fake.klines(self, q)
                return self.reply(404, {"code": -1, "msg": f"no route {url.path}"})

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout fault) closes the socket under us: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeBinance:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def exchange_info(self) -> dict:
        symbols = []
        for sym, (base, quote, _) in SYMBOLS.items():
            symbols.append(
                {
                    "symbol": sym,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01",
                            "maxPrice": "1000000.00",
                            "tickSize": "0.01",
                        },
                        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00", "stepSize": "0.00001"},
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def klines(self, h: BaseHTTPRequestHandler, q: dict[str, str]) -> None:
        with self.lock:
            self.requests += 1
            fault = self.faults.pop(0) if self.faults else None
        reply = h.reply  # type: ignore[attr-defined]
        if fault == "429":
            return reply(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "0"})
        if fault in ("500", "503"):
            return reply(int(fault), {"code": -1001, "msg": "Internal error; unable to process your request."})
        if fault == "timeout":
            time.sleep(self.timeout_sleep)
            return reply(503, {"code": -1001, "msg": "late"})
        symbol = q.get("symbol", "")
        if symbol not in SYMBOLS:
            return reply(400, {"code": -1121, "msg": "Invalid symbol."})
        if q.get("interval") not in INTERVALS:
            return reply(400, {"code": -1120, "msg": "Invalid interval."})
        step = INTERVALS[q["interval"]]
        limit = min(int(q.get("limit", 500)), self.max_limit)
        start = int(q.get("startTime", self.listed_from_ms))
        end = int(q.get("endTime", self.now_ms))
        t = max(start, self.listed_from_ms)
        t = -(-t // step) * step
        last = min(end, self.now_ms)  # up to the candle in progress, as the real exchange
        opens = []
        while len(opens) < limit and t <= last:
            if t not in self.gaps:
                opens.append(t)
            t += step
        rows = candles(symbol, np.array(opens, dtype=np.int64), step) if opens else []
        if fault == "duplicate" and rows:
            rows.insert(1, list(rows[0]))
        if fault == "shuffle" and len(rows) > 3:
            rows[1], rows[2] = rows[2], rows[1]
        if fault == "bad" and len(rows) > 2:
            rows[2] = list(rows[2])
            rows[2][2], rows[2][3] = rows[2][3], rows[2][2]  # high below low
            if float(rows[2][2]) >= float(rows[2][3]):
                rows[2][2] = f"{float(rows[2][3]) * 0.9:.2f}"
        return reply(200, rows)
