"""Remote sources and outputs, for real, on loopback: S3 through moto's
standalone server and HTTP through nginx, each behind a proxy that drops a
connection mid-transfer. prep over them writes what it writes locally."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep import pixels_to_numpy
from fastprep.pipeline import prep
from fastprep.pipeline.remote import RetryingReader, expand
from test_format_fidelity import _add, _records

s3fs = pytest.importorskip("s3fs", reason="needs fastprep[remote] (s3fs)")
moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (test extra)")

OPTIONS = {"size": 32, "min_quality": 0, "report": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class DroppingProxy:
    """A TCP proxy to ``target`` that cuts the first ``drops`` connections
    which carry more than ``after`` response bytes: both sockets are reset
    mid-transfer, as a flaky network does."""

    def __init__(self, target: int, after: int = 200_000, drops: int = 1) -> None:
        self.target, self.after, self.left = target, after, drops
        self.dropped = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _reset(self, *sockets: socket.socket) -> None:
        # Linger 0 makes the close a reset; shutdown first wakes the thread
        # blocked reading the other direction (a bare close would not).
        for s in sockets:
            try:
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for s in sockets:
            s.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if response and sent > self.after:
                    with self.lock:
                        cut = self.left > 0
                        if cut:
                            self.left -= 1
                            self.dropped += 1
                    if cut:
                        self._reset(src, dst)
                        return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two tar shards and a Parquet file of the same ten records, locally."""
    root = tmp_path_factory.mktemp("remote-corpus")
    records = _records([f"r{i:02d}" for i in range(10)])
    (root / "shards").mkdir()
    for shard, part in enumerate((records[:5], records[5:])):
        with tarfile.open(root / "shards" / f"shard-{shard}.tar", "w") as tar:
            for r in part:
                _add(tar, f"{r['key']}.jpg", r["image"])
                _add(tar, f"{r['key']}.txt", r["caption"].encode())
    table = pa.table(
        {
            "key": [r["key"] for r in records],
            "jpg": pa.array([r["image"] for r in records], pa.binary()),
            "caption": [r["caption"] for r in records],
        }
    )
    (root / "parquet").mkdir()
    pq.write_table(table, root / "parquet" / "part-0.parquet", row_group_size=3)
    (root / "folder" / "sub").mkdir(parents=True)
    for i, r in enumerate(records):
        stem = root / "folder" / ("sub" if i % 2 else "") / r["key"]
        stem.with_suffix(".jpg").write_bytes(r["image"])
        stem.with_suffix(".txt").write_text(r["caption"])
    return root


@pytest.fixture(scope="module")
def local_result(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    return prep(str(corpus / "shards" / "shard-*.tar"), out, **OPTIONS)


def _shard_table(path_or_file) -> pa.Table:
    return pq.read_table(path_or_file)


def _same_outputs(result, local, read) -> None:
    assert result.manifest["totals"] == local.manifest["totals"]
    ours = pa.concat_tables([read(o["file"]) for o in result.manifest["outputs"]])
    theirs = pa.concat_tables(
        [_shard_table(Path(local.out_dir) / o["file"]) for o in local.manifest["outputs"]]
    )
    assert ours.column("key").to_pylist() == theirs.column("key").to_pylist()
    assert np.array_equal(pixels_to_numpy(ours), pixels_to_numpy(theirs))
    assert ours.column("labels").to_pylist() == theirs.column("labels").to_pylist()
    assert ours.column("source").to_pylist() == theirs.column("source").to_pylist()


@pytest.fixture(scope="module")
def s3(corpus):
    """moto's S3 server on loopback holding the corpus, behind a dropping proxy."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        _wait_for(port)
        direct = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
        }
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=direct["endpoint_url"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        for bucket in ("corpus", "prepared"):
            client.create_bucket(Bucket=bucket)
        for path in sorted(corpus.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), "corpus", str(path.relative_to(corpus)))
        yield port, direct
    finally:
        server.stop()


def _through(proxy: DroppingProxy, options: dict) -> dict:
    return {**options, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}


def test_s3_source_and_output_with_a_dropped_connection(s3, local_result, tmp_path, monkeypatch):
    port, direct = s3
    monkeypatch.setenv("FASTPREP_REMOTE_STAGING", str(tmp_path / "staging"))
    proxy = DroppingProxy(port, after=300_000, drops=1)
    try:
        storage = _through(proxy, direct)
        s3fs.S3FileSystem.clear_instance_cache()
        result = prep(
            "s3://corpus/shards/shard-{0..1}.tar",
            "s3://prepared/run1/",
            source_options={"storage_options": storage},
            **OPTIONS,
        )
    finally:
        proxy.close()
    assert proxy.dropped >= 1, "the proxy never cut a connection: nothing was tested"
    fs = s3fs.S3FileSystem(**direct)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("prepared/run1"))
    assert "manifest.json" in names and "shard-00000.parquet" in names
    manifest = json.loads(fs.cat_file("prepared/run1/manifest.json"))
    assert manifest["totals"] == local_result.manifest["totals"]
    assert "testing" not in json.dumps(manifest), "credentials leaked into the manifest"
    assert manifest["resume_settings"]["source"] == "s3://corpus/shards/shard-{0..1}.tar"

    def read(name: str) -> pa.Table:
        with fs.open(f"prepared/run1/{name}", "rb") as f:
            return pq.read_table(f)

    _same_outputs(result, local_result, read)
    # Resuming a finished remote run finds it done (its local working folder
    # is kept for the URL) and uploads the same files again.
    s3fs.S3FileSystem.clear_instance_cache()
    again = prep(
        "s3://corpus/shards/shard-{0..1}.tar",
        "s3://prepared/run1/",
        source_options={"storage_options": direct},
        resume=True,
        **OPTIONS,
    )
    assert again.out_dir == "s3://prepared/run1/" and again.manifest == result.manifest
    # A second run into the same folder is refused, as locally.
    from fastprep.errors import OutputExistsError

    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(OutputExistsError):
        prep("s3://corpus/shards/shard-0.tar", "s3://prepared/run1/",
             source_options={"storage_options": direct}, **OPTIONS)  # fmt: skip


def test_s3_parquet_streams_and_missing_shards_are_source_errors(s3, local_result, tmp_path):
    port, direct = s3
    proxy = DroppingProxy(port, after=100_000, drops=1)
    try:
        s3fs.S3FileSystem.clear_instance_cache()
        result = prep(
            "s3://corpus/parquet/",
            tmp_path / "pq",
            source_options={"storage_options": _through(proxy, direct)},
            **OPTIONS,
        )
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert result.manifest["totals"] == local_result.manifest["totals"]
    table = pa.concat_tables(
        [pq.read_table(tmp_path / "pq" / o["file"]) for o in result.manifest["outputs"]]
    )
    assert set(table.column("source").to_pylist()) == {"part-0.parquet"}
    # shard-2 does not exist: one source_error record, the run goes on.
    s3fs.S3FileSystem.clear_instance_cache()
    partial = prep(
        "s3://corpus/shards/shard-{0..2}.tar",
        tmp_path / "partial",
        source_options={"storage_options": direct},
        **OPTIONS,
    )
    totals = partial.manifest["totals"]
    assert totals["written"] == local_result.written and totals["dropped"]["source_error"] == 1
    dropped = pq.read_table(tmp_path / "partial" / "dropped.parquet").to_pylist()
    assert [d["source"] for d in dropped if d["reason"].startswith("source_error")] == [
        "shard-2.tar"
    ]


def test_s3_folder_of_images_with_sidecars(s3, corpus, tmp_path):
    _port, direct = s3
    local = prep(corpus / "folder", tmp_path / "local", **OPTIONS)
    s3fs.S3FileSystem.clear_instance_cache()
    result = prep(
        "s3://corpus/folder/",
        tmp_path / "remote",
        source_options={"storage_options": direct},
        **OPTIONS,
    )
    _same_outputs(result, local, lambda n: pq.read_table(tmp_path / "remote" / n))
    table = pq.read_table(tmp_path / "remote" / result.manifest["outputs"][0]["file"])
    assert "sub/r01.jpg" in table.column("source").to_pylist()


def test_remote_patterns_expand(s3):
    _port, direct = s3
    s3fs.S3FileSystem.clear_instance_cache()
    assert expand("s3://corpus/shards/shard-*.tar", direct) == [
        "s3://corpus/shards/shard-0.tar",
        "s3://corpus/shards/shard-1.tar",
    ]
    assert expand("s3://corpus/shards/shard-{1..0}.tar", direct) == [
        "s3://corpus/shards/shard-1.tar",
        "s3://corpus/shards/shard-0.tar",
    ]
    with pytest.raises(FileNotFoundError):
        expand("s3://corpus/shards/none-*.tar", direct)


# ---------------------------------------------------------------------- HTTP


NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        autoindex on;
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx(corpus, tmp_path_factory):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        # scripts/test.sh installs nginx, so under CI a missing server is a failure.
        if os.environ.get("CI"):
            pytest.fail("no nginx under CI: scripts/test.sh should have installed it")
        pytest.skip("nginx is not installed (scripts/test.sh installs it)")
    root = tmp_path_factory.mktemp("nginx")
    (root / "tmp").mkdir()
    www = root / "www"
    shutil.copytree(corpus, www)
    os.chmod(root, 0o755)
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, root=root, port=port, www=www))
    process = subprocess.Popen(
        [binary, "-p", str(root), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_retrying_reader_reopens_http_at_the_offset(nginx, corpus):
    """fsspec's HTTP files do not retry a cut transfer: the reader does, from
    where it was (a range request), never from the start."""
    proxy = DroppingProxy(nginx, after=100_000, drops=2)
    try:
        url = f"http://127.0.0.1:{proxy.port}/shards/shard-1.tar"
        reader = RetryingReader(url, block_size=256 * 1024, backoff=0.01)
        data = b""
        while chunk := reader.read(100_000):
            data += chunk
        reader.close()
    finally:
        proxy.close()
    assert data == (corpus / "shards" / "shard-1.tar").read_bytes()
    assert proxy.dropped == 2 and reader.retried == 2


def test_http_tar_parquet_and_folder_sources_with_a_dropped_connection(
    nginx, corpus, local_result, tmp_path
):
    proxy = DroppingProxy(nginx, after=300_000, drops=1)
    base = f"http://127.0.0.1:{proxy.port}"
    try:
        result = prep(f"{base}/shards/shard-{{0..1}}.tar", tmp_path / "tar", **OPTIONS)
        assert proxy.dropped == 1
        _same_outputs(result, local_result, lambda n: pq.read_table(tmp_path / "tar" / n))
        parquet = prep(f"{base}/parquet/part-0.parquet", tmp_path / "pq", **OPTIONS)
        assert parquet.manifest["totals"] == local_result.manifest["totals"]
        # A folder of images, listed through nginx's autoindex pages.
        folder = prep(f"{base}/folder/", tmp_path / "folder", **OPTIONS)
        local = prep(corpus / "folder", tmp_path / "local-folder", **OPTIONS)
        _same_outputs(folder, local, lambda n: pq.read_table(tmp_path / "folder" / n))
    finally:
        proxy.close()


def test_cli_reads_s3_with_fsspec_environment(s3, tmp_path):
    port, _direct = s3
    s3fs.S3FileSystem.clear_instance_cache()
    env = {
        **os.environ,
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = ["s3://corpus/shards/shard-{0..1}.tar", "--out", str(tmp_path / "cli")]
    proc = subprocess.run(
        [sys.executable, "-m", "fastprep", "prep", *args, "--size", "32", "--quiet", "--no-report",
         "--min-quality", "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["totals"]["written"] == 10
    upload = subprocess.run(
        [sys.executable, "-m", "fastprep", "prep", "s3://corpus/parquet/", "--out",
         "s3://prepared/cli/", "--size", "32", "--quiet", "--no-report", "--min-quality", "0"],
        env={**env, "FASTPREP_REMOTE_STAGING": str(tmp_path / "staging")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert upload.returncode == 0, upload.stderr
    assert "manifest: s3://prepared/cli/manifest.json" in upload.stdout
    fs = s3fs.S3FileSystem(**_direct)
    assert json.loads(fs.cat_file("prepared/cli/manifest.json"))["totals"]["written"] == 10
    missing = subprocess.run(
        [sys.executable, "-m", "fastprep", "prep", "s3://corpus/nothing-here/x-{0..1}.tar",
         "--out", str(tmp_path / "none"), "--quiet", "--no-report"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
