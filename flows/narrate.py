"""The TIE-TFG pipeline (the paper's Figure 2) as one Prefect flow.

    script + description ─ plan ─ speak ─ align ─ feel (EFP) ─ render ─ publish ─> MP4
                                                              portrait ┘

Each stage is a task that reads its inputs from the artifact store and commits its outputs
there; a stage whose cache key is already committed is reused, so retries and re-runs only
compute what is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.exceptions import CancelledRun
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Cancelled

from flows.fast_path import narrate_from_store
from flows.prefect_api import PrefectRecorder
from flows.record import Narration, recorded_run
from flows.render_stage import render_elsewhere, routed
from kernel.errors import RunCancelled
from kernel.jobs import JobSpec
from kernel.settings import Settings, get_settings
from stores.leases import kept_lease
from stores.records import ArtifactRef
from tasks.align import align_words
from tasks.context import open_store
from tasks.feel import feel
from tasks.intake import submit_job
from tasks.job import load_job
from tasks.plan import plan_emotions
from tasks.publish import Delivery, publish
from tasks.render import render_task
from tasks.speak import speak
from tasks.stages import Aligned, JobInputs, Planned, Spoken

P = ParamSpec("P")
R = TypeVar("R")

# the shell (CLI, inspector) submits through flows, never through tasks directly
__all__ = [
    "Narration",
    "ends_cancelled",
    "narrate",
    "narrate_here",
    "narrate_job",
    "open_store",
    "recorded_run",
    "submit_and_narrate",
    "submit_job",
]


@dataclass(frozen=True)
class Voice:
    """Stages 1-3: what the script says, how it sounds, and when each word is spoken."""

    planned: Planned
    spoken: Spoken
    aligned: Aligned


def ends_cancelled(body: Callable[P, R]) -> Callable[P, R | State]:
    """A flow whose run was cancelled (RunCancelled, the store's record: "cancelled") ends Cancelled in
    Prefect's record too, not Failed."""

    @functools.wraps(body)
    def flow_body(*args: P.args, **kwargs: P.kwargs) -> R | State:
        try:
            return body(*args, **kwargs)
        except RunCancelled as exc:
            return Cancelled(message=str(exc))

    return flow_body


@flow(name="narrate", flow_run_name="narrate-{job_id}", validate_parameters=False)
@ends_cancelled
def narrate(job_id: str) -> Narration:
    store = open_store()
    # the script, the description and the portrait, as the store holds them, and the resolved options
    job = load_job(store, job_id)
    run_id = store.start_run(job.job_id, prefect_flow_run_id=flow_run.id)
    with recorded_run(store, run_id), kept_lease(store, job.job_id):
        voice = speak_script(run_id, job)
        # 4. Feel: the emotion-fluctuation predictor -> label distribution and intensity per word
        felt = feel(run_id, voice.spoken.speech, voice.aligned.word_timings, voice.planned.plan, job.options)
        delivery = render_and_publish(run_id, job, voice, felt.curve)
    return Narration(job_id=job.job_id, run_id=run_id, published=delivery.files)


def speak_script(run_id: str, job: JobInputs) -> Voice:
    # 1. Plan: inline tags and the free-form description -> target emotion and intensity per word
    planned = plan_emotions(run_id, job.script, job.description, job.options)
    # 2. Speak: emotional TTS following the plan -> speech + the engine's timings
    spoken = speak(run_id, planned.plan, job.options)
    # 3. Align: word timings checked against (or found in) the audio
    aligned = align_words(run_id, spoken, planned.plan, job.options)
    return Voice(planned, spoken, aligned)


def render_and_publish(run_id: str, job: JobInputs, voice: Voice, curve: ArtifactRef) -> Delivery:
    speech, timings = voice.spoken.speech, voice.aligned.word_timings
    # 5. Render: the portrait speaks, its expression following the curve (here, or on a GPU pool's worker)
    if routed(job.options):
        rendered = render_elsewhere(run_id, job, speech, timings, curve)
    else:
        rendered = render_task()(run_id, job.portrait, speech, timings, curve, job.options)
    # 6. Publish: MP4 with audio, curve plot, captions, exported to the output folder
    return publish(run_id, job, rendered.frames, speech, voice.planned.plan, curve)


def narrate_job(job_id: str) -> Narration:
    """Run the flow in this process and return its narration; a cancelled run raises RunCancelled."""
    try:
        narration = narrate(job_id)
    except CancelledRun as exc:  # the flow ended Cancelled: the same error as a cancelled stage
        raise RunCancelled(str(exc)) from None
    assert isinstance(narration, Narration)  # the only other return, Cancelled, raises above
    return narration


def narrate_here(job_id: str) -> Narration:
    """Run the flow in this process, without Prefect's heartbeat thread.

    Heartbeats let a server notice crashed runs of remote workers; here the store records crashes
    itself, and joining the heartbeat thread cost about 0.8 s per run.
    """
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), kept_lease(open_store(), job_id):
        return narrate_job(job_id)


def narrate_resolved_or_flow(job_id: str) -> Narration:
    """The job's narration from the store when every step of it is already done (the fast path, as
    `emoflow narrate` takes it), else the flow's: for a long-lived process such as `emoflow serve`,
    where a resubmitted job would otherwise pay a whole cached flow run."""
    recorder = PrefectRecorder.from_environment() if get_settings().fast_path else None
    if recorder is not None:
        try:
            narration, _ = narrate_from_store(job_id, recorder)
        finally:
            recorder.close()
        if narration is not None:
            return narration
    return narrate_job(job_id)


def submit_and_narrate(spec: JobSpec, settings: Settings | None = None) -> Narration:
    """Validate and record the job, then narrate it in this process."""
    return narrate_here(submit_job(spec, settings or get_settings(), open_store()))
