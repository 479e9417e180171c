"""Process-wide handles that tasks share: the store, opened once per process."""

from __future__ import annotations

import threading

from kernel.settings import get_settings
from stores.store import ArtifactStore

_lock = threading.Lock()
_stores: dict[tuple[str, str], ArtifactStore] = {}


def open_store() -> ArtifactStore:
    settings = get_settings()
    key = (settings.resolved_database_url, settings.resolved_blob_root)
    with _lock:
        if key not in _stores:
            _stores[key] = ArtifactStore.from_settings(settings)
        return _stores[key]


def reset_stores() -> None:
    """Forget open stores (tests switch EMOFLOW_HOME between cases)."""
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        get_settings.cache_clear()
