"""Many narrations at once: from a manifest, or by draining the store's queue of pending jobs.

Each job is one `narrate` flow run inside a task, so Prefect's task runner sets the parallelism
(threads by default, Dask as an option) and one failed job never stops the others. Each job's
engines get an equal share of the cores (kernel.threads). Every job still goes through the store,
so re-running a manifest reuses every finished step.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.narrate import narrate_job
from flows.record import JobOutcome
from kernel.errors import EmoflowError, InputError
from kernel.jobs import JobSpec
from kernel.manifest import ManifestRow
from kernel.progress import emit
from kernel.runtime import host_name
from kernel.settings import get_settings
from kernel.threads import engine_threads, set_engine_threads, threads_per_worker
from stores.leases import kept_lease
from tasks.context import open_store
from tasks.intake import submit_job


@task(name="narrate-row", cache_policy=NO_CACHE)
def narrate_row(
    spec: JobSpec, row_id: str, where: str, engine_threads: int, job_id: str | None = None
) -> JobOutcome:
    """Validate and record one manifest row's job, then narrate it. Validation (face detection
    included) runs in the workers too, alongside the other jobs rather than before them all. A row
    submitted already (by the fast path's pass over the manifest) comes with its `job_id`."""
    set_engine_threads(engine_threads)
    if job_id is None:
        try:
            job_id = submit_job(spec, get_settings(), open_store())
        except EmoflowError as exc:
            return _rejected(row_id, where, str(exc))
    return _narrate_one(job_id, row_id, where, engine_threads)


@task(name="drain-worker", cache_policy=NO_CACHE)
def drain_worker(claimer: str, engine_threads: int, quota: int | None) -> list[JobOutcome]:
    """One worker slot: claim one pending job at a time and narrate it, until the queue is empty or
    `quota` jobs are done. Claiming one at a time keeps overlapping drains (threads, Dask workers,
    other processes or machines) evenly loaded."""
    outcomes: list[JobOutcome] = []
    while quota is None or len(outcomes) < quota:
        claimed = open_store().claim_pending_jobs(claimer, 1)
        if not claimed:
            break
        with kept_lease(open_store(), claimed[0]):  # held from the claim on, not only once the run starts
            outcomes.append(_narrate_one(claimed[0], claimed[0][:8], "queue", engine_threads))
    return outcomes


def _two_threads() -> TaskRunner[Any]:
    # the default; make_task_runner picks the real one per batch with .with_options
    return ThreadPoolTaskRunner(max_workers=2)


@flow(name="batch", task_runner=_two_threads(), validate_parameters=False)
def narrate_rows(rows: list[tuple[JobSpec, str, str, str | None]], engine_threads: int) -> list[JobOutcome]:
    """Narrate (spec, row_id, where, job id if submitted) rows concurrently; one outcome per row, in order."""
    futures = [
        narrate_row.submit(spec, row_id, where, engine_threads, job_id)
        for spec, row_id, where, job_id in rows
    ]
    return _summarised([future.result() for future in futures])


@flow(name="drain", task_runner=_two_threads(), validate_parameters=False)
def drain_jobs(claimer: str, quotas: list[int | None], engine_threads: int) -> list[JobOutcome]:
    """One drain-worker per quota, all claiming from the store's queue at once."""
    futures = [drain_worker.submit(claimer, engine_threads, quota) for quota in quotas]
    return _summarised([outcome for future in futures for outcome in future.result()])


def run_manifest(
    rows: list[ManifestRow],
    workers: int | None = None,
    task_runner: Any = None,
    submitted: Mapping[int, str] | None = None,
) -> list[JobOutcome]:
    """Narrate every valid row concurrently; malformed rows and rows whose job fails validation
    come back as "rejected". `submitted` gives, by position, the job ids of rows submitted already."""
    submitted = submitted or {}
    outcomes: dict[int, JobOutcome] = {}
    valid: list[tuple[int, JobSpec, ManifestRow]] = []
    for position, row in enumerate(rows):
        if row.spec is None:
            outcomes[position] = _rejected(row.row_id, row.where, row.error or "invalid row")
        else:
            valid.append((position, row.spec, row))
    if valid:
        with _batch_threads(workers or get_settings().workers, task_runner) as (runner, threads):
            narrated = narrate_rows.with_options(task_runner=runner)(
                [(spec, row.row_id, row.where, submitted.get(position)) for position, spec, row in valid],
                threads,
            )
        for (position, _, _), outcome in zip(valid, narrated, strict=True):
            outcomes[position] = outcome
    return [outcomes[position] for position in range(len(rows))]


def drain_queue(
    limit: int | None = None, workers: int | None = None, task_runner: Any = None
) -> list[JobOutcome]:
    """Narrate pending jobs, each worker claiming one at a time (safe when drains overlap), until
    the queue is empty or `limit` jobs are done."""
    count = workers or get_settings().workers
    if limit is not None:
        count = min(count, limit)
        if count < 1:
            return []
        quotas: list[int | None] = [limit // count + (slot < limit % count) for slot in range(count)]
    else:
        quotas = [None] * count
    claimer = f"drain@{host_name()}:{getpass.getuser()}:{os.getpid()}"
    with _batch_threads(count, task_runner) as (runner, threads):
        return drain_jobs.with_options(task_runner=runner)(claimer, quotas, threads)


@flow(name="drain-queue")
def drain_queue_flow(limit: int | None = None) -> int:
    """The scheduled entry point: narrate every pending job; returns how many succeeded."""
    return sum(outcome.status == "succeeded" for outcome in drain_queue(limit))


def make_task_runner(kind: str, workers: int) -> Any:
    """Threads share one process (engines load once); Dask runs jobs in worker processes, which
    needs a running Prefect server (PREFECT_API_URL), since each process would otherwise start its own."""
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        if not os.environ.get("PREFECT_API_URL"):
            raise InputError("the dask task runner needs a running Prefect server: set PREFECT_API_URL")
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True},
        )
    raise InputError(f"unknown task runner {kind!r}; choose threads or dask")


@contextmanager
def _batch_threads(workers: int, task_runner: Any) -> Iterator[tuple[Any, int]]:
    """The task runner and each job's engine threads, with that budget set in this process (thread
    workers share it; a Dask worker sets it again in its own process) and no flow heartbeats."""
    settings = get_settings()
    runner = task_runner or make_task_runner(settings.task_runner, workers)
    threads = threads_per_worker(workers, settings.engine_threads)
    # heartbeats cost ~0.8 s per flow run and the store records crashes itself (see flows.narrate)
    with engine_threads(threads), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield runner, threads


def _narrate_one(job_id: str, row_id: str, where: str, threads: int) -> JobOutcome:
    set_engine_threads(threads)  # no-op for thread workers; a Dask worker process sets its own
    try:
        # settings contexts do not follow the task into its worker thread: repeat the heartbeat switch
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            result = narrate_job(job_id)
    except Exception as exc:  # one job's failure is reported, never raised into the batch
        run = open_store().job_runs(job_id)[-1]
        outcome = JobOutcome(row_id, where, "failed", job_id, run.id, error=str(exc) or type(exc).__name__)
    else:
        steps = open_store().run(result.run_id).steps
        computed = sum(1 for step in steps if not step.cache_hit)
        outcome = JobOutcome(
            row_id, where, "succeeded", job_id, result.run_id, computed, result.published["video.mp4"]
        )
    emit("job_finished", outcome)
    return outcome


def _rejected(row_id: str, where: str, error: str) -> JobOutcome:
    outcome = JobOutcome(row_id, where, "rejected", error=error)
    emit("job_finished", outcome)
    return outcome


def _summarised(outcomes: list[JobOutcome]) -> list[JobOutcome]:
    create_table_artifact(
        table=[asdict(outcome) for outcome in outcomes],
        key="batch-summary",
        description=f"{sum(o.status == 'succeeded' for o in outcomes)} of {len(outcomes)} jobs narrated",
    )
    return outcomes
