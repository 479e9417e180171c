"""Stage events for whoever is watching this process (the CLI's progress display)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class StageListener(Protocol):
    def stage_started(self, stage: str) -> None: ...
    def stage_progress(self, stage: str, done: int, total: int) -> None: ...
    def stage_finished(self, stage: str, cache_hit: bool, seconds: float) -> None: ...
    def stage_failed(self, stage: str, error: str) -> None: ...


_listeners: list[object] = []  # StageListeners, or any object with some of its methods
_lock = threading.Lock()


@contextmanager
def listening(listener: object) -> Iterator[None]:
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def emit(event: str, *args: object) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        handler = getattr(listener, event, None)  # listeners follow only the events they care about
        if handler is not None:
            handler(*args)
