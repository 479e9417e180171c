"""Stage 1, plan: the script's inline tags and the free-form description become a per-word plan."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.settings import get_settings
from models.types import ProgressFn
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import json_artifact
from tasks.context import open_store
from tasks.engines import get_engine
from tasks.stage import retry_transient, run_stage

TEXT = "text/plain; charset=utf-8"


@task(
    name="plan",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def plan_emotions(run_id: str) -> dict[str, ArtifactRef]:
    store = open_store()
    job = store.run(run_id).job
    # the request's text becomes content-addressed input, so the plan's cache key covers it
    script = store.put_artifact(NewArtifact("script", "script", TEXT, data=job.script.encode("utf-8")))
    description = store.put_artifact(
        NewArtifact("description", "description", TEXT, data=job.description.encode("utf-8"))
    )
    planner = get_engine("planner", job.options["planner"])

    def compute(_workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        plan = planner.plan(job.script, job.description)
        return [json_artifact("plan", "plan", plan.to_dict(), words=len(plan.words), warnings=plan.warnings)]

    return run_stage(
        store,
        run_id=run_id,
        stage="plan",
        engine=planner.name,
        engine_version=planner.version,
        params={},
        inputs={"script": script, "description": description},
        compute=compute,
    )
