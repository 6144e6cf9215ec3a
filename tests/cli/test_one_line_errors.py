"""Usage mistakes and bad --out paths are one `error:` line, exit 2, nothing written; a full disk is not a bug."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from artifact_lake.cli.main import experiments, lake
from tests.conftest import PYTHON, lake_state, subprocess_env


@pytest.fixture
def root(tmp_path, ohlcv):
    from artifact_lake.artifact_store import Lake

    with Lake.open(tmp_path / "lk") as lk:
        lk.publish(ohlcv, "ohlcv", name="px")
    return tmp_path / "lk"


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["cat", "px", "--limit", "-1"],
            "Invalid value for '--limit': -1 is not in the range x>=0. (see 'lake cat -h')",
        ),
        (["find", "--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1. (see 'lake find -h')"),
        (["get", "px", "--out", "x", "--format", "xlsx"], "Invalid value for '--format': 'xlsx' is not one of"),
        (["show"], "Missing argument 'REF'. (see 'lake show -h')"),
        (["--bogus", "find"], "No such option '--bogus'. (see 'lake -h')"),
        (["projection", "build"], "Missing argument 'SPEC'. (see 'lake projection build -h')"),
    ],
)
def test_usage_errors_are_one_line(root, args, says):
    r = CliRunner().invoke(lake, ["--lake", str(root), *args])
    assert says.replace("No such option: ", "No such option") in one_line(r).replace(
        "No such option: ", "No such option"
    )


def test_a_folder_as_file_is_one_line(root, tmp_path):
    line = one_line(CliRunner().invoke(lake, ["--lake", str(root), "publish", str(tmp_path), "--type", "ohlcv"]))
    assert "is a directory" in line


def test_out_into_a_missing_folder_a_folder_or_the_lake_is_refused(root, tmp_path):
    from artifact_lake.artifact_store import Lake

    with Lake.open(root) as lk:
        obj = lk.object_path("px")
        before_bytes = obj.read_bytes()
    before = lake_state(root)
    cases = [
        (str(tmp_path / "nope" / "x.parquet"), "does not exist"),
        (str(tmp_path), "is a directory"),
        (str(obj), "inside the lake's own files"),
        (str(root / "manifest.sqlite"), "inside the lake's own files"),
    ]
    for out, says in cases:
        assert says in one_line(CliRunner().invoke(lake, ["--lake", str(root), "get", "px", "--out", out]))
        q = ["--lake", str(root), "query", "--spec", "ohlcv", "--input", "ohlcv=px", "SELECT 1", "--out", out]
        assert says in one_line(CliRunner().invoke(lake, q))
    assert obj.read_bytes() == before_bytes
    assert lake_state(root) == before
    r = CliRunner().invoke(
        experiments, ["--lake", str(root), "plot", "nothing", "--out", str(tmp_path / "no" / "p.png")]
    )
    assert "does not exist" in one_line(r)


def test_a_full_disk_is_one_line_not_a_bug(root, tmp_path):
    """A real EFBIG: the file-size limit of the process (RLIMIT_FSIZE) stands in for a full disk."""
    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.samples import synthetic_ohlcv

    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=5000, seed=1), "ohlcv", name="px")  # ~1 MB as CSV
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        "from artifact_lake.cli.main import lake_main\n"
        "sys.argv = ['lake', '--lake', sys.argv[1], 'get', 'px', '--out', sys.argv[2], '--format', 'csv']\n"
        "lake_main()\n"
    )
    before = lake_state(root)
    r = subprocess.run(
        [PYTHON, "-c", code, str(root), str(tmp_path / "big.csv")], capture_output=True, text=True,
        env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: disk full while writing") and "File too large" in line
    assert lake_state(root) == before
