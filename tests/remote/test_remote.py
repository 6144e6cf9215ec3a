"""Remotes against a real moto S3 server (and a shared folder): push, pull, clone, conflicts, crashes, verify."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading

from click.testing import CliRunner

from artifact_lake.artifact_store import Lake
from artifact_lake.artifact_store.samples import synthetic_ohlcv
from artifact_lake.cli.main import lake as lake_cli

from ..conftest import lake_state


def cli(root, *args):
    result = CliRunner().invoke(lake_cli, ["--lake", str(root), *args], catch_exceptions=False)
    return result


def cli_json(root, *args):
    result = cli(root, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_proc(root, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "artifact_lake.cli", "--lake", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def make_lake(path, seeds, name="px"):
    """A lake with one ohlcv artifact per seed (all under ``name``) and a derived artifact of the last one."""
    with Lake.open(path) as lk:
        ids = [lk.publish(synthetic_ohlcv(("BTC/USDT",), bars=50, seed=s), "ohlcv", name=name).id for s in seeds]
        derived = lk.publish(lk.read(ids[-1]).slice(0, 10), "ohlcv", name=f"{name}-head", inputs=[ids[-1]]).id
    return ids, derived


def test_remote_add_list_remove(tmp_path, bucket):
    url, _, _ = bucket
    root = tmp_path / "a"
    make_lake(root, [1])
    assert cli_json(root, "remote", "add", "origin", url) == {"name": "origin", "url": url}
    assert cli_json(root, "remote", "list") == [{"name": "origin", "url": url}]
    before = lake_state(root)
    for args, line in [
        (("remote", "add", "origin", "file:///tmp/x"), "error: remote 'origin' exists"),
        (("remote", "add", "other", "http://x"), "error: remote URL 'http://x': use s3://"),
        (("remote", "add", "bad name", "s3://b/p"), "error: invalid remote name 'bad name'"),
        (("remote", "remove", "nope"), "error: no remote 'nope' (remotes: origin)"),
        (("pull", "--remote", "nope", "--all"), "error: no remote 'nope'"),
        (("push",), "error: push what? give references, or --all"),
    ]:
        result = cli(root, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
    assert lake_state(root) == before
    assert cli_json(root, "remote", "remove", "origin")["name"] == "origin"
    assert cli_json(root, "remote", "list") == []


def test_push_pull_clone_round_trip(tmp_path, bucket):
    url, client, name = bucket
    ids, derived = make_lake(tmp_path / "a", [1, 2])
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    pushed = cli_json(tmp_path / "a", "push", "px-head")
    # px-head, its input px@v2, and px@v1 (an earlier version of a name it carries)
    assert pushed["objects"] == pushed["uploaded"] == 3 and pushed["segment_new"]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"])
    assert f"team/objects/{derived[:2]}/{derived}.parquet" in keys
    assert sum(k.startswith("team/segments/") for k in keys) == 1
    again = cli_json(tmp_path / "a", "push", "px-head")
    assert again["uploaded"] == 0 and not again["segment_new"]

    result = cli(tmp_path, "clone", url, str(tmp_path / "b"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["downloaded"] == 3 and report["records_only"] == 0
    with Lake.open(tmp_path / "a") as a, Lake.open(tmp_path / "b") as b:
        for ref in ("px@v1", "px@v2", "px-head"):
            assert a.resolve(ref) == b.resolve(ref)
        assert b.parents(derived)[0].id == ids[-1]
        assert a.read(derived).equals(b.read(derived))
        assert a.get(derived).file_hash == b.get(derived).file_hash
    assert cli(tmp_path / "b", "verify").exit_code == 0
    # a second pull finds nothing new
    assert cli_json(tmp_path / "b", "pull", "--all")["segments"] == 0


def test_name_version_that_differs_is_never_overwritten(tmp_path, bucket):
    url = bucket[0]
    (a_id,), a_head = make_lake(tmp_path / "a", [1])
    (b_id,), b_head = make_lake(tmp_path / "b", [2])
    for side in ("a", "b"):
        cli_json(tmp_path / side, "remote", "add", "origin", url)
        cli_json(tmp_path / side, "push", "--all")
    report = cli_json(tmp_path / "a", "pull", "--all")
    assert sorted(report["conflicts"], key=lambda c: c["name"]) == [
        {"name": "px", "version": 1, "local": a_id, "remote": b_id, "recorded_as": "origin/px@v1"},
        {"name": "px-head", "version": 1, "local": a_head, "remote": b_head, "recorded_as": "origin/px-head@v1"},
    ]
    with Lake.open(tmp_path / "a") as a:
        assert a.resolve("px@v1") == a_id and a.resolve("px@latest") == a_id  # kept
        assert a.resolve("origin/px") == b_id
    assert cli(tmp_path / "a", "verify").exit_code == 0
    # the same pull again adds nothing (the segments are merged once)
    assert cli_json(tmp_path / "a", "pull", "--all")["conflicts"] == []


def test_two_processes_pushing_at_once_lose_nothing(tmp_path, bucket):
    url = bucket[0]
    made = {}
    for side, seeds in (("a", [1, 2, 3, 4]), ("b", [3, 4, 5, 6])):  # seeds 3 and 4: the same objects on both
        ids, derived = make_lake(tmp_path / side, seeds, name=f"px-{side}")
        made[side] = {*ids, derived}
        cli_json(tmp_path / side, "remote", "add", "origin", url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "artifact_lake.cli", "--lake", str(tmp_path / side), "push", "--all", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for side in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    reports = [json.loads(o) for o, _ in outs]
    assert sum(r["uploaded"] for r in reports) == len(made["a"] | made["b"])  # each object uploaded once
    result = cli(tmp_path, "clone", url, str(tmp_path / "c"), "--json")
    assert result.exit_code == 0, result.output
    with Lake.open(tmp_path / "c") as c:
        assert {a.id for a in c.find(limit=100)} == made["a"] | made["b"]
    assert cli(tmp_path / "c", "verify").exit_code == 0


def test_sigkill_during_push_then_push_again_uploads_the_rest(tmp_path, bucket):
    url, client, name = bucket
    ids, derived = make_lake(tmp_path / "a", [1, 2, 3])
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    killed = run_proc(tmp_path / "a", "push", "--all", env={"ARTIFACT_LAKE_CRASH_AT": "push-after-object"})
    assert killed.returncode == -signal.SIGKILL
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith("team/objects/")  # one object, no segment yet
    report = cli_json(tmp_path / "a", "push", "--all")
    assert report["objects"] == 4 and report["uploaded"] == 3 and report["segment_new"]


def test_sigkill_during_pull_leaves_no_half_registered_artifact(tmp_path, bucket):
    url = bucket[0]
    ids, derived = make_lake(tmp_path / "a", [1, 2, 3])
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    cli_json(tmp_path / "a", "push", "--all")
    result = cli(tmp_path, "clone", url, str(tmp_path / "b"), "--records-only", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records_only"] == 4
    killed = run_proc(tmp_path / "b", "pull", "--all", env={"ARTIFACT_LAKE_CRASH_AT": "pull-after-object"})
    assert killed.returncode == -signal.SIGKILL
    assert cli(tmp_path / "b", "verify").exit_code == 0  # whole artifacts and records-only ones, nothing half
    report = cli_json(tmp_path / "b", "pull", "--all")
    assert report["downloaded"] == 3 and report["reused"] == 0 and report["records_only"] == 0
    assert cli(tmp_path / "b", "verify").exit_code == 0


def test_records_only_lake_fetches_on_read(tmp_path, bucket):
    url = bucket[0]
    ids, derived = make_lake(tmp_path / "a", [1])
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    cli_json(tmp_path / "a", "push", "--all")
    assert cli(tmp_path, "clone", url, str(tmp_path / "b"), "--records-only").exit_code == 0
    rows = cli_json(tmp_path / "b", "cat", "px-head", "--limit", "3")
    assert len(rows) == 3
    with Lake.open(tmp_path / "b") as b:
        assert b.has_intact_object(derived) and not b.has_intact_object(ids[0])
    # the remote cannot be forgotten while it holds objects this lake counts on
    result = cli(tmp_path / "b", "remote", "remove", "origin")
    assert result.exit_code == 2 and "records-only" in result.stderr


def test_verify_remote_catches_a_flipped_object_and_pull_refuses_it(tmp_path, bucket):
    url, client, name = bucket
    ids, derived = make_lake(tmp_path / "a", [1])
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    cli_json(tmp_path / "a", "push", "--all")
    assert cli_json(tmp_path / "a", "verify", "--remote", "origin")["ok"]
    key = f"team/objects/{derived[:2]}/{derived}.parquet"
    data = bytearray(client.get_object(Bucket=name, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=name, Key=key, Body=bytes(data))  # what a damaged disk or a bad actor does
    result = cli(tmp_path / "a", "verify", "--remote", "origin", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [(p["kind"], p["subject"]) for p in problems] == [("changed", derived)]

    assert cli(tmp_path, "clone", url, str(tmp_path / "b"), "--records-only").exit_code == 0
    before = lake_state(tmp_path / "b")
    result = cli(tmp_path / "b", "pull", derived)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: s3://") and "nothing was registered" in result.stderr
    assert lake_state(tmp_path / "b") == before


def test_one_artifact_held_as_other_bytes_by_two_lakes_travels_by_its_content(tmp_path, bucket):
    """Lake a wrote the object itself; lake b kept a file as it was published (the same rows in other row
    groups: the same id, other bytes). Both push; the remote keeps a's bytes, b's segment records b's hash.
    A clone takes the remote's bytes because they hold the artifact's content, and records their hash."""
    import pyarrow.parquet as pq

    from artifact_lake.artifact_store.objects import object_path

    url, _, _ = bucket
    table = synthetic_ohlcv(("BTC/USDT",), bars=3000, seed=5)
    with Lake.open(tmp_path / "a") as a:
        artifact = a.publish(table, "ohlcv", name="px").id
        exported = a.export(artifact, tmp_path / "px.parquet")
        a_hash = a.get(artifact).file_hash
    other = tmp_path / "px-other-row-groups.parquet"
    pq.write_table(pq.read_table(exported), other, compression="zstd", row_group_size=500)
    with Lake.open(tmp_path / "b") as b:
        kept = b.publish(other, "ohlcv", name="px")
        assert kept.id == artifact and b.get(artifact).file_hash != a_hash
    for lake in ("a", "b"):
        cli_json(tmp_path / lake, "remote", "add", "origin", url)
        cli_json(tmp_path / lake, "push", "--all")
    # a clone takes an artifact's record from the first segment (by name) that holds it: until that is one of
    # b's (other bytes than the remote's), b pushes again with one more artifact (a new segment)
    _, client, name = bucket
    for k in range(40):
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=name, Prefix="team/segments/")["Contents"])
        first = next(
            a["file_hash"]
            for key in keys
            for a in json.loads(gzip.decompress(client.get_object(Bucket=name, Key=key)["Body"].read()))["artifacts"]
            if a["id"] == artifact
        )
        if first != a_hash:
            break
        with Lake.open(tmp_path / "b") as b:
            b.publish(synthetic_ohlcv(("ETH/USDT",), bars=10, seed=k), "ohlcv", name="extra")
        cli_json(tmp_path / "b", "push", "--all")
    assert first != a_hash
    assert cli_json(tmp_path / "a", "verify", "--remote", "origin")["ok"]  # the other hash is the same content
    result = cli(tmp_path, "clone", url, str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    with Lake.open(tmp_path / "c") as c:
        held = object_path(c.root, artifact).read_bytes()
        assert held == exported.read_bytes()  # the first writer's bytes
        assert c.get(artifact).file_hash == a_hash
        assert c.verify().ok and c.read("px").equals(table.select(c.read("px").column_names).cast(c.read("px").schema))


def test_file_remote_round_trip_and_create_if_absent(tmp_path):
    from artifact_lake.artifact_store._backends import open_backend

    shared = tmp_path / "shared"
    backend = open_backend(shared.as_uri())
    results: list[bool] = []
    threads = [threading.Thread(target=lambda i=i: results.append(backend.create("k/x", b"%d" % i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(backend.get("k/x")) == 1  # first writer wins, never overwritten
    assert backend.list("k/") == ["k/x"]

    ids, derived = make_lake(tmp_path / "a", [1, 2])
    cli_json(tmp_path / "a", "remote", "add", "team", shared.as_uri())
    assert cli_json(tmp_path / "a", "push", "--all")["uploaded"] == 3
    result = cli(tmp_path, "clone", shared.as_uri(), str(tmp_path / "b"), "--json")
    assert result.exit_code == 0, result.output
    with Lake.open(tmp_path / "b") as b:
        assert b.resolve("px-head") == derived
    assert cli(tmp_path / "b", "verify").exit_code == 0


def test_progress_is_reported_per_object(tmp_path, bucket):
    from artifact_lake.artifact_store.remote import add_remote, pull, push

    make_lake(tmp_path / "a", [1, 2])
    seen: list[tuple[int, int, str]] = []
    with Lake.open(tmp_path / "a") as a:
        add_remote(a, "origin", bucket[0])
        push(a, all_=True, progress=lambda d, t, label: seen.append((d, t, label)))
    assert [(d, t) for d, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    with Lake.open(tmp_path / "b") as b:
        add_remote(b, "origin", bucket[0])
        got: list[int] = []
        pull(b, ["px-head"], with_inputs=True, progress=lambda d, t, label: got.append(d))
        assert got == [1, 2]


def test_execute_and_reproduce_on_a_records_only_lake_fetch_their_inputs(tmp_path, bucket):
    """A lake cloned without objects runs an experiment: the inputs come from the remote, checked."""
    from artifact_lake.cli.main import experiments as exp_cli
    from artifact_lake.projections import Lake as PLake

    url = bucket[0]
    with PLake.open(tmp_path / "a") as lk:
        lk.publish(synthetic_ohlcv(("BTC/USDT",), bars=400, seed=4), "ohlcv", name="px")
    cli_json(tmp_path / "a", "remote", "add", "origin", url)
    cli_json(tmp_path / "a", "push", "--all")
    assert cli(tmp_path, "clone", url, str(tmp_path / "b"), "--records-only").exit_code == 0
    spec = tmp_path / "sma.toml"
    spec.write_text('name = "sma"\nkind = "backtest"\n[inputs]\nohlcv = ["px"]\n[strategy]\nname = "sma_cross"\n')
    run = CliRunner().invoke
    for args in (["create", str(spec)], ["execute", "sma"], ["reproduce", "exp/sma/metrics"]):
        r = run(exp_cli, ["--lake", str(tmp_path / "b"), *args])
        assert r.exit_code == 0, (args, r.output)
    assert cli(tmp_path / "b", "verify").exit_code == 0


AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)


def _shared_files(tmp_path, monkeypatch, config: str, credentials: str) -> None:
    """The AWS shared files of a machine configured with `aws configure`, and no AWS_* variables."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "aws-config").write_text(config, encoding="utf-8")
    (tmp_path / "aws-credentials").write_text(credentials, encoding="utf-8")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


def test_a_profile_of_the_aws_shared_files_reaches_the_bucket(tmp_path, bucket, monkeypatch):
    """Endpoint, region and keys from ~/.aws/config and ~/.aws/credentials (profile `team`), no variable set:
    without the profile's endpoint the client would go to AWS, which this machine cannot reach."""
    url, _, _ = bucket
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    _shared_files(
        tmp_path,
        monkeypatch,
        f"[default]\nregion = eu-west-3\n\n[profile team]\nregion = us-east-1\nendpoint_url = {endpoint}\n",
        "[team]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    monkeypatch.setenv("AWS_PROFILE", "team")
    ids, _ = make_lake(tmp_path / "a", [1])
    assert cli(tmp_path / "a", "remote", "add", "origin", url).exit_code == 0
    assert cli_json(tmp_path / "a", "push", "--all")["uploaded"] == 2
    result = cli(tmp_path, "clone", url, str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    with Lake.open(tmp_path / "b") as b:
        assert b.read(ids[0]).num_rows == 50


def test_the_environment_wins_over_the_shared_files_and_bad_profiles_are_one_line(tmp_path, monkeypatch):
    from artifact_lake.artifact_store._s3 import profile_settings

    _shared_files(
        tmp_path,
        monkeypatch,
        "[default]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9\n"
        "[profile sso]\nsso_session = corp\nregion = us-east-1\n",
        "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\nregion = ap-south-1\n",
    )
    # the credentials file wins over the config file; both fill what the environment leaves unset
    assert profile_settings() == {
        "access_key_id": "FILEKEY",
        "secret_access_key": "filesecret",
        "region": "ap-south-1",
        "endpoint": "http://127.0.0.1:9",
    }
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVKEY")  # credentials come as a whole: none from the files
    assert profile_settings() == {"endpoint": "http://127.0.0.1:9"}
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    make_lake(tmp_path / "a", [1])
    assert cli(tmp_path / "a", "remote", "add", "origin", "s3://some-bucket/lake").exit_code == 0
    before = lake_state(tmp_path / "a")
    for profile, line in [
        ("nobody", "error: AWS profile 'nobody' (AWS_PROFILE) is in neither "),
        ("sso", "error: AWS profile 'sso' gets its credentials through sso_session, which artifact-lake does not run"),
    ]:
        monkeypatch.setenv("AWS_PROFILE", profile)
        result = cli(tmp_path / "a", "push", "--all")
        assert result.exit_code == 2 and result.stderr.startswith(line), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert lake_state(tmp_path / "a") == before
    # the way out the message gives: credentials exported into the environment are used, SSO profile or not
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "EXPORTED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "exported")
    assert profile_settings() == {}  # no raise; keys and region (AWS_REGION) all from the environment
