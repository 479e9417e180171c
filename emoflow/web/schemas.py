"""Response shapes of the JSON API, so /openapi.json documents what clients get back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ArtifactOut(BaseModel):
    sha256: str
    kind: str
    media_type: str
    size: int
    metadata: dict[str, Any]
    url: str  # /artifacts/{sha256}: the only way to a blob


class JobOut(BaseModel):
    id: str
    name: str
    submitter: str
    status: str
    submitted_at: str
    script: str
    description: str
    portrait: str
    options: dict[str, Any]


class RunSummaryOut(BaseModel):
    id: str
    job_id: str
    job: str
    submitter: str
    status: str
    error: str | None
    started_at: str
    finished_at: str | None
    seconds: float | None
    engines: dict[str, str]  # stage -> engine@version
    computed: list[str]  # stages that ran
    cached: list[str]  # stages reused by cache key
    url: str
    page: str


class StepOut(BaseModel):
    id: int
    stage: str
    engine: str
    engine_version: str
    params: dict[str, Any]
    cache_key: str
    # what the cache key covers besides inputs and params (source, tables, models, packages) -> sha256
    engine_digests: dict[str, str] = Field(default_factory=dict)
    status: str
    cache_hit: bool
    attempts: int
    seconds: float | None
    error: str | None
    inputs: dict[str, ArtifactOut]
    outputs: dict[str, ArtifactOut]


class RunOut(RunSummaryOut):
    job: JobOut  # type: ignore[assignment]  # the full job instead of its name
    prefect_flow_run_id: str | None
    steps: list[StepOut]


class JobStatusOut(JobOut):
    active: bool  # a flow for this job is queued or running in this server
    last_error: str | None
    runs: list[RunSummaryOut]


class SubmittedOut(BaseModel):
    job_id: str
    status: str
    url: str
    page: str


class CurveOut(BaseModel):
    artifact: ArtifactOut
    curve: dict[str, Any]  # EmotionCurve JSON: labels, engine, points


class CurveEditedOut(BaseModel):
    job_id: str
    source_run_id: str
    curve: ArtifactOut  # the edited curve, already committed
    status: str
    url: str


class StageProgressOut(BaseModel):
    stage: str
    status: str  # waiting, running, succeeded, cached or failed
    fraction: float | None  # 0..1; None while a running stage reports no fraction
    seconds: float | None
    error: str | None


class ProgressOut(BaseModel):
    run_id: str
    job_id: str
    status: str
    finished: bool
    error: str | None
    retryable: bool  # failed, cancelled or abandoned: POST /runs/{id}/retry runs it again
    stalled: bool  # running, but its worker's lease has expired: it has probably died
    cancelling: bool  # running, and asked to stop: it stops before its next stage
    done: int  # stages succeeded or reused
    stages: list[StageProgressOut]


class CancelledOut(BaseModel):
    run_id: str
    status: str  # "cancelling": the run stops before its next stage
    url: str


class RetriedOut(BaseModel):
    job_id: str
    source_run_id: str
    run_id: str | None  # the new run, once its flow has started it
    status: str
    url: str
    page: str  # the new run's page, or the job's while the run has not started
