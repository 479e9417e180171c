"""Stage 2, speak: emotional TTS of the plan, with the engine's own word (and phoneme) timings."""

from __future__ import annotations

from pathlib import Path

import soundfile
from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.settings import get_settings
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan
from tasks.context import open_store
from tasks.engines import get_engine
from tasks.stage import retry_transient, run_stage


@task(
    name="speak",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def speak(run_id: str, plan: ArtifactRef) -> dict[str, ArtifactRef]:
    store = open_store()
    engine = get_engine("tts_engine", store.run(run_id).job.options["tts_engine"])

    def compute(workdir: Path, progress: ProgressFn) -> list[NewArtifact]:
        # streamed to disk sentence by sentence: memory stays flat for long scripts
        path = workdir / "speech.wav"
        timings = engine.synthesize_to(load_plan(store, plan), path, progress=progress)
        info = soundfile.info(str(path))
        metadata = {"seconds": round(info.duration, 3), "sample_rate": info.samplerate, "engine": engine.name}
        return [
            NewArtifact("speech", "speech", "audio/wav", path=path, metadata=metadata),
            json_artifact("timings", "engine-timings", timings.to_dict(), words=len(timings.words)),
        ]

    return run_stage(
        store,
        run_id=run_id,
        stage="speak",
        engine=engine.name,
        engine_version=engine.version,
        params={},
        inputs={"plan": plan},
        compute=compute,
    )
