"""Canonical JSON: equal settings and equal data give equal text, so their hashes agree."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from kernel.errors import InputError


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"cache key parameters must be finite numbers, got {value!r}")
        # 1 and 1.0 mean the same setting; 12 significant digits absorb float noise
        rounded = float(f"{value:.12g}")
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    raise InputError(f"cache key parameters must be JSON-like, got {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace and normalised numbers: equal settings give equal text."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_digest(value: Any) -> str:
    """sha256 hex of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
