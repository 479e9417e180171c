"""The TIE-TFG pipeline (the paper's Figure 2) as one Prefect flow.

    script + description ─ plan ─ speak ─ align ─ feel (EFP) ─ render ─ publish ─> MP4
                                                              portrait ┘

Each stage is a task that reads its inputs from the artifact store and commits its outputs
there; a stage whose cache key is already committed is reused, so retries and re-runs only
compute what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from kernel.jobs import JobSpec
from kernel.settings import Settings, get_settings
from tasks.align import align_words
from tasks.context import open_store
from tasks.feel import feel
from tasks.intake import submit_job
from tasks.plan import plan_emotions
from tasks.publish import publish
from tasks.render import tagged_render_task
from tasks.speak import speak


@dataclass(frozen=True)
class Narration:
    job_id: str
    run_id: str
    published: dict[str, str]  # file name -> path


@flow(name="narrate", flow_run_name="narrate-{job_id}", validate_parameters=False)
def narrate(job_id: str) -> Narration:
    store = open_store()
    run_id = store.start_run(job_id, prefect_flow_run_id=flow_run.id)
    try:
        # 1. Plan: inline tags and the free-form description -> target emotion and intensity per word
        plan = plan_emotions(run_id)["plan"]
        # 2. Speak: emotional TTS following the plan -> speech + the engine's timings
        speech = speak(run_id, plan)
        # 3. Align: word timings checked against (or found in) the audio
        timings = align_words(run_id, speech, plan)["word_timings"]
        # 4. Feel: the emotion-fluctuation predictor -> label distribution and intensity per word
        curve = feel(run_id, speech["speech"], timings, plan)["curve"]
        # 5. Render: the portrait speaks, its expression following the curve
        frames = tagged_render_task()(run_id, speech["speech"], timings, curve)["frames"]
        # 6. Publish: MP4 with audio, curve plot, captions, exported to the output folder
        published = publish(run_id, frames, speech["speech"], curve)
    except BaseException as exc:
        store.finish_run(run_id, error=str(exc) or type(exc).__name__)
        raise
    store.finish_run(run_id)
    return Narration(job_id=job_id, run_id=run_id, published=published)


def narrate_here(job_id: str) -> Narration:
    """Run the flow in this process, without Prefect's heartbeat thread.

    Heartbeats let a server notice crashed runs of remote workers; here the store records crashes
    itself, and joining the heartbeat thread cost about 0.8 s per run.
    """
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return narrate(job_id)


def submit_and_narrate(spec: JobSpec, settings: Settings | None = None) -> Narration:
    """Validate and record the job, then narrate it in this process."""
    return narrate_here(submit_job(spec, settings or get_settings(), open_store()))
