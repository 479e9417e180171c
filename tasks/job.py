"""A submitted job as the pipeline's inputs: script, description and portrait as artifacts, plus options."""

from __future__ import annotations

from kernel.jobs import JobOptions
from stores.records import NewArtifact
from stores.store import ArtifactStore
from tasks.stages import JobInputs

TEXT = "text/plain; charset=utf-8"


def load_job(store: ArtifactStore, job_id: str) -> JobInputs:
    """The job's inputs; its texts become content-addressed artifacts, so the plan's key covers them."""
    job = store.job(job_id)
    script = store.put_artifact(NewArtifact("script", "script", TEXT, data=job.script.encode("utf-8")))
    description = store.put_artifact(
        NewArtifact("description", "description", TEXT, data=job.description.encode("utf-8"))
    )
    return JobInputs(
        job_id=job.id,
        name=job.name,
        script=script,
        description=description,
        portrait=store.artifact(job.portrait_sha256, kind="portrait"),
        options=JobOptions.model_validate(job.options),
    )
