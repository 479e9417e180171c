"""Stage 3, align: word timings checked against the audio (or found, for engines that give none)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.settings import get_settings
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan, load_speech
from tasks.context import open_store
from tasks.engines import get_engine
from tasks.stage import retry_transient, run_stage


@task(
    name="align",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def align_words(run_id: str, speech: dict[str, ArtifactRef], plan: ArtifactRef) -> dict[str, ArtifactRef]:
    store = open_store()
    aligner = get_engine("aligner", store.run(run_id).job.options["aligner"])

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        timings = aligner.align(
            load_speech(store, speech["speech"], speech["timings"]), load_plan(store, plan)
        )
        return [json_artifact("word_timings", "word-timings", timings.to_dict(), words=len(timings.words))]

    return run_stage(
        store,
        run_id=run_id,
        stage="align",
        engine=aligner.name,
        engine_version=aligner.version,
        params={},
        inputs={"speech": speech["speech"], "engine_timings": speech["timings"], "plan": plan},
        compute=compute,
    )
