"""Get-or-compute against the store: the one mechanism that makes retries and re-runs cheap.

Every stage task calls `run_stage`. Its cache key covers the stage, the engine's name and
version, the canonical parameters and the input artifacts' hashes; a committed step with the
same key anywhere in the store is reused instead of recomputed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from kernel.crashpoints import crashpoint
from kernel.errors import InputError, IntegrityError
from models.types import ProgressFn
from stores.cache_keys import step_cache_key
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore
from tasks.progress import emit

Compute = Callable[[Path, ProgressFn], Sequence[NewArtifact]]


def run_stage(
    store: ArtifactStore,
    *,
    run_id: str,
    stage: str,
    engine: str,
    engine_version: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, ArtifactRef],
    compute: Compute,
) -> dict[str, ArtifactRef]:
    """Reuse the committed outputs for this cache key, or compute them and commit them as one step.

    `compute(workdir, progress)` may leave files in `workdir`; they are hashed into the store
    before the directory is removed.
    """
    logger = _logger()
    key = step_cache_key(stage, engine, engine_version, params, {k: v.sha256 for k, v in inputs.items()})
    emit("stage_started", stage)
    step = {
        "run_id": run_id,
        "stage": stage,
        "engine": engine,
        "engine_version": engine_version,
        "params": params,
        "cache_key": key,
        "inputs": inputs,
    }
    cached = store.cached_outputs(key)
    if cached is not None:
        store.record_cache_hit(**step, outputs=cached)
        logger.info("%s: reused outputs of cache key %s", stage, key[:12])
        emit("stage_finished", stage, True, 0.0)
        return cached

    step_id = store.begin_step(**step)
    crashpoint(f"{stage}.before")  # test hook: the step is open ("running"), nothing computed
    workdir = Path(tempfile.mkdtemp(prefix=f"emoflow-{stage}-"))
    try:
        started = time.perf_counter()
        outputs = compute(workdir, lambda done, total: emit("stage_progress", stage, done, total))
        seconds = time.perf_counter() - started  # engine work only; committing counts as store time
        refs = store.commit_step(step_id, outputs)
        crashpoint(f"{stage}.after")  # test hook: the step is committed, the task has not returned
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, InputError) else str(exc)
        store.fail_step(step_id, message)
        emit("stage_failed", stage, message)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    logger.info(
        "%s: %s@%s computed in %.2fs (flow run %s)", stage, engine, engine_version, seconds, flow_run.id
    )
    emit("stage_finished", stage, False, seconds)
    return refs


def retry_transient(_task: object, _task_run: object, state: Any) -> bool:
    """Prefect retry condition: retry engine and store hiccups, never bad input or corrupt data."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, InputError | IntegrityError)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    # stage functions also run outside Prefect (`task.fn(...)` in tests and scripts)
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("emoflow.tasks")
