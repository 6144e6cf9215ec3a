"""The bad-input campaign of issue #12: every hostile or malformed input, run through the real CLI.

Usage: python bench/campaign.py [--verbose]

Each case builds a fresh lake (with an ``ohlcv`` artifact named ``px``), runs one command through click's
CliRunner and judges it a *clean refusal* when: the exit code is 2 (bad input) or 1 (a failed check), stderr is
exactly one line starting with ``error:``, there is no traceback, the lake's manifest rows and files are
unchanged, and nothing was written outside the lake. It prints one row per case and the count of clean
refusals; the goal is all of them. tests/test_campaign.py runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OHLCV_CSV = "ts,symbol,open,high,low,close,volume\n"


@dataclass
class Case:
    item: str
    name: str
    setup: Callable[[Path, Path], tuple[str, list[str]]]
    """(lake root, scratch folder) -> ("lake" | "experiments", argv); may prepare files first."""
    wrong: str | None = None
    """Text a correct message must not contain (e.g. "no such file" for a FIFO that exists)."""
    accept: bool = False
    """A type that used to crash and now round-trips: published (exit 0), then ``lake verify`` clean."""


def lake_state(root: Path) -> dict[str, Any]:
    db = sqlite3.connect(root / "manifest.sqlite")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: db.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}
    finally:
        db.close()
    files = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "manifest.sqlite" not in p.name and ".lock" not in p.name
    )
    return {"rows": rows, "files": files}


def outside_state(scratch: Path) -> list[str]:
    return sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*") if "lake" not in p.relative_to(scratch).parts)


# -- helpers that prepare inputs ------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _parquet(path: Path, table: Any) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return path


def _spec(scratch: Path, text: str, name: str = "spec.toml") -> str:
    return str(_write(scratch / name, text))


SMA = """
name = "{name}"
kind = "backtest"
[inputs]
ohlcv = ["px"]
[strategy]
name = "sma_cross"
fast = 5
slow = 20
{extra}
"""


def _policy(root: Path, mutate: Callable[[dict[str, list[Any]], dict[str, Any]], None]) -> str:
    """Publish a small valid policy, mutated; return its id."""
    import numpy as np
    import pyarrow as pa
    import torch

    from artifact_lake.artifact_store import Lake
    from artifact_lake.sim.policy import to_rows
    from artifact_lake.sim.ppo import Agent

    torch.manual_seed(0)
    env = {"window": 4, "features": ["logret"], "action_space": "multi_discrete"}
    obs = 4 * 1 + 4
    rows = to_rows(Agent(obs, (3, 2, 3), (8,)), {"norm.mean": np.zeros(obs), "norm.std": np.ones(obs)})
    meta: dict[str, Any] = {"env": env, "reward": {}, "execution": {}, "hidden": [8]}
    mutate(rows, meta)
    with Lake.open(root) as lk:
        return lk.publish(pa.table(rows), "tensors", name="pol", meta=meta).id


def _policy_case(
    mutate: Callable[[dict[str, list[Any]], dict[str, Any]], None],
) -> Callable[[Path, Path], tuple[str, list[str]]]:  # noqa: E501
    def setup(root: Path, scratch: Path) -> tuple[str, list[str]]:
        _policy(root, mutate)
        text = SMA.format(name="pol-bt", extra="").replace('name = "sma_cross"\nfast = 5\nslow = 20', 'name = "policy"')
        text = text.replace('ohlcv = ["px"]', 'ohlcv = ["px"]\npolicy = ["pol"]')
        return "experiments", ["create", _spec(scratch, text)]

    return setup


def _set(key: str, value: Any) -> Callable[[dict[str, list[Any]], dict[str, Any]], None]:
    def mutate(rows: dict[str, list[Any]], meta: dict[str, Any]) -> None:
        target = meta["env"] if key in ("window", "features") else meta
        target[key] = value

    return mutate


def _tensor(fn: Callable[[dict[str, list[Any]]], None]) -> Callable[[dict[str, list[Any]], dict[str, Any]], None]:
    return lambda rows, meta: fn(rows)


def _drop_first(rows: dict[str, list[Any]]) -> None:
    for col in rows.values():
        del col[0]


def _nan_weights(rows: dict[str, list[Any]]) -> None:
    import numpy as np

    n = len(rows["data"][0]) // 4
    rows["data"][0] = np.full(n, np.nan, dtype="<f4").tobytes()


def _schema_file(root: Path, body: str) -> None:
    _write(root / "schemas" / "fills.toml", 'name = "fills"\nversion = 1\n' + body)


def _fills_parquet(scratch: Path, with_null: bool = False) -> str:
    import pyarrow as pa

    return str(_parquet(scratch / "fills.parquet", pa.table({"x": [1.0, None if with_null else 2.0]})))


def cases() -> list[Case]:
    import pyarrow as pa

    MAP = pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64()))  # noqa: N806
    FIXED = pa.array([[1, 2]], pa.list_(pa.int64(), 2))  # noqa: N806
    SECONDS = pa.array([0, 86400], pa.timestamp("s"))  # noqa: N806

    def query(sql: str) -> Callable[[Path, Path], tuple[str, list[str]]]:
        def setup(root: Path, scratch: Path) -> tuple[str, list[str]]:
            from artifact_lake.projections import Lake

            with Lake.open(root) as lk:  # an existing projection: the query itself must change nothing
                key = lk.projection("ohlcv", {"ohlcv": ["px"]}).key
            return "lake", ["query", "--projection", key, sql.format(out=scratch / "stolen", lake=root)]

        return setup

    def publish_table(
        table_fn: Callable[[], Any], type_: str = "table"
    ) -> Callable[[Path, Path], tuple[str, list[str]]]:  # noqa: E501
        return lambda root, scratch: (
            "lake",
            ["publish", str(_parquet(scratch / "in.parquet", table_fn())), "--type", type_],
        )  # noqa: E501

    def fifo(root: Path, scratch: Path) -> tuple[str, list[str]]:
        os.mkfifo(scratch / "pipe.parquet")
        return "lake", ["publish", str(scratch / "pipe.parquet"), "--type", "ohlcv"]

    def null_close() -> Any:
        from artifact_lake.artifact_store.samples import synthetic_ohlcv

        t = synthetic_ohlcv(("A",), bars=10, seed=1)
        close = t.column("close").to_pylist()
        close[3] = None
        return t.set_column(t.schema.get_field_index("close"), "close", pa.array(close, pa.float64()))

    def lake_below_file(root: Path, scratch: Path) -> tuple[str, list[str]]:
        _write(scratch / "afile", "x")
        src = _fills_parquet(scratch)
        return "lake", ["--lake", str(scratch / "afile" / "lk"), "publish", src, "--type", "table"]

    def epoch_1e30(root: Path, scratch: Path) -> tuple[str, list[str]]:
        p = _write(scratch / "e.csv", OHLCV_CSV + "1e30,A,1,2,0.5,1.5,10\n")
        return "lake", ["ingest", "file", str(p), "--type", "ohlcv", "--ts-unit", "ms"]

    def schema_case(body: str, with_null: bool = False) -> Callable[[Path, Path], tuple[str, list[str]]]:
        def setup(root: Path, scratch: Path) -> tuple[str, list[str]]:
            _schema_file(root, body)
            return "lake", ["publish", _fills_parquet(scratch, with_null), "--type", "fills"]

        return setup

    def spec_inputs_5(root: Path, scratch: Path) -> tuple[str, list[str]]:
        _write(root / "projections" / "specs" / "bad.toml", 'name = "bad"\nversion = 1\ninputs = 5\nsql = "SELECT 1"\n')
        return "lake", ["projection", "build", "bad"]

    def evil_spec(root: Path, scratch: Path) -> tuple[str, list[str]]:
        sql = f"CREATE TABLE x AS SELECT * FROM read_csv('{scratch / 'secret.csv'}')"
        _write(scratch / "secret.csv", "a\n1\n")
        _write(root / "projections" / "specs" / "evil.toml",
               f'name = "evil"\nversion = 1\nrelations = ["x"]\nsql = "{sql}"\n[[inputs]]\nrole = "ohlcv"\ntype = "ohlcv"\n')  # fmt: skip
        return "lake", ["projection", "build", "evil", "--input", "ohlcv=px"]

    def hostile_table(root: Path, scratch: Path) -> tuple[str, list[str]]:
        import duckdb

        name = f"t\"; COPY (SELECT 42) TO '{scratch / 'pwned.csv'}'; SELECT count(*) FROM \"t"
        key = "f" * 64
        (root / "projections").mkdir(exist_ok=True)
        con = duckdb.connect(str(root / "projections" / f"{key}.duckdb"))
        con.execute(f'CREATE TABLE "{name.replace(chr(34), chr(34) * 2)}" AS SELECT 1 AS a')
        con.close()
        return "lake", ["projection", "show", key]

    def feed(lines: str) -> Callable[[Path, Path], tuple[str, list[str]]]:
        return lambda root, scratch: ("lake", ["ingest", "alerts", str(_write(scratch / "feed.jsonl", lines))])

    def name_cycle(root: Path, scratch: Path) -> tuple[str, list[str]]:
        from artifact_lake.artifact_store import Lake

        with Lake.open(root) as lk:
            child = lk.publish(pa.table({"a": [1]}), "table", name="child", inputs=["px"])
        del child
        return "lake", [
            "publish",
            str(_parquet(scratch / "px.parquet", _read(root, "px"))),
            "--type",
            "ohlcv",
            "--input",
            "child",
        ]  # noqa: E501

    def exp_name(name: str) -> Callable[[Path, Path], tuple[str, list[str]]]:
        return lambda root, scratch: ("experiments", ["create", _spec(scratch, SMA.format(name=name, extra=""))])

    def missing_symbol(root: Path, scratch: Path) -> tuple[str, list[str]]:
        return "experiments", ["create", _spec(scratch, SMA.format(name="ms", extra='symbols = ["NOPE/USDT"]'))]

    def huge_sweep(root: Path, scratch: Path) -> tuple[str, list[str]]:
        values = list(range(2, 1002))
        text = (
            'name = "bomb"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "rsi_threshold"\n'
            f"[sweep]\nperiod = {values}\nlower = {values}\nupper = {values}\n"
        )
        return "experiments", ["create", _spec(scratch, text)]

    def rename_exp(root: Path, scratch: Path) -> tuple[str, list[str]]:
        from click.testing import CliRunner

        from artifact_lake.cli.main import experiments

        CliRunner().invoke(
            experiments, ["--lake", str(root), "create", _spec(scratch, SMA.format(name="same", extra=""), "a.toml")]
        )  # noqa: E501
        other = SMA.format(name="same", extra="").replace("fast = 5", "fast = 7")
        return "experiments", ["create", _spec(scratch, other, "b.toml")]

    def out_onto_object(root: Path, scratch: Path) -> tuple[str, list[str]]:
        from artifact_lake.artifact_store import Lake

        with Lake.open(root) as lk:
            return "lake", ["get", "px", "--out", str(lk.object_path("px"))]

    return [
        # 1, 2: SQL sandbox and identifiers
        Case("1", "query COPY TO a host file", query("COPY (SELECT 42) TO '{out}.csv'")),
        Case("1", "query EXPORT DATABASE", query("EXPORT DATABASE '{out}'")),
        Case("1", "query COPY TO the manifest", query("COPY (SELECT 42) TO '{lake}/manifest.sqlite'")),
        Case("1", "query read_csv('/etc/passwd')", query("SELECT * FROM read_csv('/etc/passwd')")),
        Case("1", "query read_text", query("SELECT * FROM read_text('/etc/hostname')")),
        Case("1", "query glob('/home/*')", query("SELECT * FROM glob('/home/*')")),
        Case(
            "1", "query read_parquet of another lake", query("SELECT * FROM read_parquet('{lake}/objects/*/*.parquet')")
        ),
        Case("1", "lake spec that reads a host file", evil_spec),
        Case("2", "foreign .duckdb with a hostile table name", hostile_table),
        # 13: one line for every bad input
        Case("13", "null in a non-nullable column", publish_table(null_close, "ohlcv")),
        # 5: types that crashed now publish and verify; those that cannot be stored are refused
        Case("5", "MAP column (now stored)", publish_table(lambda: pa.table({"m": MAP})), accept=True),
        Case("5", "fixed_size_list column (now stored)", publish_table(lambda: pa.table({"f": FIXED})), accept=True),
        Case("5", "null-typed column (now stored)", publish_table(lambda: pa.table({"n": pa.nulls(2)})), accept=True),
        Case("5", "timestamp[s] column (now verifies)", publish_table(lambda: pa.table({"t": SECONDS})), accept=True),
        Case(
            "13",
            "get --out into a missing folder",
            lambda r, s: ("lake", ["get", "px", "--out", str(s / "no" / "x.parquet")]),
        ),  # noqa: E501
        Case(
            "13",
            "query --out into a missing folder",
            lambda r, s: (
                "lake",
                ["query", "--spec", "ohlcv", "--input", "ohlcv=px", "SELECT 1", "--out", str(s / "no" / "q.csv")],
            ),
        ),  # noqa: E501
        Case(
            "13",
            "plot --out into a missing folder",
            lambda r, s: ("experiments", ["plot", "x", "--out", str(s / "no" / "p.png")]),
        ),  # noqa: E501
        Case("13", "get --out onto the object itself", out_onto_object),
        Case("13", "--lake below a regular file", lake_below_file),
        Case("13", "ingest file with an epoch of 1e30", epoch_1e30),
        Case(
            "13",
            "schema file: a string bound",
            schema_case(
                '[[columns]]\nname = "x"\ntype = "float64"\n[[checks]]\nkind = "range"\ncolumn = "x"\nmin = "zero"\n'
            ),
        ),  # noqa: E501
        Case(
            "13",
            "schema file: mixed in_set values",
            schema_case(
                '[[columns]]\nname = "x"\ntype = "float64"\n[[checks]]\nkind = "in_set"\ncolumn = "x"\nvalues = [1, "a"]\n'
            ),
        ),  # noqa: E501
        Case(
            "13",
            "schema file: nullable as a string",
            schema_case('[[columns]]\nname = "x"\ntype = "float64"\nnullable = "false"\n', with_null=True),
        ),  # noqa: E501
        Case(
            "13",
            "schema file: unknown time zone",
            schema_case(
                '[[columns]]\nname = "x"\ntype = "float64"\n[[columns]]\nname = "ts"\ntype = "timestamp[us, tz=Mars/Olympus]"\n'
            ),
        ),  # noqa: E501
        Case("13", "projection spec with inputs = 5", spec_inputs_5),
        Case("13", "cat --limit -1", lambda r, s: ("lake", ["cat", "px", "--limit", "-1"])),
        Case(
            "13",
            "get --format xlsx",
            lambda r, s: ("lake", ["get", "px", "--out", str(s / "x.xlsx"), "--format", "xlsx"]),
        ),  # noqa: E501
        Case("13", "find --limit 0", lambda r, s: ("lake", ["find", "--limit", "0"])),
        Case("13", "a directory as FILE", lambda r, s: ("lake", ["publish", str(s), "--type", "ohlcv"])),
        Case(
            "13",
            "/dev/zero as FILE",
            lambda r, s: ("lake", ["publish", "/dev/zero", "--type", "ohlcv"]),
            "no such file",
        ),  # noqa: E501
        Case("13", "a FIFO as FILE", fifo, "no such file"),
        # 14: crafted policies
        Case("14", "policy: wrong shape", _policy_case(_tensor(lambda rows: rows["shape"].__setitem__(0, [3, 3])))),
        Case(
            "14",
            "policy: short bytes",
            _policy_case(_tensor(lambda rows: rows["data"].__setitem__(0, rows["data"][0][:-4]))),
        ),  # noqa: E501
        Case("14", "policy: a missing tensor", _policy_case(_tensor(_drop_first))),
        Case(
            "14", "policy: a negative shape", _policy_case(_tensor(lambda rows: rows["shape"].__setitem__(0, [-8, 8])))
        ),
        Case(
            "14",
            "policy: pickle bytes",
            _policy_case(_tensor(lambda rows: rows["data"].__setitem__(0, b"\x80\x04\x95" + b"\0" * 29))),
        ),  # noqa: E501
        Case("14", "policy: hidden = [200000, 200000]", _policy_case(_set("hidden", [200000, 200000]))),
        Case("14", 'policy: hidden = "8,8"', _policy_case(_set("hidden", "8,8"))),
        Case("14", "policy: window = 0", _policy_case(_set("window", 0))),
        Case("14", "policy: NaN weights", _policy_case(_tensor(_nan_weights))),
        # 15: resource bombs
        Case("15", "1000 x 1000 x 1000 sweep", huge_sweep),
        # 16: names and references
        Case(
            "16",
            "name ending in a newline",
            lambda r, s: ("lake", ["publish", _fills(s), "--type", "table", "--name", "a\n"]),
        ),  # noqa: E501
        Case(
            "16",
            "name of 100,000 characters",
            lambda r, s: ("lake", ["publish", _fills(s), "--type", "table", "--name", "n" * 100_000]),
        ),  # noqa: E501
        Case(
            "16",
            "name that is 6+ hex characters",
            lambda r, s: ("lake", ["publish", _fills(s), "--type", "table", "--name", "abcdef12"]),
        ),  # noqa: E501
        Case(
            "16",
            "name of digits",
            lambda r, s: ("lake", ["publish", _fills(s), "--type", "table", "--name", "20240105"]),
        ),  # noqa: E501
        Case("16", "a lineage cycle through --input", name_cycle),
        Case("16", "experiment name 'my exp'", exp_name("my exp")),
        Case("16", "experiment name '../../etc'", exp_name("../../etc")),
        Case("16", "strategy.symbols names a missing symbol", missing_symbol),
        Case("16", "a different spec under an existing name", rename_exp),
        # 17: alert feeds (refused only when nothing in the file is a row)
        Case("17", "alert feed of garbage only", feed("this is not json\n{]\n")),
    ]


def _read(root: Path, ref: str) -> Any:
    from artifact_lake.artifact_store import Lake

    with Lake.open(root) as lk:
        return lk.read(ref)


def _fills(scratch: Path) -> str:
    return _fills_parquet(scratch)


def run_case(case: Case, base: Path) -> dict[str, Any]:
    from click.testing import CliRunner

    from artifact_lake.artifact_store import Lake
    from artifact_lake.artifact_store.samples import synthetic_ohlcv
    from artifact_lake.cli.main import experiments, lake

    scratch = base / f"case-{abs(hash(case.name)):x}"
    scratch.mkdir()
    root = scratch / "lake"
    with Lake.open(root) as lk:
        lk.publish(synthetic_ohlcv(("A", "B"), bars=200, seed=1), "ohlcv", name="px")
    problem = None
    try:
        group_name, argv = case.setup(root, scratch)
    except Exception as exc:  # the campaign itself could not build the input
        return {"item": case.item, "case": case.name, "clean": False, "why": f"setup failed: {exc!r}"}
    before, outside = lake_state(root), outside_state(scratch)
    group = lake if group_name == "lake" else experiments
    argv = argv if argv[:1] == ["--lake"] else ["--lake", str(root), *argv]
    r = CliRunner().invoke(group, argv)
    lines = r.stderr.strip().splitlines()
    if case.accept:
        checked = CliRunner().invoke(lake, ["--lake", str(root), "verify"])
        fine = r.exit_code == 0 and checked.exit_code == 0
        why = "" if fine else f"exit {r.exit_code}, verify exit {checked.exit_code}: {(lines or [''])[0]}"
        return {"item": case.item, "case": case.name, "clean": fine, "why": why, "said": r.stdout.strip()[:160]}
    if r.exit_code not in (1, 2):
        problem = f"exit {r.exit_code}"
    elif len(lines) != 1 or not lines[0].startswith("error: "):
        problem = f"{len(lines)} stderr lines"
    elif "Traceback" in r.stderr:
        problem = "traceback"
    elif case.wrong and case.wrong in lines[0]:
        problem = f"says {case.wrong!r}"
    elif lake_state(root) != before:
        problem = "the lake changed"
    elif outside_state(scratch) != outside:
        problem = "wrote outside the lake"
    first = lines[0] if lines else (r.stdout.strip().splitlines() or [""])[0]
    return {"item": case.item, "case": case.name, "clean": problem is None, "why": problem or "", "said": first[:160]}


def run_all() -> list[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="campaign-"))
    try:
        return [run_case(c, base) for c in cases()]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verbose", action="store_true", help="Print what each command said.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = run_all()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| item | case | clean refusal | why not / what it said |")
    print("| --- | --- | --- | --- |")
    for r in results:
        said = r.get("said", "") if args.verbose or not r["clean"] else ""
        print(f"| {r['item']} | {r['case']} | {'yes' if r['clean'] else 'NO'} | {r['why']} {said} |".replace("\n", " "))
    refusals = [r for r in results if not r["case"].endswith(("(now stored)", "(now verifies)"))]
    accepted = [r for r in results if r not in refusals]
    print(
        f"\n{sum(r['clean'] for r in refusals)} of {len(refusals)} bad inputs were clean refusals;"
        f" {sum(r['clean'] for r in accepted)} of {len(accepted)} once-crashing types now publish and verify"
    )


if __name__ == "__main__":
    main()
