"""Row -> record converters: the one place ORM rows become the detached records of stores/records.py.

Each converter only reads what the caller loaded (see `RUN_LOADING` and `STEP_LOADING`), so no
conversion issues lazy loads of its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import selectinload

from stores.records import (
    ArtifactRef,
    AuditRecord,
    JobRecord,
    JobStatus,
    ModelRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
)
from stores.schema import Artifact, AuditEvent, Job, Lineage, RegisteredModel, Run, Step, utcnow

# a step with its lineage and artifacts: one SELECT per level, however many steps are loaded
STEP_LOADING = selectinload(Step.lineage).selectinload(Lineage.artifact)
# a run with its job and steps: a constant number of SELECTs for any number of runs
RUN_LOADING = (
    selectinload(Run.job),
    selectinload(Run.steps).selectinload(Step.lineage).selectinload(Lineage.artifact),
)


def aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def artifact_ref(row: Artifact) -> ArtifactRef:
    return ArtifactRef(
        sha256=row.sha256,
        kind=row.kind,
        media_type=row.media_type,
        size=row.size,
        uri=row.uri,
        metadata=dict(row.meta),
    )


def job_record(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        submitter=row.submitter,
        script=row.script,
        description=row.description,
        portrait_sha256=row.portrait_sha256,
        options=dict(row.options),
        status=JobStatus(row.status),
        submitted_at=row.submitted_at,
        lease_owner=row.lease_owner,
        lease_expires_at=None if row.lease_expires_at is None else aware(row.lease_expires_at),
    )


def step_record(step: Step) -> StepRecord:
    links: dict[str, dict[str, ArtifactRef]] = {"input": {}, "output": {}}
    for link in step.lineage:
        links[link.role][link.name] = artifact_ref(link.artifact)
    return StepRecord(
        id=step.id,
        stage=step.stage,
        engine=step.engine,
        engine_version=step.engine_version,
        params=dict(step.params),
        cache_key=step.cache_key,
        status=StepStatus(step.status),
        cache_hit=step.cache_hit,
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        seconds=step.seconds,
        error=step.error,
        inputs=links["input"],
        outputs=links["output"],
        engine_digests=dict(step.engine_digests or {}),
    )


def run_record(run: Run) -> RunRecord:
    return RunRecord(
        id=run.id,
        job=job_record(run.job),
        prefect_flow_run_id=run.prefect_flow_run_id,
        status=RunStatus(run.status),
        error=run.error,
        started_at=run.started_at,
        finished_at=run.finished_at,
        steps=[step_record(step) for step in run.steps],
    )


def audit_record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        job_id=row.job_id,
        run_id=row.run_id,
        step_id=row.step_id,
        details=dict(row.details),
    )


def model_record(row: RegisteredModel) -> ModelRecord:
    return ModelRecord(
        id=row.id,
        kind=row.kind,
        name=row.name,
        version=row.version,
        artifact=artifact_ref(row.artifact),
        metadata=dict(row.meta),
        actor=row.actor,
        created_at=row.created_at,
    )
