"""Stage 4, feel: the emotion-fluctuation predictor's word-level curve from speech, text and plan."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.settings import get_settings
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan, load_speech
from tasks.context import open_store
from tasks.efp_model import efp_engine
from tasks.stage import retry_transient, run_stage


@task(
    name="feel",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def feel(
    run_id: str, speech: ArtifactRef, word_timings: ArtifactRef, plan: ArtifactRef
) -> dict[str, ArtifactRef]:
    store = open_store()
    # a learned EFP's version carries its model's content hash, so the cache key follows the model
    predictor = efp_engine(store, store.run(run_id).job.options)

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        loaded = load_speech(store, speech, word_timings)
        curve = predictor.predict(loaded, loaded.timings, load_plan(store, plan))
        labels = sorted({p.label for p in curve.points})
        return [
            json_artifact("curve", "emotion-curve", curve.to_dict(), words=len(curve.points), labels=labels)
        ]

    return run_stage(
        store,
        run_id=run_id,
        stage="feel",
        engine=predictor.name,
        engine_version=predictor.version,
        params={},
        inputs={"speech": speech, "word_timings": word_timings, "plan": plan},
        compute=compute,
    )
