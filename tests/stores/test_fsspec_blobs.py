"""Blobs under fsspec URLs with the local store's guarantees: memory://, file://, and s3:// on a local
S3 API server (moto)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from kernel.errors import IntegrityError, StoreError
from stores.blobs import BlobStore, FsspecBlobStore, open_blob_store


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on a free loopback port: the S3 HTTP API, not a mock of our code."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(params=["memory", "file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FsspecBlobStore:
    if request.param == "s3":
        # the standard AWS variables are how users point emoflow at their object store
        monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("s3_endpoint"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "emoflow-test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "emoflow-test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # fsspec caches filesystems by their arguments, not the environment: forget ones made for other
        # endpoints (tests/reliability/cluster.py runs a moto server of its own)
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        bucket = f"emoflow-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
        url = f"s3://{bucket}/blobs"
    elif request.param == "memory":
        url = f"memory://emoflow-{uuid.uuid4().hex}/blobs"
    else:
        url = f"file://{tmp_path}/remote"
    return FsspecBlobStore(url, cache_dir=tmp_path / "cache")


def test_put_read_and_deduplicate(blobs: FsspecBlobStore, tmp_path: Path) -> None:
    sha = blobs.put_bytes(b"speech bytes")
    assert sha == hashlib.sha256(b"speech bytes").hexdigest()
    assert blobs.put_bytes(b"speech bytes") == sha and list(blobs.iter_shas()) == [sha]
    assert blobs.read_bytes(sha) == b"speech bytes" and blobs.size(sha) == 12
    source = tmp_path / "frames.mp4"
    source.write_bytes(b"\x00" * 100_000)
    big = blobs.put_file(source)
    assert blobs.verified_path(big).read_bytes() == source.read_bytes()
    assert blobs.uri_for(sha).endswith(sha) and "://" in blobs.uri_for(sha)


def test_tampering_is_detected_remotely_and_in_the_local_copy(blobs: FsspecBlobStore) -> None:
    sha = blobs.put_bytes(b"original")
    local = blobs.verified_path(sha)
    local.write_bytes(b"tampered copy")
    assert blobs.verified_path(sha).read_bytes() == b"original"  # a bad cached copy is fetched again
    blobs.fs.pipe_file(blobs.path_for(sha), b"tampered!")
    with pytest.raises(IntegrityError, match=sha):
        blobs.read_bytes(sha)


def test_failed_upload_leaves_no_object(blobs: FsspecBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Access Denied")

    monkeypatch.setattr(blobs.fs, "put_file", refused)
    with pytest.raises(StoreError, match="could not upload"):
        blobs.put_bytes(b"never stored")
    assert not blobs.exists(hashlib.sha256(b"never stored").hexdigest())


def test_missing_blob(blobs: FsspecBlobStore) -> None:
    with pytest.raises(StoreError, match="missing"):
        blobs.read_bytes("0" * 64)


def test_urls_choose_the_store(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(tmp_path / "a"), BlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path}/b"), BlobStore)
    assert isinstance(open_blob_store(f"memory://x-{uuid.uuid4().hex}"), FsspecBlobStore)
    with pytest.raises(StoreError, match="cannot open blob store"):
        open_blob_store("nosuchprotocol://bucket/blobs")
