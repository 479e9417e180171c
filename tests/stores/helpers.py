"""Small builders for store tests: a job with a run, steps begun and committed."""

from __future__ import annotations

from collections.abc import Mapping

from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore


def portrait(store: ArtifactStore) -> ArtifactRef:
    return store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"\x89PNG fake"))


def new_job(store: ArtifactStore, name: str = "t") -> str:
    return store.submit_job(
        name=name, submitter="ann", script="Hello.", description="", portrait=portrait(store), options={}
    )


def new_run(store: ArtifactStore, job_id: str | None = None) -> str:
    return store.start_run(job_id or new_job(store), prefect_flow_run_id=None)


def step(
    store: ArtifactStore,
    run_id: str,
    stage: str,
    outputs: Mapping[str, bytes],
    inputs: Mapping[str, ArtifactRef] | None = None,
    key: str | None = None,
    engine_digests: Mapping[str, str] | None = None,
) -> dict[str, ArtifactRef]:
    """Begin and commit one step whose outputs are blobs of kind "blob"."""
    step_id = store.begin_step(
        run_id=run_id,
        stage=stage,
        engine="e",
        engine_version="1",
        params={},
        cache_key=key or f"{run_id}-{stage}",
        inputs=dict(inputs or {}),
        engine_digests=engine_digests,
    )
    return store.commit_step(
        step_id,
        [NewArtifact(name, "blob", "application/octet-stream", data=data) for name, data in outputs.items()],
    )
