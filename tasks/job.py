"""A submitted job as the pipeline's inputs: script, description and portrait as artifacts, plus options."""

from __future__ import annotations

import hashlib

from kernel.errors import StoreError
from kernel.jobs import JobOptions
from stores.records import ArtifactRef, JobRecord, NewArtifact
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
    return _inputs(job, script, description, store.artifact(job.portrait_sha256, kind="portrait"))


def find_job(store: ArtifactStore, job_id: str) -> JobInputs | None:
    """The job's inputs as `load_job` gives them, found in the store without writing anything; None when
    its texts are not stored yet (then no step can have read them either)."""
    job = store.job(job_id)
    try:
        script, description = (
            store.artifact(hashlib.sha256(text.encode("utf-8")).hexdigest(), kind=kind)
            for kind, text in (("script", job.script), ("description", job.description))
        )
        portrait = store.artifact(job.portrait_sha256, kind="portrait")
    except StoreError:
        return None
    return _inputs(job, script, description, portrait)


def _inputs(
    job: JobRecord, script: ArtifactRef, description: ArtifactRef, portrait: ArtifactRef
) -> JobInputs:
    return JobInputs(
        job_id=job.id,
        name=job.name,
        script=script,
        description=description,
        portrait=portrait,
        options=JobOptions.model_validate(job.options),
    )
