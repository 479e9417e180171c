"""Get-or-compute against the store: the one mechanism that makes retries and re-runs cheap.

A stage is declared once (`Stage`: its name, the artifacts it takes, the typed record it returns, and
the job options that go into its cache key). Every stage task calls `run_stage`, whose cache key covers
the stage, the engine's identity (name, version, and digests of the tables, model files and source code
its output depends on), the canonical parameters and the input artifacts' hashes. A committed step with
the same key anywhere in the store is reused instead of recomputed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from kernel.crashpoints import crashpoint
from kernel.errors import InputError, IntegrityError, RunCancelled, StoreError
from kernel.jobs import JobOptions
from kernel.progress import emit
from kernel.settings import get_settings
from models.identity import Identified
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore
from tasks.keys import Stage, engine_identity, reusable_outputs, stage_key, step_fields, stop_if_cancelled

__all__ = ["Stage", "retry_transient", "run_stage", "stage_task", "stop_if_cancelled"]

Compute = Callable[[Path, ProgressFn], Sequence[NewArtifact]]
Outputs = TypeVar("Outputs")
P = ParamSpec("P")
R = TypeVar("R")
CANCEL_CHECK_SECONDS = 0.5  # how often a stage reporting progress looks for a cancel request


def stage_task(stage: Stage[Any]) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The Prefect task of a stage: retried on transient failures, cached by our store, not Prefect's."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return task(
            name=stage.name,
            retries=get_settings().task_retries,
            retry_condition_fn=retry_transient,
            cache_policy=NO_CACHE,
        )(fn)

    return decorate


def run_stage(
    store: ArtifactStore,
    stage: Stage[Outputs],
    *,
    run_id: str,
    engine: Identified,
    params: Mapping[str, Any],
    inputs: Mapping[str, ArtifactRef],
    compute: Compute,
    options: JobOptions | None = None,
) -> Outputs:
    """Reuse the committed outputs for this cache key, or compute them and commit them as one step.

    `compute(workdir, progress)` may leave files in `workdir`; they are hashed into the store
    before the directory is removed. With the job's `options`, the engine's identity is remembered
    under them, so the store-only resolver (tasks/resolve.py) can compute this key without the engine.
    """
    logger = _logger()
    identity = engine_identity(engine, stage.name, options)
    key = stage_key(stage, identity, params, inputs)
    emit("stage_started", stage.name)
    try:
        stop_if_cancelled(store, run_id, stage.name)  # before anything is written: nothing half-done
    except RunCancelled as exc:
        emit("stage_failed", stage.name, str(exc))
        raise
    step = step_fields(run_id, stage, identity, params, key, inputs)
    cached = reusable_outputs(store, stage, key)
    if cached is not None:
        store.record_cache_hit(**step, outputs=cached)
        logger.info("%s: reused outputs of cache key %s", stage.name, key[:12])
        emit("stage_finished", stage.name, True, 0.0)
        return stage.outputs(**cached)

    step_id = store.begin_step(**step)
    crashpoint(f"{stage.name}.before")  # test hook: the step is open ("running"), nothing computed
    workdir = Path(tempfile.mkdtemp(prefix=f"emoflow-{stage.name}-"))
    try:
        started = time.perf_counter()
        outputs = compute(workdir, _progress(store, run_id, stage.name))
        seconds = time.perf_counter() - started  # engine work only; committing counts as store time
        names = sorted(new.name for new in outputs)
        if names != sorted(stage.output_names):
            raise StoreError(f"{stage.name} must produce {sorted(stage.output_names)}, produced {names}")
        refs = store.commit_step(step_id, outputs)
        crashpoint(f"{stage.name}.after")  # test hook: the step is committed, the task has not returned
    except BaseException as exc:
        plain = isinstance(exc, InputError | RunCancelled)  # their messages already say what happened
        message = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        store.fail_step(step_id, message)
        emit("stage_failed", stage.name, message)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    logger.info("%s: %s computed in %.2fs (flow run %s)", stage.name, identity.label, seconds, flow_run.id)
    emit("stage_finished", stage.name, False, seconds)
    return stage.outputs(**refs)


def _progress(store: ArtifactStore, run_id: str, stage: str) -> ProgressFn:
    """The stage's progress callback: reports, and stops a long stage soon after a cancel request
    (looked up at most every CANCEL_CHECK_SECONDS, so a per-frame callback stays cheap)."""
    checked = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal checked
        emit("stage_progress", stage, done, total)
        # and at the last report: a stage faster than the interval must not commit after a cancel
        if done >= total or time.monotonic() - checked >= CANCEL_CHECK_SECONDS:
            checked = time.monotonic()
            stop_if_cancelled(store, run_id, stage)  # run_stage then fails the step: nothing committed

    return progress


def retry_transient(_task: object, _task_run: object, state: Any) -> bool:
    """Prefect retry condition: retry engine and store hiccups, never bad input, corrupt data or a
    cancelled run."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, InputError | IntegrityError | RunCancelled)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    # stage functions also run outside Prefect (`task.fn(...)` in tests and scripts)
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("emoflow.tasks")
