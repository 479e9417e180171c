"""Stage 3, align: word timings checked against the audio (or found, for engines that give none)."""

from __future__ import annotations

from pathlib import Path

from kernel.jobs import JobOptions
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, load_plan, load_speech
from tasks.context import open_store
from tasks.engines import aligner_for
from tasks.stage import run_stage, stage_task
from tasks.stages import ALIGN, Aligned, Spoken


@stage_task(ALIGN)
def align_words(run_id: str, spoken: Spoken, plan: ArtifactRef, options: JobOptions) -> Aligned:
    store = open_store()
    aligner = aligner_for(options)

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        timings = aligner.align(load_speech(store, spoken.speech, spoken.timings), load_plan(store, plan))
        return [json_artifact("word_timings", "word-timings", timings.to_dict(), words=len(timings.words))]

    return run_stage(
        store,
        ALIGN,
        run_id=run_id,
        engine=aligner,
        params=ALIGN.parameters(options),
        inputs={"speech": spoken.speech, "engine_timings": spoken.timings, "plan": plan},
        compute=compute,
        options=options,
    )
