"""Publishing a Parquet file streams it (issue #15, item 3): batch by batch, the same id and the same verdict
as the whole table in memory, rows named by their row in the file, a refused file leaves the lake as it was,
and memory does not grow with the file."""

from __future__ import annotations

import re
import subprocess
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from artifact_lake.artifact_store import Lake, content_id
from artifact_lake.artifact_store._stream import open_parquet, stream_file
from artifact_lake.artifact_store.hashing import ContentHasher, file_hash
from artifact_lake.artifact_store.objects import object_path
from artifact_lake.schemas import Registry, ValidationError, conform, validate
from tests.conftest import PYTHON, lake_state, subprocess_env

LAKE = [PYTHON, "-m", "artifact_lake.cli"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OHLCV = Registry().get("ohlcv")

# A lake type with both checks that span batches, over nullable columns (nulls have their own rules there).
KEYED = """
name = "keyed"
version = 1

[[columns]]
name = "k"
type = "int64"
nullable = true

[[columns]]
name = "g"
type = "string"
nullable = true

[[columns]]
name = "t"
type = "int64"
nullable = true

[[checks]]
kind = "unique"
columns = ["k"]

[[checks]]
kind = "increasing"
column = "t"
by = ["g"]
"""


def _ohlcv(n: int, symbols: int = 3, seed: int = 0) -> pa.Table:
    """Bars of ``symbols`` instruments interleaved row by row (each symbol's ts increases across the table)."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.int64)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])[:n]
    spread = np.abs(rng.normal(0, 1e-3, n)) * close
    return pa.table(
        {
            "ts": pa.array((1_704_067_200 + (i // symbols) * 60) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "symbol": pa.array(np.array(["A", "B", "C", "D"])[i % symbols]),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.lognormal(3, 0.6, n),
        }
    )


def _write(table: pa.Table, path, row_group: int, **kw) -> None:
    pq.write_table(table, path, row_group_size=max(1, row_group), **kw)


def _stream_id(lake: Lake, path, schema, batch_rows: int) -> str:
    got = stream_file(lake.root, path, open_parquet(path), schema, str(path), batch_rows=batch_rows)
    got.staged.discard()
    return got.artifact_id


def _verdict(exc: ValidationError) -> tuple[int | None, str | None, str]:
    """Row, column and message, without the source and the count of other bad rows (a stream stops early)."""
    text = str(exc).split(": ", 1)[1]
    return exc.row, exc.column, re.sub(r" \((at least )?\d+ more bad row\(s\)\)$", "", text)


# -- identity ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory):
    """One lake for every example of a property (with the ``keyed`` type); examples leave nothing in it."""
    root = tmp_path_factory.mktemp("shared") / "lake"
    (root / "schemas").mkdir(parents=True)
    (root / "schemas" / "keyed.toml").write_text(KEYED)
    with Lake.open(root) as lake:
        yield lake


def _input(lake: Lake):
    return lake.root.parent / "in.parquet"


@SETTINGS
@given(st.integers(0, 2000), st.integers(1, 700), st.integers(7, 900), st.data())
def test_the_id_of_a_streamed_file_is_the_id_of_its_table_whatever_the_split(
    shared_lake, n, row_group, batch_rows, data
):
    table = _ohlcv(n, symbols=data.draw(st.integers(1, 4)), seed=n)
    path = _input(shared_lake)
    _write(table, path, row_group, compression=data.draw(st.sampled_from(["zstd", "snappy", "none"])))
    expected = content_id(conform(table, OHLCV), "ohlcv", 1)
    assert _stream_id(shared_lake, path, OHLCV, batch_rows) == expected
    assert list((shared_lake.root / "tmp").iterdir()) == []  # the staged object was discarded


@SETTINGS
@given(st.integers(0, 200), st.lists(st.integers(0, 200), max_size=6))
def test_the_content_hasher_does_not_see_where_the_parts_end(n, cuts):
    table = conform(_ohlcv(n, seed=n), OHLCV)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    hasher = ContentHasher(table.schema, "ohlcv", 1)
    for a, b in zip(bounds, bounds[1:], strict=False):
        for batch in table.slice(a, b - a).to_batches():
            hasher.feed(batch)
    assert hasher.rows == n
    assert hasher.hexdigest() == content_id(table, "ohlcv", 1)


def test_file_and_table_publish_as_one_artifact_with_the_same_bytes(tmp_path):
    table = _ohlcv(30_000)
    path = tmp_path / "in.parquet"
    _write(table, path, 7_777, compression="snappy")
    with Lake.open(tmp_path / "a") as a, Lake.open(tmp_path / "b") as b:
        from_table = a.publish(table, "ohlcv")
        from_file = b.publish(path, "ohlcv", name="px")
        assert from_file.id == from_table.id and from_file.rows == 30_000 and not from_file.deduplicated
        # re-encoded with the lake's settings, in the same row groups: the same bytes as the in-memory writer
        assert object_path(b.root, from_file.id).read_bytes() == object_path(a.root, from_table.id).read_bytes()
        assert b.get("px").columns == a.get(from_table.id).columns
        assert b.verify().ok and b.read("px").equals(a.read(from_table.id))


def test_a_file_already_canonical_is_kept_as_it_is(tmp_path):
    """A file the lake wrote (exported, or an object of another lake) is stored byte for byte; the id is the
    same, and verify finds the object clean. Any other file is re-encoded."""
    table = _ohlcv(5_000)
    with Lake.open(tmp_path / "a") as a, Lake.open(tmp_path / "b") as b:
        rec = a.publish(table, "ohlcv")
        exported = a.export(rec.id, tmp_path / "export.parquet")
        kept = b.publish(exported, "ohlcv")
        assert kept.id == rec.id and not kept.deduplicated
        assert object_path(b.root, kept.id).read_bytes() == exported.read_bytes()
        assert b.get(kept.id).file_hash == file_hash(exported)
        assert b.verify().ok
    # the same rows with another codec, with nullable columns, or without the lake's metadata are re-encoded
    canonical = conform(table, OHLCV)
    for i, (data, codec) in enumerate([(canonical, "snappy"), (table, "zstd"), (canonical, "zstd")]):
        src = tmp_path / f"other{i}.parquet"
        pq.write_table(data, src, compression=codec)
        with Lake.open(tmp_path / f"c{i}") as c:
            again = c.publish(src, "ohlcv")
            assert again.id == rec.id
            assert object_path(c.root, again.id).read_bytes() == exported.read_bytes() != src.read_bytes()


def test_republished_bytes_are_deduplicated_from_the_sources_table(tmp_path):
    path = tmp_path / "in.parquet"
    _write(_ohlcv(20_000), path, 3_000)
    with Lake.open(tmp_path / "lake") as lake:
        first = lake.publish(path, "ohlcv", name="px")
        again = lake.publish(path, "ohlcv", name="px")
        assert again.id == first.id and again.deduplicated and again.version == 1
        (count,) = lake.db.execute("SELECT count(*) FROM sources WHERE file_hash = ?", (file_hash(path),)).fetchone()
        assert count == 1
        assert len(list((lake.root / "objects").rglob("*.parquet"))) == 1


# -- checks across batches -------------------------------------------------------------------------------
@st.composite
def keyed_tables(draw):
    n = draw(st.integers(0, 40))
    cells = {
        "k": st.one_of(st.none(), st.integers(0, 60)),
        "g": st.one_of(st.none(), st.sampled_from(["x", "y"])),
        "t": st.one_of(st.none(), st.integers(0, 8)),
    }
    types = {"k": pa.int64(), "g": pa.string(), "t": pa.int64()}
    return pa.table({c: pa.array(draw(st.lists(s, min_size=n, max_size=n)), types[c]) for c, s in cells.items()})


@SETTINGS
@given(keyed_tables(), st.integers(1, 8))
def test_checks_across_batches_refuse_what_the_whole_table_refuses(shared_lake, table, batch_rows):
    path = _input(shared_lake)
    _write(table, path, 5)
    schema = shared_lake.registry.get("keyed")
    try:
        validate(table, schema, str(path))
    except ValidationError as exc:
        event(f"refused: {exc.args[0].split('breaks ')[1].split(' (')[0]}")
        with pytest.raises(ValidationError) as streamed:
            _stream_id(shared_lake, path, schema, batch_rows)
        assert _verdict(streamed.value) == _verdict(exc)
    else:
        event("accepted")
        assert _stream_id(shared_lake, path, schema, batch_rows) == content_id(conform(table, schema), "keyed", 1)
    assert list((shared_lake.root / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("fault", "column", "message"),
    [
        ("repeat", "ts", "breaks no duplicate (symbol, ts)"),  # the row before it in its group is in the batch before
        ("low", "low", "value 1000000000.0 breaks low <= open"),
    ],
)
def test_a_bad_row_in_a_late_row_group_names_its_row_in_the_file(tmp_path, fault, column, message):
    table = _ohlcv(12_000)
    bad_row = 8_000  # batches of 4,000 rows: the first row of the third batch
    if fault == "repeat":  # the same ts as the symbol's row before it, which lies in the second batch
        ts = table.column("ts").to_numpy().copy()
        ts[bad_row] = ts[bad_row - 3]
        table = table.set_column(0, "ts", pa.array(ts, pa.timestamp("us", tz="UTC")))
    else:
        low = table.column("low").to_numpy().copy()
        low[bad_row] = 1e9
        table = table.set_column(4, "low", pa.array(low))
    path = tmp_path / "bad.parquet"
    _write(table, path, 1_000)
    with Lake.open(tmp_path / "lake") as lake:
        lake.publish(_ohlcv(10), "ohlcv", name="keep")
        before = lake_state(lake.root)
        with pytest.raises(ValidationError) as streamed:
            stream_file(lake.root, path, open_parquet(path), OHLCV, str(path), batch_rows=4_000)
        with pytest.raises(ValidationError) as whole:
            validate(table, OHLCV, str(path))
        assert _verdict(streamed.value) == _verdict(whole.value)
        assert streamed.value.row == bad_row and streamed.value.column == column
        assert f"column {column!r}, row {bad_row}: " in str(streamed.value) and message in str(streamed.value)
        with pytest.raises(ValidationError, match=f"row {bad_row}: "):
            lake.publish(path, "ohlcv", name="keep")
        assert lake_state(lake.root) == before  # no object, no manifest row, nothing left in tmp/
        assert lake.verify().ok and lake.gc(grace=0).removed == []


def test_the_cli_refuses_a_bad_late_row_in_one_line_and_changes_nothing(tmp_path):
    table = _ohlcv(1_200_000, symbols=2)  # two batches of the CLI's size
    close = table.column("close").to_numpy().copy()
    close[1_100_001] = float("nan")
    table = table.set_column(5, "close", pa.array(close))
    path = tmp_path / "bad.parquet"
    _write(table, path, 100_000, compression="zstd")
    root = tmp_path / "lake"
    Lake.open(root).close()
    before = lake_state(root)
    r = subprocess.run(
        [*LAKE, "--lake", str(root), "publish", str(path), "--type", "ohlcv"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: type 'ohlcv': column 'close', row 1100001: value nan breaks finite"), line
    assert lake_state(root) == before


# -- memory ----------------------------------------------------------------------------------------------
MEASURE = textwrap.dedent(
    """
    import resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True, capture_output=True)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    """
)


def _peak_rss(args: list[str]) -> int:
    """Peak resident bytes of one whole command (a fresh parent, so no other child counts)."""
    r = subprocess.run([PYTHON, "-c", MEASURE, *args], capture_output=True, text=True, env=subprocess_env())
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _ohlcv_file(path, rows: int, row_group: int = 500_000) -> int:
    """Write ``rows`` rows in row groups (never all in memory); the bytes the whole table takes in memory."""
    writer = None
    nbytes = 0
    for start in range(0, rows, row_group):
        part = _ohlcv(min(row_group, rows - start), symbols=1, seed=start)
        ts = pa.array((1_704_067_200 + np.arange(start, start + part.num_rows) * 60) * 1_000_000, part.field("ts").type)
        part = part.set_column(0, "ts", ts)
        if writer is None:
            writer = pq.ParquetWriter(path, part.schema, compression="zstd")
        writer.write_table(part)
        nbytes += conform(part, OHLCV).nbytes
    assert writer is not None
    writer.close()
    return nbytes


@pytest.mark.slow
def test_memory_does_not_grow_with_the_file(tmp_path):
    """Publishing 3M and 9M rows (about 0.15 and 0.45 GB in memory) peaks at about the same resident size
    (measured: 0.35 to 0.36 GB for both; at 2^19-row batches 0.39 and 0.43 to 0.46 GB), and well below what
    reading the 9M-row table whole takes (1.06 GB; what publish did before)."""
    small, big = tmp_path / "small.parquet", tmp_path / "big.parquet"
    small_bytes = _ohlcv_file(small, 3_000_000)
    big_bytes = _ohlcv_file(big, 9_000_000)
    peaks = {}
    for name, path in (("small", small), ("big", big)):
        peaks[name] = _peak_rss([*LAKE, "--lake", str(tmp_path / name), "publish", str(path), "--type", "ohlcv"])
    read_all = _peak_rss([PYTHON, "-c", f"import pyarrow.parquet as pq; pq.read_table({str(big)!r})"])
    assert peaks["big"] - peaks["small"] < 0.3 * (big_bytes - small_bytes), (peaks, small_bytes, big_bytes)
    assert peaks["big"] < 0.6 * read_all, (peaks, read_all)
    with Lake.open(tmp_path / "big") as lake:
        assert lake.verify().ok


# -- crash safety and full disks, as for a table --------------------------------------------------------
KILLED = textwrap.dedent(
    """
    import sys
    from artifact_lake.artifact_store import Lake
    Lake.open(sys.argv[1]).publish(sys.argv[2], "ohlcv", name="victim")
    """
)
LIMITED = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from artifact_lake.cli.main import lake_main
    sys.argv = ["lake", "--lake", sys.argv[1], "publish", sys.argv[2], "--type", "ohlcv"]
    lake_main()
    """
)


@pytest.fixture(params=["usual", "canonical"])
def source_file(request, tmp_path):
    """A 30,000-row file (about 1 MB as an object): as pyarrow writes it, or as the lake does (kept as is)."""
    table = _ohlcv(30_000)
    if request.param == "usual":
        path = tmp_path / "usual.parquet"
        _write(table, path, 7_000)
        return path
    with Lake.open(tmp_path / "other") as other:
        return other.export(other.publish(table, "ohlcv").id, tmp_path / "canonical.parquet")


def test_a_publisher_killed_after_staging_a_file_leaves_what_gc_removes(tmp_path, source_file):
    root = tmp_path / "lake"
    Lake.open(root).close()
    proc = subprocess.run(
        [PYTHON, "-c", KILLED, str(root), str(source_file)],
        env=subprocess_env(ARTIFACT_LAKE_CRASH_AT="after-stage"), capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    with Lake.open(root) as lake:
        assert [p.kind for p in lake.verify().problems] == ["stale"]
        assert len(lake.gc(grace=0).removed) == 1 and lake.verify().ok
        assert lake.find() == [] and lake.publish(source_file, "ohlcv", name="victim").version == 1


def test_a_full_disk_while_staging_a_file_is_one_line_and_changes_nothing(tmp_path, source_file):
    root = tmp_path / "lake"
    Lake.open(root).close()
    before = lake_state(root)
    r = subprocess.run(
        [PYTHON, "-c", LIMITED, str(root), str(source_file)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: disk full while staging the object of {source_file} in {root / 'tmp'}"), line
    assert lake_state(root) == before
