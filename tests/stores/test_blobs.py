import hashlib
import os
from pathlib import Path

import pytest

from kernel.errors import IntegrityError, StoreError
from stores.blobs import BlobStore


def test_put_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert blobs.put_bytes(b"hello") == sha
    assert blobs.read_bytes(sha) == b"hello"
    assert list(blobs.iter_shas()) == [sha]
    assert not any(blobs.tmp.iterdir())


def test_put_file_streams_large_files(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    blobs = BlobStore(tmp_path / "blobs")
    sha = blobs.put_file(source)
    assert sha == hashlib.sha256(data).hexdigest()
    assert blobs.verified_path(sha).read_bytes() == data


def test_failed_rename_leaves_no_partial_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = BlobStore(tmp_path)

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StoreError, match="No space left"):
        blobs.put_bytes(b"payload")
    assert not blobs.exists(hashlib.sha256(b"payload").hexdigest())
    assert not any(blobs.tmp.iterdir())


def test_failed_write_midway_leaves_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)

    def half_then_fail(out: object) -> None:
        out.write(b"first half")  # type: ignore[attr-defined]
        raise OSError(5, "Input/output error")

    with pytest.raises(StoreError, match="Input/output error"):
        blobs._put(half_then_fail)
    assert list(blobs.iter_shas()) == []
    assert not any(blobs.tmp.iterdir())


def test_tampered_blob_is_detected_on_read(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put_bytes(b"the original speech")
    blobs.path_for(sha).write_bytes(b"the altered speech!")
    with pytest.raises(IntegrityError, match=sha):
        blobs.read_bytes(sha)
    with pytest.raises(IntegrityError, match=sha):
        blobs.verified_path(sha)


def test_missing_blob_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing"):
        BlobStore(tmp_path).read_bytes("0" * 64)
