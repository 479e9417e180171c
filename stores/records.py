"""Read-only views of store rows, detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stores.status import JobStatus, RunStatus, StepStatus

__all__ = [
    "ArtifactRef",
    "AuditRecord",
    "JobRecord",
    "JobStatus",
    "LineageStep",
    "ModelRecord",
    "NewArtifact",
    "RunRecord",
    "RunStatus",
    "StepRecord",
    "StepStatus",
]


@dataclass(frozen=True)
class ArtifactRef:
    sha256: str
    kind: str
    media_type: str
    size: int
    uri: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class NewArtifact:
    """An output a step wants committed: either bytes in memory or a finished file on disk."""

    name: str
    kind: str
    media_type: str
    data: bytes | None = None
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    id: int
    stage: str
    engine: str
    engine_version: str
    params: dict[str, Any]
    cache_key: str
    status: StepStatus
    cache_hit: bool
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    error: str | None
    inputs: dict[str, ArtifactRef]
    outputs: dict[str, ArtifactRef]
    # which table/model/source digests the engine identity covered (last: keyword construction still works)
    engine_digests: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    submitter: str
    script: str
    description: str
    portrait_sha256: str
    options: dict[str, Any]
    status: JobStatus
    submitted_at: datetime
    lease_owner: str | None = None  # who holds a claimed or running job (stores/leases.py)
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    job: JobRecord
    prefect_flow_run_id: str | None
    status: RunStatus
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    steps: list[StepRecord]

    def plan_report(self) -> dict[str, Any] | None:
        """The plan step's warnings and readings, from its artifact's metadata; None without a plan.

        `readings` is None for runs planned before readings were recorded (their metadata lacks the key).
        """
        step = next((s for s in self.steps if s.stage == "plan" and "plan" in s.outputs), None)
        if step is None:
            return None
        metadata = step.outputs["plan"].metadata
        readings = metadata.get("readings")
        return {
            "warnings": [str(w) for w in metadata.get("warnings") or []],
            "readings": None if readings is None else [dict(r) for r in readings],
        }


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    job_id: str | None
    run_id: str | None
    step_id: int | None
    details: dict[str, Any]


@dataclass(frozen=True)
class LineageStep:
    """A step an artifact flowed through: the run it belongs to, the step, and the artifact's name there."""

    run_id: str
    step: StepRecord
    name: str  # the input or output name, e.g. "video" for publish's video


@dataclass(frozen=True)
class ModelRecord:
    """One registration of a trained model: `name` (within `kind`) points at a stored artifact."""

    id: int
    kind: str  # e.g. "efp", "renderer"
    name: str
    version: int  # 1, 2, ... per (kind, name); the highest is what the name means now
    artifact: ArtifactRef
    metadata: dict[str, Any]
    actor: str
    created_at: datetime

    @property
    def sha256(self) -> str:
        return self.artifact.sha256
