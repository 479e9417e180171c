"""Re-render a run from an edited emotion curve.

The edit is committed as a new "emotion-curve" artifact (tasks/edit_curve.py). Plan, speak and
align are the job's committed steps, reused by cache key; only the edit, render and publish compute.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.narrate import Narration
from stores.store import SYSTEM_ACTOR
from tasks.align import align_words
from tasks.context import open_store
from tasks.edit_curve import commit_edited_curve, edit_curve, emotion_colors, parse_edits, run_curve
from tasks.plan import plan_emotions
from tasks.publish import publish
from tasks.render import tagged_render_task
from tasks.speak import speak

# the inspector reaches curve editing through this flow module (web knows flows, not tasks)
__all__ = ["commit_edited_curve", "emotion_colors", "rerender", "run_curve"]


@flow(name="rerender", flow_run_name="rerender-{source_run_id}", validate_parameters=False)
def rerender(source_run_id: str, raw_edits: list[dict[str, Any]], actor: str = SYSTEM_ACTOR) -> Narration:
    """A new run of the source run's job that renders the edited curve."""
    store = open_store()
    source_run = store.run(source_run_id)
    source = run_curve(store, source_run.id)
    n_words = len(json.loads(store.read_bytes(source.sha256))["points"])
    edits = [asdict(e) for e in parse_edits(raw_edits, n_words)]
    run_id = store.start_run(source_run.job.id, prefect_flow_run_id=flow_run.id, actor=actor)
    store.record_event(
        "curve.edit",
        actor,
        job_id=source_run.job.id,
        run_id=run_id,
        details={"source_run": source_run.id, "source_curve": source.sha256, "edits": edits},
    )
    try:
        # same job, same inputs: these are cache hits that put the speech and timings in the new run
        plan = plan_emotions(run_id)["plan"]
        speech = speak(run_id, plan)
        timings = align_words(run_id, speech, plan)["word_timings"]
        curve = edit_curve(run_id, source, edits)["curve"]
        frames = tagged_render_task()(run_id, speech["speech"], timings, curve)["frames"]
        published = publish(run_id, frames, speech["speech"], curve)
    except BaseException as exc:
        store.finish_run(run_id, error=str(exc) or type(exc).__name__, actor=actor)
        raise
    store.finish_run(run_id, actor=actor)
    return Narration(job_id=source_run.job.id, run_id=run_id, published=published)
