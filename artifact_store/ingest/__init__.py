"""Ways data gets into the lake, validated and idempotent: ccxt OHLCV backfills, file imports, alert feeds."""

from .alerts import AlertIngest, ingest_alerts
from .ccxt_source import Backfill, backfill
from .files import FileImport, import_file

__all__ = ["AlertIngest", "Backfill", "FileImport", "backfill", "import_file", "ingest_alerts"]
