"""Stage 1, plan: the script's inline tags and the free-form description become a per-word plan."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from kernel.jobs import JobOptions
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact, read_text
from tasks.context import open_store
from tasks.engines import planner_for
from tasks.stage import run_stage, stage_task
from tasks.stages import PLAN, Planned


@stage_task(PLAN)
def plan_emotions(run_id: str, script: ArtifactRef, description: ArtifactRef, options: JobOptions) -> Planned:
    store = open_store()
    planner = planner_for(options)

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        plan = planner.plan(read_text(store, script), read_text(store, description))
        return [
            json_artifact(
                "plan",
                "plan",
                plan.to_dict(),
                words=len(plan.words),
                warnings=plan.warnings,
                readings=[asdict(r) for r in plan.readings],
            )
        ]

    return run_stage(
        store,
        PLAN,
        run_id=run_id,
        engine=planner,
        params=PLAN.parameters(options),
        inputs={"script": script, "description": description},
        compute=compute,
        options=options,
    )
