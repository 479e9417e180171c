"""Content-addressed blobs: written atomically, verified against their sha256 on every read."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kernel.crashpoints import crashpoint
from kernel.errors import IntegrityError, StoreError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """Blobs in a local directory at root/ab/cd/<sha256>; partial writes only ever exist under root/tmp."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.tmp = self.root / "tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create blob directory {self.root}: {exc.strerror}") from exc

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def uri_for(self, sha256: str) -> str:
        return self.path_for(sha256).resolve().as_uri()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self._existing(sha256).stat().st_size

    def put_bytes(self, data: bytes) -> str:
        return self._put(lambda out: out.write(data))

    def put_file(self, source: Path) -> str:
        def copy(out: BinaryIO) -> None:
            with source.open("rb") as handle:
                shutil.copyfileobj(handle, out, CHUNK)

        return self._put(copy)

    def _put(self, write: object) -> str:
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with temp.open("wb") as raw:
                hashing = _HashingWriter(raw)
                write(hashing)  # type: ignore[operator]
                raw.flush()
                crashpoint("blob.mid_write")  # test hook: a .part file left under tmp, never renamed
                os.fsync(raw.fileno())
            sha256 = hashing.hexdigest()
            final = self.path_for(sha256)
            if final.is_file() and sha256_file(final) == sha256:
                temp.unlink()  # same content already stored
                return sha256
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
            _fsync_dir(final.parent)
            return sha256
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StoreError(f"could not write blob under {self.root}: {exc.strerror or exc}") from exc

    def read_bytes(self, sha256: str) -> bytes:
        data = self._existing(sha256).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"blob {sha256} is corrupt: its content hashes to {actual}")
        return data

    def verified_path(self, sha256: str) -> Path:
        """Path of a blob after re-hashing it, for tools (ffmpeg) that read files themselves."""
        path = self._existing(sha256)
        actual = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(f"blob {sha256} is corrupt: its content hashes to {actual}")
        return path

    def iter_shas(self) -> Iterator[str]:
        for path in self.root.glob("??/??/*"):
            if path.is_file():
                yield path.name

    def _existing(self, sha256: str) -> Path:
        path = self.path_for(sha256)
        if not path.is_file():
            raise StoreError(f"blob {sha256} is missing from {self.root}")
        return path


class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._raw.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FsspecBlobStore:
    """Blobs under any fsspec URL (s3://, gcs://, memory://, ...), with the local store's guarantees.

    Content is hashed into a local temp file first and uploaded to its final key only when whole:
    an object store's PUT is atomic, so no reader ever sees a partial blob. Reads re-hash.
    """

    def __init__(self, url: str, cache_dir: str | Path | None = None, **storage_options: object) -> None:
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
            self.fs.makedirs(root, exist_ok=True)
        except (OSError, ValueError, ImportError) as exc:
            raise StoreError(f"cannot open blob store {url}: {exc}") from exc
        self.url = url.rstrip("/")
        self.root = root.rstrip("/")
        self.cache = Path(cache_dir or Path(tempfile.gettempdir()) / "emoflow-blob-cache")
        self.cache.mkdir(parents=True, exist_ok=True)
        self._local = BlobStore(self.cache)  # stages uploads and holds verified copies for ffmpeg

    def path_for(self, sha256: str) -> str:
        return f"{self.root}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def uri_for(self, sha256: str) -> str:
        return self.fs.unstrip_protocol(self.path_for(sha256))

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self.path_for(sha256)))

    def size(self, sha256: str) -> int:
        return int(self.fs.size(self.path_for(sha256)))

    def put_bytes(self, data: bytes) -> str:
        return self._upload(self._local.put_bytes(data))

    def put_file(self, source: Path) -> str:
        return self._upload(self._local.put_file(source))

    def _upload(self, sha256: str) -> str:
        target = self.path_for(sha256)
        try:
            if not self.fs.exists(target):
                self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)  # object stores ignore this
                self.fs.put_file(str(self._local.path_for(sha256)), target)
        except OSError as exc:
            raise StoreError(f"could not upload blob {sha256} to {self.url}: {exc}") from exc
        return sha256

    def read_bytes(self, sha256: str) -> bytes:
        try:
            data = self.fs.cat_file(self.path_for(sha256))
        except FileNotFoundError as exc:
            raise StoreError(f"blob {sha256} is missing from {self.url}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"blob {sha256} is corrupt: its content hashes to {actual}")
        return data

    def verified_path(self, sha256: str) -> Path:
        """A verified local copy, for tools (ffmpeg) that need a file."""
        if self._local.exists(sha256):
            try:
                return self._local.verified_path(sha256)
            except IntegrityError:
                self._local.path_for(sha256).unlink()
        self._local.put_bytes(self.read_bytes(sha256))
        return self._local.path_for(sha256)

    def iter_shas(self) -> Iterator[str]:
        for path in self.fs.find(self.root):
            name = path.rsplit("/", 1)[-1]
            if len(name) == 64:
                yield name


def open_blob_store(url: str | Path) -> BlobStore | FsspecBlobStore:
    """A plain path (or file://) gets the local store with fsync and atomic rename; any other URL fsspec."""
    text = str(url)
    if "://" not in text:
        return BlobStore(text)
    if text.startswith("file://"):
        return BlobStore(text.removeprefix("file://"))
    return FsspecBlobStore(text)
