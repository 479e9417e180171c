"""Runs flows off the request thread and remembers which jobs have one queued or running."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger("emoflow.web")


class Launcher:
    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emoflow-flow")
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}  # job id -> flows queued or running for it
        self._errors: dict[str, str] = {}  # job id -> last flow error (the store has the details)

    def launch(self, job_id: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            self._active[job_id] = self._active.get(job_id, 0) + 1
            self._errors.pop(job_id, None)
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda done: self._finished(job_id, done))
        return future

    def active(self, job_id: str) -> bool:
        with self._lock:
            return self._active.get(job_id, 0) > 0

    def error(self, job_id: str) -> str | None:
        with self._lock:
            return self._errors.get(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _finished(self, job_id: str, future: Future[Any]) -> None:
        error = future.exception() if not future.cancelled() else None
        if error is not None:
            # the flow already recorded the failure on its run; this keeps the log line
            log.warning("flow for job %s failed: %s", job_id, error)
        with self._lock:
            self._active[job_id] -= 1
            if error is not None:
                self._errors[job_id] = str(error) or type(error).__name__
