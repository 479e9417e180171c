"""Many narrations at once: from a manifest, or by draining the store's queue of pending jobs.

Each job is one `narrate` flow run inside a task, so Prefect's task runner sets the parallelism
(threads by default, Dask as an option) and one failed job never stops the others. Every job
still goes through the store, so re-running a manifest reuses every finished step.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from emoflow.errors import EmoflowError, InputError
from emoflow.manifest import ManifestRow
from emoflow.settings import get_settings
from flows.narrate import narrate
from tasks.context import open_store
from tasks.intake import submit_job
from tasks.progress import emit


@dataclass(frozen=True)
class JobOutcome:
    row_id: str
    where: str  # manifest file:line, or "queue"
    status: str  # succeeded | failed | rejected
    job_id: str | None = None
    run_id: str | None = None
    computed_steps: int | None = None
    video: str | None = None
    error: str | None = None


@task(name="narrate-job", cache_policy=NO_CACHE)
def narrate_job(job_id: str, row_id: str, where: str) -> JobOutcome:
    try:
        # settings contexts do not follow the task into its worker thread: repeat the heartbeat switch
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            result = narrate(job_id)
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


@flow(name="batch", task_runner=ThreadPoolTaskRunner(max_workers=2), validate_parameters=False)
def narrate_jobs(jobs: list[tuple[str, str, str]]) -> list[JobOutcome]:
    """Narrate (job_id, row_id, where) triples concurrently; returns one outcome per job, in order."""
    futures = [narrate_job.submit(job_id, row_id, where) for job_id, row_id, where in jobs]
    outcomes = [future.result() for future in futures]
    create_table_artifact(
        table=[asdict(outcome) for outcome in outcomes],
        key="batch-summary",
        description=f"{sum(o.status == 'succeeded' for o in outcomes)} of {len(outcomes)} jobs narrated",
    )
    return outcomes


def run_manifest(
    rows: list[ManifestRow], workers: int | None = None, task_runner: Any = None
) -> list[JobOutcome]:
    """Submit every valid row, narrate them concurrently; bad rows come back as "rejected"."""
    settings, store = get_settings(), open_store()
    outcomes: dict[int, JobOutcome] = {}
    jobs: list[tuple[str, str, str]] = []
    order: list[int] = []
    for position, row in enumerate(rows):
        try:
            if row.spec is None:
                raise EmoflowError(row.error or "invalid row")
            jobs.append((submit_job(row.spec, settings, store), row.row_id, row.where))
            order.append(position)
        except EmoflowError as exc:
            outcomes[position] = JobOutcome(row.row_id, row.where, "rejected", error=str(exc))
            emit("job_finished", outcomes[position])
    for position, outcome in zip(order, _narrate(jobs, workers, task_runner), strict=True):
        outcomes[position] = outcome
    return [outcomes[position] for position in range(len(rows))]


def drain_queue(
    limit: int | None = None, workers: int | None = None, task_runner: Any = None
) -> list[JobOutcome]:
    """Claim pending jobs (safe when drains overlap) and narrate them."""
    claimer = f"drain@{socket.gethostname()}:{getpass.getuser()}"
    job_ids = open_store().claim_pending_jobs(claimer, limit)
    return _narrate([(job_id, job_id[:8], "queue") for job_id in job_ids], workers, task_runner)


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


def _narrate(jobs: list[tuple[str, str, str]], workers: int | None, task_runner: Any) -> list[JobOutcome]:
    if not jobs:
        return []
    settings = get_settings()
    runner = task_runner or make_task_runner(settings.task_runner, workers or settings.workers)
    # heartbeats cost ~0.8 s per flow run and the store records crashes itself (see flows.narrate)
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return narrate_jobs.with_options(task_runner=runner)(jobs)
