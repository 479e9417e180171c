"""The fast path: a job with nothing left to compute is narrated from the store, without the flow.

A cached `narrate` flow run computes nothing, yet a CLI process that runs it imports Prefect and every
engine (5 s here, most of a cached narration). When `tasks.resolve` finds every step of a submitted job
in the store, this module records the run the way that flow run would: a new run with one cache-hit
step per stage (the same store calls, audit events and lineage as `run_stage`'s cache hits), the
published files exported again, the run finished; and Prefect's record of it, a Completed `narrate`
flow run with the run's summary artifact, written through the REST API (flows/prefect_api.py).
Anything the resolver is unsure of sends the job to the flow instead.

Neither Prefect, torch nor an engine is imported here: tests/flows/test_fast_path.py checks it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from flows.prefect_api import PrefectRecorder
from flows.record import JobOutcome, Narration, recorded_run
from kernel.errors import EmoflowError, EngineError, RunCancelled
from kernel.manifest import ManifestRow
from kernel.paths import ensure_writable_dir
from kernel.progress import emit
from kernel.settings import get_settings
from stores.leases import kept_lease
from stores.store import ArtifactStore
from tasks.context import open_store
from tasks.intake import submit_job
from tasks.job import find_job
from tasks.keys import step_fields, stop_if_cancelled
from tasks.resolve import Resolution, one_look, resolve
from tasks.stages import PUBLISH, Published, published_files
from tasks.summary import RunSummary, export_files, run_summary

# the shell submits through flows; this module is its way to the resolver too
__all__ = ["narrate_from_store", "narrate_manifest_from_store", "open_store", "submit_job"]


def narrate_from_store(job_id: str, recorder: PrefectRecorder | None) -> tuple[Narration | None, str]:
    """The job's narration, recorded from the store, or None and why the flow must run it.

    Declines before writing any run: the caller then runs the flow on the same job.
    """
    if recorder is None:
        return None, "no Prefect server to record the run in (an ephemeral one needs the flow)"
    store = open_store()
    job = find_job(store, job_id)  # writes nothing: a declined job reaches the flow as it was submitted
    if job is None:
        return None, "the job's texts are not in the store yet"
    with one_look():
        resolution = resolve(store, job)
    if resolution.declined is not None:
        return None, resolution.declined
    try:
        flow_run_id = recorder.start(job_id)
    except EngineError as exc:
        return None, str(exc)
    try:
        narration, summary = _record(store, resolution, flow_run_id)
    except BaseException as exc:
        with contextlib.suppress(EngineError):
            recorder.finish(flow_run_id, error=str(exc) or type(exc).__name__)
        raise
    # the store has the run: what follows completes Prefect's record of it
    recorder.complete(flow_run_id, summary.key, summary.description, summary.markdown)
    return narration, ""


def _record(store: ArtifactStore, resolution: Resolution, flow_run_id: str) -> tuple[Narration, RunSummary]:
    job = resolution.job
    run_id = store.start_run(job.job_id, prefect_flow_run_id=flow_run_id)
    with recorded_run(store, run_id), kept_lease(store, job.job_id):
        for step in resolution.steps:
            if step.stage is PUBLISH:
                ensure_writable_dir(Path(job.options.output_dir))  # as the publish task, before its step
            emit("stage_started", step.stage.name)
            try:
                stop_if_cancelled(store, run_id, step.stage.name)
            except RunCancelled as exc:
                emit("stage_failed", step.stage.name, str(exc))
                raise
            fields = step_fields(run_id, step.stage, step.identity, step.params, step.key, step.inputs)
            store.record_cache_hit(**fields, outputs=step.outputs)
            emit("stage_finished", step.stage.name, True, 0.0)
        found = {name: ref for step in resolution.steps for name, ref in step.outputs.items()}
        published = Published(**resolution.steps[-1].outputs)
        exports = published_files(job.options, published, found["plan"], found["curve"])
        files = export_files(store, run_id, Path(job.options.output_dir), exports)
    summary = run_summary(store.run(run_id), files)
    return Narration(job_id=job.job_id, run_id=run_id, published=files), summary


def narrate_manifest_from_store(
    rows: Sequence[ManifestRow], recorder: PrefectRecorder | None, declined: dict[int, str] | None = None
) -> tuple[dict[int, JobOutcome], dict[int, str]]:
    """Submit every valid row and narrate from the store those with nothing to compute, one row after
    another (two threads were no faster here: the rows share one SQLite file and the GIL).

    Returns the outcomes by row position (rejected and fast-path rows) and, by position, the job ids
    of the submitted rows the flow must narrate (flows.batch.run_manifest takes them as they are);
    `declined` receives why each of those could not be resolved.
    """
    outcomes: dict[int, JobOutcome] = {}
    pending: dict[int, str] = {}
    with one_look():  # one decision on the engines' files for the whole manifest, as a flow process makes
        for position, row in enumerate(rows):
            outcome, job_id, why = _narrate_row(row, recorder)
            if outcome is not None:
                outcomes[position] = outcome
            elif job_id is not None:
                pending[position] = job_id
                if declined is not None:
                    declined[position] = why
    return outcomes, pending


def _narrate_row(
    row: ManifestRow, recorder: PrefectRecorder | None
) -> tuple[JobOutcome | None, str | None, str]:
    """(the row's outcome, or None and its job id for the flow with why it was declined)."""
    if row.spec is None:
        return (
            _finished(JobOutcome(row.row_id, row.where, "rejected", error=row.error or "invalid row")),
            None,
            "",
        )
    store = open_store()
    try:
        job_id = submit_job(row.spec, get_settings(), store)
    except EmoflowError as exc:
        return _finished(JobOutcome(row.row_id, row.where, "rejected", error=str(exc))), None, ""
    try:
        narration, why = narrate_from_store(job_id, recorder)
    except Exception as exc:  # as in a batch's flow: one job's failure is reported, not raised
        runs = store.job_runs(job_id)
        run_id = runs[-1].id if runs else None
        error = str(exc) or type(exc).__name__
        return _finished(JobOutcome(row.row_id, row.where, "failed", job_id, run_id, error=error)), None, ""
    if narration is None:
        return None, job_id, why
    video = narration.published["video.mp4"]
    outcome = JobOutcome(row.row_id, row.where, "succeeded", job_id, narration.run_id, 0, video)
    return _finished(outcome), None, ""  # the progress bar moves as each row is done


def _finished(outcome: JobOutcome) -> JobOutcome:
    emit("job_finished", outcome)
    return outcome
