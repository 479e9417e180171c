"""Content-addressed blobs: written atomically, verified against their sha256 on every read."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from emoflow.errors import IntegrityError, StoreError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """Blobs live at root/ab/cd/<sha256>; partial writes only ever exist under root/tmp."""

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
