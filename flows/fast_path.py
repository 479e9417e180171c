"""The fast path: a job with nothing left to compute is narrated from the store, without the flow.

A cached `narrate` flow run computes nothing, yet a CLI process that runs it imports Prefect and every
engine (5 s here, most of a cached narration). When `tasks.resolve` finds every step of a submitted job
in the store, this module records the run the way that flow run would: a new run with one cache-hit
step per stage (the same rows, audit events and lineage as `run_stage`'s cache hits), the published
files exported again, the run finished; and Prefect's record of it, a Completed `narrate` flow run with
the run's summary artifact, written through the REST API (flows/prefect_api.py).
Anything the resolver is unsure of sends the job to the flow instead.

A manifest is taken CHUNK rows at a time: the rows are submitted, then resolved together (one store
query per stage), and each job's cache hits and exports are written in one transaction each, while
Prefect's requests go out from the recorder's background thread. One job or a manifest's, the records
are the same (tests/flows/test_fast_path.py compares them).

Neither Prefect, torch nor an engine is imported here: tests/flows/test_fast_path.py checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from flows.prefect_api import PrefectRecorder
from flows.record import JobOutcome, Narration, recorded_run
from kernel.errors import EmoflowError, EngineError, RunCancelled
from kernel.manifest import ManifestRow
from kernel.paths import ensure_writable_dir
from kernel.progress import emit
from kernel.settings import get_settings
from stores.leases import kept_lease
from stores.runs import CacheHit
from stores.store import ArtifactStore
from tasks.context import open_store
from tasks.intake import submit_job
from tasks.keys import step_fields, stop_if_cancelled
from tasks.resolve import Resolution, ResolvedStep, find_jobs, one_look, resolve, resolve_many
from tasks.stages import PUBLISH, Published, published_files
from tasks.summary import RunSummary, export_files, run_summary

# the shell submits through flows; this module is its way to the resolver too
__all__ = ["narrate_from_store", "narrate_manifest_from_store", "open_store", "submit_job"]

# manifest rows resolved and recorded together: small enough that Prefect's server records one chunk
# while the next is submitted, large enough that a chunk's lookups and bulk requests stay few
CHUNK = 10
NO_SERVER = "no Prefect server to record the run in (an ephemeral one needs the flow)"
NO_TEXTS = "the job's texts are not in the store yet"

# what narrating one resolved job came to: its narration, a decline (the flow must run it), or the error
Narrated = Narration | str | Exception


def narrate_from_store(job_id: str, recorder: PrefectRecorder | None) -> tuple[Narration | None, str]:
    """The job's narration, recorded from the store, or None and why the flow must run it.

    Declines before writing any run: the caller then runs the flow on the same job.
    """
    if recorder is None:
        return None, NO_SERVER
    store = open_store()
    # writes nothing: a declined job reaches the flow as it was submitted
    job = find_jobs(store, [job_id])[job_id]
    if job is None:
        return None, NO_TEXTS
    with one_look():
        resolution = resolve(store, job)
    if resolution.declined is not None:
        return None, resolution.declined
    [narrated] = narrate_resolved(store, [resolution], recorder).results()
    if isinstance(narrated, Exception):
        raise narrated
    return (None, narrated) if isinstance(narrated, str) else (narrated, "")


def narrate_resolved(
    store: ArtifactStore, resolutions: Sequence[Resolution], recorder: PrefectRecorder
) -> InFlight:
    """Record each completely resolved job's run in the store, and queue Prefect's record of it; the
    caller goes on while the recorder sends it, and `InFlight.results` waits for the end.

    Nothing is written when Prefect's server does not answer: each job is declined, for the flow."""
    try:
        recorder.ready()
    except EngineError as exc:
        return InFlight(store, [f"Prefect's server did not answer: {exc}"] * len(resolutions), {})
    results: list[Narrated] = []
    sent: dict[int, _Sent] = {}
    for index, resolution in enumerate(resolutions):
        job_id = resolution.job.job_id
        # 1. The store: the run, its cache-hit steps and exports, finished
        try:
            run_id = store.start_run(job_id, prefect_flow_run_id=None)
        except Exception as exc:  # nothing written: as in a batch's flow, reported, not raised
            results.append(exc)
            continue
        try:
            narration = _record(store, resolution, run_id)
        except BaseException as exc:  # the run is finished failed: so is its flow run
            error = str(exc) or type(exc).__name__
            sent[index] = _Sent(run_id, recorder.later(recorder.record, job_id, error=error))
            if not isinstance(exc, Exception):
                raise
            results.append(exc)
            continue
        # 2. Prefect: the finished run's flow run and summary, sent while the next job is recorded
        flow_run = recorder.later(recorder.record, job_id)
        try:
            [record] = store.runs_by_id([run_id])
        except Exception as exc:
            sent[index] = _Sent(run_id, flow_run)
            results.append(exc)
            continue
        summary = run_summary(record, narration.published)
        artifact = recorder.later(_write_summary, recorder, flow_run, summary)
        sent[index] = _Sent(run_id, flow_run, artifact)
        results.append(narration)
    return InFlight(store, results, sent)


@dataclass(frozen=True)
class _Sent:
    """What the recorder was asked to send for one job's run."""

    run_id: str
    flow_run: Future[str]  # the flow run's id
    summary: Future[None] | None = None


def _write_summary(recorder: PrefectRecorder, flow_run: Future[str], summary: RunSummary) -> None:
    # queued after the flow run's request, in the same thread: its id is there by now, or its error
    recorder.markdown(flow_run.result(), summary.key, summary.description, summary.markdown)


class InFlight:
    """Resolved jobs recorded in the store, while the recorder still sends Prefect's record of them."""

    def __init__(self, store: ArtifactStore, results: list[Narrated], sent: dict[int, _Sent]) -> None:
        self._store, self._results, self._sent = store, results, sent

    def results(self) -> list[Narrated]:
        """One result per job, once Prefect has it all, each run linked to its flow run: a job whose
        record Prefect refused is an error (a run without a flow run keeps none in the store)."""
        results = list(self._results)
        links: dict[str, str] = {}
        for index, sent in self._sent.items():
            try:
                links[sent.run_id] = sent.flow_run.result()
                if sent.summary is not None:
                    sent.summary.result()
            except EngineError as exc:
                if not isinstance(results[index], Exception):
                    results[index] = exc
        if links:
            self._store.link_flow_runs(links)
        return results


def _record(store: ArtifactStore, resolution: Resolution, run_id: str) -> Narration:
    job = resolution.job
    with recorded_run(store, run_id), kept_lease(store, job.job_id):
        _record_steps(store, run_id, resolution)
        found = {name: ref for step in resolution.steps for name, ref in step.outputs.items()}
        published = Published(**resolution.steps[-1].outputs)
        exports = published_files(job.options, published, found["plan"], found["curve"])
        files = export_files(store, run_id, Path(job.options.output_dir), exports)
    return Narration(job_id=job.job_id, run_id=run_id, published=files)


def _record_steps(store: ArtifactStore, run_id: str, resolution: Resolution) -> None:
    """The run's cache-hit steps, in one transaction."""
    steps = resolution.steps
    assert steps[-1].stage is PUBLISH, [step.stage.name for step in steps]
    emit("stage_started", steps[0].stage.name)
    try:
        # once for all the steps: they are written together, in less time than one stage checks
        stop_if_cancelled(store, run_id, steps[0].stage.name)
    except RunCancelled as exc:
        emit("stage_failed", steps[0].stage.name, str(exc))
        raise
    try:
        ensure_writable_dir(Path(resolution.job.options.output_dir))  # as the publish task, before its step
    except BaseException:
        _write_hits(store, run_id, steps[:-1])  # the flow would have recorded the steps before publish
        raise
    _write_hits(store, run_id, steps)


def _write_hits(store: ArtifactStore, run_id: str, steps: Sequence[ResolvedStep]) -> None:
    hits = [
        CacheHit(
            **step_fields(run_id, step.stage, step.identity, step.params, step.key, step.inputs),
            outputs=step.outputs,
        )
        for step in steps
    ]
    store.record_cache_hits(hits)
    for index, step in enumerate(steps):
        if index:  # the first stage was announced before the cancel check
            emit("stage_started", step.stage.name)
        emit("stage_finished", step.stage.name, True, 0.0)


def narrate_manifest_from_store(
    rows: Sequence[ManifestRow], recorder: PrefectRecorder | None, declined: dict[int, str] | None = None
) -> tuple[dict[int, JobOutcome], dict[int, str]]:
    """Submit every valid row and narrate from the store those with nothing to compute, CHUNK rows at a
    time: a chunk is submitted and resolved while Prefect's server records the one before (rows in
    threads were no faster here: they share one SQLite file and the GIL).

    Returns the outcomes by row position (rejected and fast-path rows) and, by position, the job ids
    of the submitted rows the flow must narrate (flows.batch.run_manifest takes them as they are);
    `declined` receives why each of those could not be resolved.
    """
    outcomes: dict[int, JobOutcome] = {}
    pending: dict[int, str] = {}
    why: dict[int, str] = {}
    previous: _Rows | None = None
    with one_look():  # one decision on the engines' files for the whole manifest, as a flow process makes
        for first in range(0, len(rows), CHUNK):
            current = _narrate_rows(rows, range(first, min(first + CHUNK, len(rows))), recorder, outcomes)
            if previous is not None:
                previous.settle(outcomes, pending, why)
            previous = current
        if previous is not None:
            previous.settle(outcomes, pending, why)
    if declined is not None:
        declined |= why
    return outcomes, pending


class _Rows:
    """A chunk's submitted rows: those the flow must narrate (with why), and those narrated from the
    store while Prefect's record of them is sent."""

    def __init__(self, rows: Sequence[ManifestRow], submitted: dict[int, str]) -> None:
        self.rows, self.submitted = rows, submitted
        self.declined: dict[int, str] = {}
        self.failed: dict[int, Exception] = {}
        self.narrated: list[int] = []  # positions, in the order of `in_flight`'s results
        self.in_flight: InFlight | None = None

    def settle(self, outcomes: dict[int, JobOutcome], pending: dict[int, str], why: dict[int, str]) -> None:
        """Wait for Prefect's record, then give each row its outcome, or send it to the flow."""
        results = self.in_flight.results() if self.in_flight is not None else []
        failed = dict(self.failed)
        for position, result in zip(self.narrated, results, strict=True):
            if isinstance(result, str):
                self.declined[position] = result
            elif isinstance(result, Exception):
                failed[position] = result
            else:
                row = self.rows[position]
                video = result.published["video.mp4"]
                outcome = JobOutcome(
                    row.row_id, row.where, "succeeded", result.job_id, result.run_id, 0, video
                )
                outcomes[position] = _finished(outcome)
        store = open_store()
        for position, exc in failed.items():
            row, job_id = self.rows[position], self.submitted[position]
            runs = store.job_runs(job_id)
            run_id = runs[-1].id if runs else None
            error = str(exc) or type(exc).__name__
            outcomes[position] = _finished(
                JobOutcome(row.row_id, row.where, "failed", job_id, run_id, error=error)
            )
        for position, reason in self.declined.items():
            pending[position], why[position] = self.submitted[position], reason


def _narrate_rows(
    rows: Sequence[ManifestRow],
    positions: range,
    recorder: PrefectRecorder | None,
    outcomes: dict[int, JobOutcome],
) -> _Rows:
    """Submit and resolve these rows, and record those resolved in the store (rejected rows get their
    outcome now; the others when the chunk settles)."""
    store = open_store()
    # 1. Submit every valid row, as the flow's batch would
    submitted: dict[int, str] = {}
    for position in positions:
        row = rows[position]
        if row.spec is None:
            outcome = JobOutcome(row.row_id, row.where, "rejected", error=row.error or "invalid row")
            outcomes[position] = _finished(outcome)
            continue
        try:
            submitted[position] = submit_job(row.spec, get_settings(), store)
        except EmoflowError as exc:
            outcomes[position] = _finished(JobOutcome(row.row_id, row.where, "rejected", error=str(exc)))
    chunk = _Rows(rows, submitted)
    if recorder is None:
        chunk.declined = dict.fromkeys(submitted, NO_SERVER)
        return chunk
    # 2. Resolve them together: a few queries per stage for all the rows
    try:
        jobs = find_jobs(store, list(submitted.values()))
        findable = [(position, jobs[job_id]) for position, job_id in submitted.items()]
        resolutions = iter(resolve_many(store, [job for _, job in findable if job is not None]))
    except Exception as exc:  # as in a batch's flow: reported per job, not raised
        chunk.failed = dict.fromkeys(submitted, exc)
        return chunk
    ready: list[Resolution] = []
    for position, job in findable:
        resolution = next(resolutions) if job is not None else None
        if resolution is None:
            chunk.declined[position] = NO_TEXTS
        elif resolution.declined is not None:
            chunk.declined[position] = resolution.declined
        else:
            chunk.narrated.append(position)
            ready.append(resolution)
    # 3. Narrate the resolved rows from the store; Prefect's record of them follows in the background
    if ready:
        chunk.in_flight = narrate_resolved(store, ready, recorder)
    return chunk


def _finished(outcome: JobOutcome) -> JobOutcome:
    emit("job_finished", outcome)  # the progress bar moves as each row is done
    return outcome
