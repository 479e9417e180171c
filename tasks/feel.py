"""Stage 4, feel: the emotion-fluctuation predictor's word-level curve from speech, text and plan."""

from __future__ import annotations

from pathlib import Path

from kernel.jobs import JobOptions
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan, load_speech
from tasks.context import open_store
from tasks.efp_model import efp_engine
from tasks.stage import run_stage, stage_task
from tasks.stages import FEEL, Felt


@stage_task(FEEL)
def feel(
    run_id: str, speech: ArtifactRef, word_timings: ArtifactRef, plan: ArtifactRef, options: JobOptions
) -> Felt:
    store = open_store()
    predictor = efp_engine(store, options)  # a learned EFP's identity carries its model's content hash

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        loaded = load_speech(store, speech, word_timings)
        curve = predictor.predict(loaded, loaded.timings, load_plan(store, plan))
        labels = sorted({p.label for p in curve.points})
        return [
            json_artifact("curve", "emotion-curve", curve.to_dict(), words=len(curve.points), labels=labels)
        ]

    return run_stage(
        store,
        FEEL,
        run_id=run_id,
        engine=predictor,
        params=FEEL.parameters(options),
        inputs={"speech": speech, "word_timings": word_timings, "plan": plan},
        compute=compute,
        options=options,
    )
