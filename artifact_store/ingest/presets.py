"""Presets: small declarative mappings for file layouts people download (``lake ingest file --preset NAME``).

A preset fixes what sniffing cannot know (no header, the column names, the unit of epoch times) and which
columns the typed artifact leaves out. Options given on the command line win over the preset's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidInput


@dataclass(frozen=True)
class Preset:
    """One known layout: how to read it and how its columns map onto the type's."""

    name: str
    """What ``--preset`` takes."""
    description: str
    """One line for ``--list-presets``."""
    type: str = "ohlcv"
    """The artifact type the layout holds."""
    header: bool | None = None
    """False: the file has no header row (``columns`` names them)."""
    columns: tuple[str, ...] | None = None
    """Column names in file order, for header-less layouts."""
    mapping: dict[str, str] = field(default_factory=dict)
    """Source column -> type column, beyond the standard names."""
    drop: tuple[str, ...] = ()
    """Columns the typed artifact leaves out (the raw artifact keeps the whole file)."""
    ts_unit: str | None = None
    """Unit of epoch times; ``auto``: ms or us, told by the magnitude (Binance moved to us in 2025)."""
    adjust_by: str | None = None
    """A column of adjusted closes: open, high, low and close are scaled by it / close."""
    symbol_from_name: bool = False
    """Take the symbol from the file name up to its first ``-`` (``BTCUSDT-1m-2024-01.zip`` -> ``BTCUSDT``)."""


_KLINES = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "binance-klines",
            "Binance public kline files (data.binance.vision): no header, 12 columns, open time in ms or us",
            header=False,
            columns=_KLINES,
            drop=_KLINES[6:],
            ts_unit="auto",
            symbol_from_name=True,
        ),
        Preset(
            "yahoo",
            "Yahoo Finance CSV (Date,Open,High,Low,Close,Adj Close,Volume); Adj Close left out",
            drop=("Adj Close",),
        ),
        Preset(
            "yahoo-adjusted",
            "Yahoo Finance CSV with open, high, low and close scaled by Adj Close / Close",
            drop=("Adj Close",),
            adjust_by="Adj Close",
        ),
        Preset(
            "backtesting",
            "backtesting.py's CSVs (GOOG.csv, EURUSD.csv, BTCUSD.csv): an unnamed time index, Open..Volume",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or an error that lists them."""
    try:
        return PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidInput(f"unknown preset {name!r}: {hint}presets are {', '.join(PRESETS)}") from None
