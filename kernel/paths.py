"""Filesystem checks shared by submission and publishing."""

from __future__ import annotations

import uuid
from pathlib import Path

from kernel.errors import InputError


def ensure_writable_dir(directory: Path) -> None:
    """Create `directory` if needed and prove a file can be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".emoflow-write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output directory {directory} is not writable: {exc.strerror or exc}") from exc
