"""Reading the files people have: CSV/TSV through DuckDB's sniffer, gzip and one-CSV zips, JSON lines, Parquet.

The format is told by the file's first bytes (Parquet ``PAR1``, gzip ``1f 8b``, zip ``PK``), JSON lines by the
suffix ``.jsonl``/``.ndjson``, and everything else is CSV. DuckDB's ``read_csv`` sniffs the delimiter, quoting,
header and types; :class:`CsvOptions` overrides what sniffing cannot know (a decimal comma, a header-less file
of text). This reads the user's own file with a plain in-memory DuckDB connection, outside the projection
sandbox: only the path the user gave is read, and every value goes in as a parameter.

Invariant: a header-less file never loses its first row. DuckDB takes the first row as a header when its types
differ from the rest; when every detected header name is itself a number or a time (``1492592400000``,
``2024-01-02``), the header was data and the file is read again without one.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._inputs import regular_file
from ..errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class CsvOptions:
    """What to tell DuckDB's CSV reader when sniffing is not enough (None: let it sniff)."""

    delimiter: str | None = None
    """Field separator, e.g. ``;`` or ``\\t``."""
    decimal: str | None = None
    """Decimal separator, ``.`` or ``,`` (with ``,`` a ``.`` is the thousands separator)."""
    header: bool | None = None
    """False: the first row is data; None: sniff (with the header-was-data check)."""
    columns: tuple[str, ...] | None = None
    """Column names, in file order (with ``header=False``, or replacing the file's header)."""
    skip_rows: int = 0
    """Lines to skip before the header (or the first row)."""


@dataclass(frozen=True)
class Source:
    """A file as read: the table, the format in words, and whether a header row was read."""

    table: pa.Table
    format: str
    """``CSV``, ``CSV (gzip)``, ``CSV (zip: member.csv)``, ``JSON lines`` or ``Parquet``."""
    header: bool


_VALUE = re.compile(r"^[+-]?(\d+([.,]\d*)?|\.\d+)([eE][+-]?\d+)?$|^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T].*)?$")


def _looks_like_value(name: str) -> bool:
    return bool(_VALUE.match(name.strip()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_csv(path: Path, options: CsvOptions, where: str) -> tuple[pa.Table, bool]:
    import duckdb

    def run(header: bool | None) -> pa.Table:
        args: list[str] = []
        params: list[object] = [str(path)]

        def arg(key: str, value: object) -> None:
            params.append(value)
            args.append(f"{key} := ${len(params)}")

        if options.delimiter is not None:
            arg("delim", options.delimiter)
        if options.decimal is not None:
            arg("decimal_separator", options.decimal)
            if options.decimal == ",":
                arg("thousands", ".")
        if header is not None:
            arg("header", header)
        if options.columns is not None:
            arg("names", list(options.columns))
        if options.skip_rows:
            arg("skip", options.skip_rows)
        extra = "".join(f", {a}" for a in args)
        con = duckdb.connect(":memory:")
        try:
            return con.sql(f"SELECT * FROM read_csv($1, auto_detect := true{extra})", params=params).to_arrow_table()
        finally:
            con.close()

    try:
        table = run(options.header)
        header = options.header is not False
        if options.header is None and options.columns is None and table.num_columns:
            named = [c for c in table.column_names if not re.fullmatch(r"column\d+", c)]
            if named and all(_looks_like_value(c) for c in named):
                table, header = run(False), False
            elif not named:
                header = False
    except duckdb.Error as exc:
        raise InvalidInput(f"{where}: cannot read it as CSV ({_first_line(exc)})") from exc
    return table, header


def _zip_member(path: Path, where: str) -> tuple[zipfile.ZipFile, str]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{where}: cannot read it as a zip file ({_first_line(exc)})") from exc
    members = [i.filename for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    if len(members) != 1:
        archive.close()
        raise InvalidInput(
            f"{where}: a zip file must hold exactly one CSV file (it holds {len(members)}: "
            f"{', '.join(members[:5]) or 'nothing'})"
        )
    return archive, members[0]


def read_source(path: Path, options: CsvOptions | None = None) -> Source:
    """Read ``path`` (Parquet, JSON lines, CSV, gzip-ed CSV or a zip of one CSV) as a pyarrow Table."""
    import pyarrow as pa

    options = options or CsvOptions()
    where = str(path)
    regular_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        import pyarrow.parquet as pq

        try:
            return Source(pq.read_table(path), "Parquet", True)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{where}: cannot read it as Parquet ({_first_line(exc)})") from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        import pyarrow.json as pjson

        try:
            return Source(pjson.read_json(path), "JSON lines", True)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(f"{where}: cannot read it as JSON lines ({_first_line(exc)})") from exc
    if magic.startswith(b"PK"):
        archive, member = _zip_member(path, where)
        with archive, tempfile.TemporaryDirectory(prefix="lake-zip-") as tmp:
            inner = Path(tmp) / "member.csv"
            with archive.open(member) as src, open(inner, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            table, header = _read_csv(inner, options, f"{where} ({member})")
        return Source(table, f"CSV (zip: {member})", header)
    if magic.startswith(b"\x1f\x8b") and not path.name.lower().endswith(".gz"):
        # DuckDB picks the compression by the name: give it one it recognises
        with tempfile.TemporaryDirectory(prefix="lake-gz-") as tmp:
            link = Path(tmp) / "file.csv.gz"
            link.symlink_to(path.resolve())
            table, header = _read_csv(link, options, where)
        return Source(table, "CSV (gzip)", header)
    table, header = _read_csv(path, options, where)
    return Source(table, "CSV (gzip)" if magic.startswith(b"\x1f\x8b") else "CSV", header)
