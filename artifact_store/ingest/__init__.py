"""Ways data gets into the lake, validated and idempotent: ccxt OHLCV backfills, file imports, alert feeds.

The names load on first use (PEP 562): projections read ``ingest.calendars`` on every open of a lake, and
must not pay for the file readers, the sniffer and ccxt's plumbing with it (measured: 10 ms of ``lake find``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .alerts import AlertIngest, ingest_alerts
    from .ccxt_source import Backfill, backfill
    from .files import FileImport, import_file

__all__ = ["AlertIngest", "Backfill", "FileImport", "backfill", "import_file", "ingest_alerts"]

_WHERE = {
    "AlertIngest": "alerts",
    "ingest_alerts": "alerts",
    "Backfill": "ccxt_source",
    "backfill": "ccxt_source",
    "FileImport": "files",
    "import_file": "files",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
