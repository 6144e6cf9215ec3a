"""A real S3 server for the remote tests: moto's ``moto_server`` as its own process on 127.0.0.1.

The session fixture picks a free port, starts the server, waits until it answers HTTP, and stops it by its pid.
No in-process mock: the client (obstore) talks HTTP to it as it would to S3.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.conftest import free_port, stop_process


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not answer on {url}: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    yield url
    stop_process(proc)


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """The AWS environment pointing at the moto server, for this process and its subprocesses."""
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def bucket(s3_env):
    """A new, empty bucket on the moto server; its s3:// URL with a prefix."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket=name)
    return f"s3://{name}/team", client, name
