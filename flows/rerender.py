"""Re-render a run from an edited emotion curve.

The edit is committed as a new "emotion-curve" artifact (tasks/edit_curve.py). It reuses the
narration's pieces: plan, speak and align are the job's committed steps, reused by cache key; the
edit takes the feel stage's place, and render and publish compute.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.narrate import Narration, ends_cancelled, recorded_run, render_and_publish, speak_script
from models.efp.edit import parse_edits
from stores.leases import kept_lease
from stores.store import SYSTEM_ACTOR
from tasks.context import open_store
from tasks.edit_curve import commit_edited_curve, edit_curve, emotion_colors, run_curve
from tasks.job import load_job

# the inspector reaches curve editing through this flow module (web knows flows, not tasks)
__all__ = ["commit_edited_curve", "emotion_colors", "rerender", "run_curve"]


@flow(name="rerender", flow_run_name="rerender-{source_run_id}", validate_parameters=False)
@ends_cancelled
def rerender(source_run_id: str, raw_edits: list[dict[str, Any]], actor: str = SYSTEM_ACTOR) -> Narration:
    """A new run of the source run's job that renders the edited curve."""
    store = open_store()
    source_run = store.run(source_run_id)
    source = run_curve(store, source_run.id)
    n_words = len(json.loads(store.read_bytes(source.sha256))["points"])
    edits = [asdict(e) for e in parse_edits(raw_edits, n_words)]
    job = load_job(store, source_run.job.id)
    run_id = store.start_run(job.job_id, prefect_flow_run_id=flow_run.id, actor=actor)
    store.record_event(
        "curve.edit",
        actor,
        job_id=job.job_id,
        run_id=run_id,
        details={"source_run": source_run.id, "source_curve": source.sha256, "edits": edits},
    )
    with recorded_run(store, run_id, actor), kept_lease(store, job.job_id):
        # 1-3: same job, same inputs: cache hits that put the plan, speech and timings in the new run
        voice = speak_script(run_id, job)
        # 4. Feel, as the person edited it
        felt = edit_curve(run_id, source, edits)
        delivery = render_and_publish(run_id, job, voice, felt.curve)
    return Narration(job_id=job.job_id, run_id=run_id, published=delivery.files)
