"""Step cache keys: one hash over everything that determines a step's output."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from kernel.canonical import canonical_json

__all__ = ["canonical_json", "step_cache_key"]


def step_cache_key(
    stage: str,
    engine: str,
    engine_version: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    engine_digests: Mapping[str, str] | None = None,
) -> str:
    """sha256 of stage, engine identity, canonical params and the input artifacts' hashes.

    The engine identity is its name and declared version plus `engine_digests`: the digests of the
    tables, model files and source code its output depends on, so an edit of any of them is a miss.
    """
    payload = {
        "stage": stage,
        "engine": engine,
        "engine_version": engine_version,
        "engine_digests": dict(engine_digests or {}),
        "params": params,
        "inputs": dict(inputs),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
