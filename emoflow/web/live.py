"""Live progress of running runs: per-stage snapshots from the store, and a server-sent event stream.

The store is the source of truth (a run started by another process shows too); stages that report
progress while they compute (speak, render) add a fraction, which only this process hears, through a
kernel.progress listener keyed by the Prefect flow run the stage belongs to.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi.concurrency import run_in_threadpool
from prefect.runtime import flow_run

from emoflow.console import STAGES
from emoflow.web.service import RETRYABLE
from stores.records import RunRecord, RunStatus, StepRecord
from stores.store import ArtifactStore

POLL_SECONDS = 0.3  # a stage's end reaches the page within this plus one store read (goal: < 1 s)
KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies and the browser keep an idle stream open
# a stream ends after this and the browser's EventSource reconnects: a client whose disconnect went
# unnoticed costs a poller for this long at most
STREAM_SECONDS = 300.0
RECONNECT_MS = 2000
_KEPT_RUNS = 64  # flow runs whose fractions are remembered; older ones finished long ago


class ProgressBoard:
    """What stages report while they compute, per flow run (a kernel.progress listener), and how
    many event streams are open (so tests and operators can see none leaks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fractions: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._snapshots: dict[str, tuple[float, dict[str, Any]]] = {}
        self.open_streams = 0

    # -- the listener (called on the flow's thread, where Prefect's run context names the flow run)

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        key = flow_run.id
        if key is None or total <= 0:
            return
        with self._lock:
            self._fractions.setdefault(key, {})[stage] = min(1.0, max(0.0, done / total))
            self._fractions.move_to_end(key)
            while len(self._fractions) > _KEPT_RUNS:
                self._fractions.popitem(last=False)

    def fraction(self, flow_run_id: str | None, stage: str) -> float | None:
        with self._lock:
            return self._fractions.get(flow_run_id or "", {}).get(stage)

    # -- snapshots, shared by every stream of one run for one poll interval

    def snapshot(self, store: ArtifactStore, run_id: str) -> dict[str, Any]:
        """`progress_doc` of the run, read from the store at most once per poll interval: twenty
        viewers of one run cost one store read per interval, not twenty."""
        now = time.monotonic()
        with self._lock:
            cached = self._snapshots.get(run_id)
        if cached is not None and now - cached[0] < POLL_SECONDS * 0.8:
            return cached[1]
        doc = self.document(store, store.run(run_id))
        with self._lock:
            if doc["finished"]:
                self._snapshots.pop(run_id, None)  # nobody polls a finished run for long
            else:
                self._snapshots[run_id] = (now, doc)
            # runs nobody has polled for a minute (their viewers left): keep the cache small
            for stale in [k for k, (at, _) in self._snapshots.items() if now - at > 60.0]:
                del self._snapshots[stale]
        return doc

    def forget(self, run_id: str) -> None:
        """Drop the run's cached snapshot: after a cancel request the next read shows it."""
        with self._lock:
            self._snapshots.pop(run_id, None)

    def document(self, store: ArtifactStore, run: RunRecord) -> dict[str, Any]:
        """`progress_doc` of a run just read (the run page's, never a cached one)."""
        doc = progress_doc(run, self)
        # asked to stop, and not yet stopped: the page says so instead of offering cancel again
        doc["cancelling"] = not doc["finished"] and store.cancel_requested(run.id) is not None
        return doc

    def count_stream(self, change: int) -> None:
        with self._lock:
            self.open_streams += change


def progress_doc(run: RunRecord, board: ProgressBoard | None = None) -> dict[str, Any]:
    """The run's status and one row per stage: waiting, running (with a fraction when the stage
    reports one), succeeded, cached or failed."""
    latest: dict[str, StepRecord] = {}
    for step in run.steps:  # oldest first: a stage retried in the same run keeps its last step
        latest[step.stage] = step
    names = list(STAGES) + [name for name in latest if name not in STAGES]
    stages = [stage_row(name, latest.get(name), run, board) for name in names]
    lease = run.job.lease_expires_at
    stalled = (
        run.status == RunStatus.RUNNING
        and lease is not None
        and (lease if lease.tzinfo else lease.replace(tzinfo=UTC)) < datetime.now(UTC)
    )
    return {
        "run_id": run.id,
        "job_id": run.job.id,
        "status": str(run.status),
        "finished": run.status != RunStatus.RUNNING,
        "error": run.error,
        "retryable": run.status in RETRYABLE,
        # its worker stopped renewing the lease: it has probably died, and will be marked abandoned
        "stalled": stalled,
        "done": sum(1 for s in stages if s["status"] in ("succeeded", "cached")),
        "stages": stages,
    }


def stage_row(
    name: str, step: StepRecord | None, run: RunRecord, board: ProgressBoard | None
) -> dict[str, Any]:
    if step is None:
        return {"stage": name, "status": "waiting", "fraction": 0.0, "seconds": None, "error": None}
    status = "cached" if step.cache_hit else str(step.status)
    if status in ("succeeded", "cached"):
        fraction: float | None = 1.0
    elif status == "running":
        # None: running, but its stage reports no fraction (the page shows an indeterminate bar)
        fraction = board.fraction(run.prefect_flow_run_id, name) if board else None
    else:
        fraction = 0.0
    return {
        "stage": name,
        "status": status,
        "fraction": fraction,
        "seconds": step.seconds,
        "error": step.error,
    }


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One server-sent event; JSON never holds a raw line break, so `data` is one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def progress_events(
    store: ArtifactStore,
    board: ProgressBoard,
    run_id: str,
    poll: float = POLL_SECONDS,
    lifetime: float = STREAM_SECONDS,
) -> AsyncIterator[str]:
    """`progress` whenever the run's snapshot changes, then `end` once it has finished.

    Starlette cancels this generator when the client disconnects (its `await` raises CancelledError),
    and the `finally` keeps the count of open streams right whichever way the stream ends."""
    board.count_stream(1)
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        last: dict[str, Any] | None = None
        sent, started, quiet_since = 0, time.monotonic(), time.monotonic()
        while True:
            doc = await run_in_threadpool(board.snapshot, store, run_id)
            if doc != last:
                sent += 1
                yield sse("progress", doc, sent)
                last, quiet_since = doc, time.monotonic()
            if doc["finished"]:
                yield sse("end", {"run_id": doc["run_id"], "status": doc["status"]}, sent + 1)
                return
            now = time.monotonic()
            if now - started > lifetime:
                return  # the browser reconnects after RECONNECT_MS
            if now - quiet_since > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = now
            await asyncio.sleep(poll)
    finally:
        board.count_stream(-1)
