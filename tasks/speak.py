"""Stage 2, speak: emotional TTS of the plan, with the engine's own word (and phoneme) timings."""

from __future__ import annotations

from pathlib import Path

import soundfile

from kernel.jobs import JobOptions
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan
from tasks.context import open_store
from tasks.engines import tts_for
from tasks.stage import run_stage, stage_task
from tasks.stages import SPEAK, Spoken


@stage_task(SPEAK)
def speak(run_id: str, plan: ArtifactRef, options: JobOptions) -> Spoken:
    store = open_store()
    engine = tts_for(options)

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
        SPEAK,
        run_id=run_id,
        engine=engine,
        params=SPEAK.parameters(options),
        inputs={"plan": plan},
        compute=compute,
        options=options,
    )
