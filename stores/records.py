"""Read-only views of store rows, detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


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
    status: str
    cache_hit: bool
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    error: str | None
    inputs: dict[str, ArtifactRef]
    outputs: dict[str, ArtifactRef]


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    submitter: str
    script: str
    description: str
    portrait_sha256: str
    options: dict[str, Any]
    status: str
    submitted_at: datetime


@dataclass(frozen=True)
class RunRecord:
    id: str
    job: JobRecord
    prefect_flow_run_id: str | None
    status: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    steps: list[StepRecord]


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
