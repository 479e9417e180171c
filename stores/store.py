"""The artifact store API: what tasks, the CLI and (later) the inspector call. No Prefect here."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from kernel.crashpoints import crashpoint
from kernel.errors import InputError, StoreError
from stores.blobs import open_blob_store
from stores.db import make_engine, upgrade
from stores.records import ArtifactRef, AuditRecord, JobRecord, NewArtifact, RunRecord, StepRecord
from stores.schema import Artifact, AuditEvent, Job, Lineage, Run, Step, utcnow

SYSTEM_ACTOR = "emoflow"


class ArtifactStore:
    def __init__(self, database_url: str, blob_root: str | Path) -> None:
        self.engine = make_engine(database_url)
        upgrade(self.engine)
        self.blobs = open_blob_store(blob_root)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Any) -> ArtifactStore:
        return cls(settings.resolved_database_url, settings.resolved_blob_root)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise StoreError(f"database error: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- artifacts ---------------------------------------------------------------------------

    def put_artifact(self, new: NewArtifact) -> ArtifactRef:
        """Write the blob (atomically) and its row; the same content and kind is stored once."""
        sha256 = self._write_blob(new)
        crashpoint("blob.before_commit")  # test hook: a blob in place without its row
        with self._session() as session:
            return _ref(self._artifact_row(session, sha256, new))

    def artifact(self, sha256: str, kind: str | None = None) -> ArtifactRef:
        with self._session() as session:
            query = select(Artifact).where(Artifact.sha256 == sha256)
            if kind:
                query = query.where(Artifact.kind == kind)
            row = session.scalars(query.order_by(Artifact.id)).first()
            if row is None:
                raise StoreError(f"no artifact with sha256 {sha256}")
            return _ref(row)

    def find_artifacts(self, prefix: str) -> list[ArtifactRef]:
        if len(prefix) < 6:
            raise InputError("give at least 6 characters of an artifact's sha256")
        with self._session() as session:
            rows = session.scalars(select(Artifact).where(Artifact.sha256.startswith(prefix.lower())))
            return [_ref(r) for r in rows]

    def read_bytes(self, sha256: str) -> bytes:
        return self.blobs.read_bytes(sha256)

    def blob_path(self, sha256: str) -> Path:
        return self.blobs.verified_path(sha256)

    def export(
        self, sha256: str, destination: Path, actor: str = SYSTEM_ACTOR, run_id: str | None = None
    ) -> Path:
        """Copy a verified blob to `destination` atomically (no half-written file is ever visible)."""
        destination = destination.expanduser().resolve()
        source = self.blob_path(sha256)
        temp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, temp)
            os.replace(temp, destination)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise InputError(f"cannot write {destination}: {exc.strerror or exc}") from exc
        self.record_event(
            "artifact.export", actor, run_id=run_id, details={"sha256": sha256, "path": str(destination)}
        )
        return destination

    # -- jobs and runs -------------------------------------------------------------------------

    def submit_job(
        self,
        *,
        name: str,
        submitter: str,
        script: str,
        description: str,
        portrait: ArtifactRef,
        options: Mapping[str, Any],
        queued: bool = False,
    ) -> str:
        """Record a job: `queued` ones wait as "pending" for a drain, others are claimed by the caller."""
        job_id = str(uuid.uuid4())
        with self._session() as session:
            session.add(
                Job(
                    id=job_id,
                    name=name,
                    submitter=submitter,
                    script=script,
                    description=description,
                    portrait_sha256=portrait.sha256,
                    options=dict(options),
                    status="pending" if queued else "claimed",
                )
            )
            self._audit(session, "job.submit", submitter, job_id=job_id, details={"name": name})
        return job_id

    def job(self, job_id: str) -> JobRecord:
        with self._session() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise StoreError(f"no job {job_id}")
            return _job(row)

    def claim_pending_jobs(self, claimer: str, limit: int | None = None) -> list[str]:
        """Oldest pending jobs, each moved to "claimed" by a compare-and-set: overlapping drains never
        get the same job, on SQLite and PostgreSQL alike."""
        with self._session() as session:
            query = select(Job.id).where(Job.status == "pending").order_by(Job.submitted_at, Job.id)
            candidates = session.scalars(query.limit(limit)).all()
        claimed = []
        for job_id in candidates:
            with self._session() as session:
                result = session.execute(
                    update(Job).where(Job.id == job_id, Job.status == "pending").values(status="claimed")
                )
                if result.rowcount == 1:
                    self._audit(session, "job.claim", claimer, job_id=job_id)
                    claimed.append(job_id)
        return claimed

    def start_run(self, job_id: str, prefect_flow_run_id: str | None, actor: str = SYSTEM_ACTOR) -> str:
        run_id = str(uuid.uuid4())
        with self._session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise StoreError(f"no job {job_id}")
            job.status = "running"
            session.add(Run(id=run_id, job_id=job_id, prefect_flow_run_id=prefect_flow_run_id))
            # host and pid let `emoflow store verify` tell a live run from one whose process died
            details = {"host": socket.gethostname(), "pid": os.getpid()}
            self._audit(session, "run.start", actor, job_id=job_id, run_id=run_id, details=details)
        return run_id

    def finish_run(self, run_id: str, error: str | None = None, actor: str = SYSTEM_ACTOR) -> None:
        status = "failed" if error else "succeeded"
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run {run_id}")
            run.status, run.error, run.finished_at = status, error, utcnow()
            run.job.status = status
            action = "run.fail" if error else "run.finish"
            details = {"error": error} if error else {}
            self._audit(session, action, actor, job_id=run.job_id, run_id=run_id, details=details)

    def run(self, run_id: str) -> RunRecord:
        with self._session() as session:
            matches = session.scalars(select(Run.id).where(Run.id.startswith(run_id))).all()
            if not matches:
                raise InputError(f"no run {run_id!r}; `emoflow runs` lists them")
            if len(matches) > 1:
                raise InputError(f"run id {run_id!r} is ambiguous; give more characters")
            return _run(session, self._load_run(session, matches[0]))

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        with self._session() as session:
            ids = session.scalars(select(Run.id).order_by(Run.started_at.desc()).limit(limit)).all()
            return [_run(session, self._load_run(session, run_id)) for run_id in ids]

    def _load_run(self, session: Session, run_id: str) -> Run:
        query = (
            select(Run)
            .where(Run.id == run_id)
            .options(
                selectinload(Run.job),
                selectinload(Run.steps).selectinload(Step.lineage).selectinload(Lineage.artifact),
            )
        )
        return session.scalars(query).one()

    # -- steps ---------------------------------------------------------------------------------

    def cached_outputs(self, cache_key: str) -> dict[str, ArtifactRef] | None:
        """Outputs of the newest committed step with this key whose blobs are all present."""
        with self._session() as session:
            steps = session.scalars(
                select(Step)
                .where(Step.cache_key == cache_key, Step.status == "succeeded")
                .order_by(Step.id.desc())
                .options(selectinload(Step.lineage).selectinload(Lineage.artifact))
            )
            for step in steps:
                outputs = {link.name: _ref(link.artifact) for link in step.lineage if link.role == "output"}
                if outputs and all(self.blobs.exists(ref.sha256) for ref in outputs.values()):
                    return outputs
        return None

    def begin_step(
        self,
        *,
        run_id: str,
        stage: str,
        engine: str,
        engine_version: str,
        params: Mapping[str, Any],
        cache_key: str,
        inputs: Mapping[str, ArtifactRef],
        actor: str = SYSTEM_ACTOR,
    ) -> int:
        """Open (or, on a Prefect retry, reopen) the run's step for this stage."""
        with self._session() as session:
            step = session.scalars(
                select(Step).where(Step.run_id == run_id, Step.stage == stage, Step.status != "succeeded")
            ).first()
            if step is None:
                step = self._new_step(
                    session,
                    run_id=run_id,
                    stage=stage,
                    engine=engine,
                    engine_version=engine_version,
                    params=params,
                    cache_key=cache_key,
                    inputs=inputs,
                    status="running",
                    cache_hit=False,
                    attempts=1,
                )
            else:
                step.status, step.error, step.attempts = "running", None, step.attempts + 1
                step.started_at = utcnow()
            run = session.get(Run, run_id)
            self._audit(
                session,
                "step.start",
                actor,
                job_id=run.job_id if run else None,
                run_id=run_id,
                step_id=step.id,
                details={"stage": stage, "attempt": step.attempts, "cache_key": cache_key},
            )
            return step.id

    def commit_step(
        self, step_id: int, outputs: Sequence[NewArtifact], actor: str = SYSTEM_ACTOR
    ) -> dict[str, ArtifactRef]:
        """Blobs first, then one transaction: the step is never 'succeeded' without its outputs."""
        shas = [self._write_blob(new) for new in outputs]
        crashpoint("blob.before_commit")  # test hook: blobs in place, step and rows not committed
        with self._session() as session:
            step = session.get(Step, step_id)
            if step is None:
                raise StoreError(f"no step {step_id}")
            refs: dict[str, ArtifactRef] = {}
            for new, sha256 in zip(outputs, shas, strict=True):
                row = self._artifact_row(session, sha256, new)
                session.add(Lineage(step_id=step.id, artifact_id=row.id, role="output", name=new.name))
                refs[new.name] = _ref(row)
            step.status, step.finished_at = "succeeded", utcnow()
            step.seconds = (step.finished_at - _aware(step.started_at)).total_seconds()
            self._audit(
                session,
                "step.finish",
                actor,
                job_id=step.run.job_id,
                run_id=step.run_id,
                step_id=step.id,
                details={"stage": step.stage, "outputs": {k: v.sha256 for k, v in refs.items()}},
            )
            return refs

    def fail_step(self, step_id: int, error: str, actor: str = SYSTEM_ACTOR) -> None:
        with self._session() as session:
            step = session.get(Step, step_id)
            if step is None:
                raise StoreError(f"no step {step_id}")
            step.status, step.error, step.finished_at = "failed", error, utcnow()
            step.seconds = (step.finished_at - _aware(step.started_at)).total_seconds()
            self._audit(
                session,
                "step.fail",
                actor,
                job_id=step.run.job_id,
                run_id=step.run_id,
                step_id=step.id,
                details={"stage": step.stage, "error": error},
            )

    def record_cache_hit(
        self,
        *,
        run_id: str,
        stage: str,
        engine: str,
        engine_version: str,
        params: Mapping[str, Any],
        cache_key: str,
        inputs: Mapping[str, ArtifactRef],
        outputs: Mapping[str, ArtifactRef],
        actor: str = SYSTEM_ACTOR,
    ) -> int:
        with self._session() as session:
            now = utcnow()
            step = self._new_step(
                session,
                run_id=run_id,
                stage=stage,
                engine=engine,
                engine_version=engine_version,
                params=params,
                cache_key=cache_key,
                inputs=inputs,
                status="cached",
                cache_hit=True,
                attempts=0,
                started_at=now,
                finished_at=now,
                seconds=0.0,
            )
            self._link(session, step, outputs, "output")
            run = session.get(Run, run_id)
            self._audit(
                session,
                "step.cache_hit",
                actor,
                job_id=run.job_id if run else None,
                run_id=run_id,
                step_id=step.id,
                details={"stage": stage, "cache_key": cache_key},
            )
            return step.id

    # -- audit ---------------------------------------------------------------------------------

    def record_event(
        self,
        action: str,
        actor: str,
        *,
        job_id: str | None = None,
        run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self._session() as session:
            self._audit(session, action, actor, job_id=job_id, run_id=run_id, details=details)

    def audit_events(self, run_id: str | None = None, limit: int = 500) -> list[AuditRecord]:
        with self._session() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if run_id:
                query = query.where(AuditEvent.run_id == self.run(run_id).id)
            rows = session.scalars(query.limit(limit))
            return [_audit_record(r) for r in rows]

    def audit_events_by_action(self, action: str, limit: int = 1000) -> list[AuditRecord]:
        """The newest `limit` events of one action, newest first (e.g. "efp.train" to find models by name)."""
        with self._session() as session:
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc())
            return [_audit_record(r) for r in session.scalars(query.limit(limit))]

    # -- internals -----------------------------------------------------------------------------

    def _write_blob(self, new: NewArtifact) -> str:
        if (new.data is None) == (new.path is None):
            raise StoreError(f"artifact {new.name!r} needs exactly one of data or path")
        return self.blobs.put_bytes(new.data) if new.data is not None else self.blobs.put_file(new.path)

    def _artifact_row(self, session: Session, sha256: str, new: NewArtifact) -> Artifact:
        query = select(Artifact).where(Artifact.sha256 == sha256, Artifact.kind == new.kind)
        row = session.scalars(query).first()
        if row is not None:
            return row
        row = Artifact(
            sha256=sha256,
            kind=new.kind,
            media_type=new.media_type,
            size=self.blobs.size(sha256),
            uri=self.blobs.uri_for(sha256),
            meta=dict(new.metadata),
        )
        try:
            with session.begin_nested():  # another writer may insert the same content meanwhile
                session.add(row)
        except SAIntegrityError:
            row = session.scalars(query).one()
        return row

    def _new_step(
        self,
        session: Session,
        *,
        params: Mapping[str, Any],
        inputs: Mapping[str, ArtifactRef],
        **columns: Any,
    ) -> Step:
        step = Step(params=dict(params), **columns)
        session.add(step)
        session.flush()  # assigns step.id for the lineage rows
        self._link(session, step, inputs, "input")
        return step

    def _link(self, session: Session, step: Step, refs: Mapping[str, ArtifactRef], role: str) -> None:
        for name, ref in refs.items():
            artifact = session.scalars(
                select(Artifact).where(Artifact.sha256 == ref.sha256, Artifact.kind == ref.kind)
            ).one()
            session.add(Lineage(step_id=step.id, artifact_id=artifact.id, role=role, name=name))

    def _audit(
        self,
        session: Session,
        action: str,
        actor: str,
        *,
        job_id: str | None = None,
        run_id: str | None = None,
        step_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        session.add(
            AuditEvent(
                actor=actor,
                action=action,
                job_id=job_id,
                run_id=run_id,
                step_id=step_id,
                details=dict(details or {}),
            )
        )

    # -- added for the inspector ---------------------------------------------------------------

    def job_runs(self, job_id: str) -> list[RunRecord]:
        """Every run of one job, oldest first (a job is re-run by retries and curve edits)."""
        with self._session() as session:
            ids = session.scalars(
                select(Run.id).where(Run.job_id == job_id).order_by(Run.started_at, Run.id)
            ).all()
            return [_run(session, self._load_run(session, run_id)) for run_id in ids]

    def job_audit_events(self, job_id: str, limit: int = 2000) -> list[AuditRecord]:
        """A job's events (submission, every run's steps, edits), oldest first."""
        with self._session() as session:
            query = select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            return [_audit_record(r) for r in session.scalars(query.limit(limit))]


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def _audit_record(row: AuditEvent) -> AuditRecord:
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


def _ref(row: Artifact) -> ArtifactRef:
    return ArtifactRef(
        sha256=row.sha256,
        kind=row.kind,
        media_type=row.media_type,
        size=row.size,
        uri=row.uri,
        metadata=dict(row.meta),
    )


def _job(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        name=row.name,
        submitter=row.submitter,
        script=row.script,
        description=row.description,
        portrait_sha256=row.portrait_sha256,
        options=dict(row.options),
        status=row.status,
        submitted_at=row.submitted_at,
    )


def _run(session: Session, run: Run) -> RunRecord:
    steps = []
    for step in run.steps:
        links = {"input": {}, "output": {}}  # type: dict[str, dict[str, ArtifactRef]]
        for link in step.lineage:
            links[link.role][link.name] = _ref(link.artifact)
        steps.append(
            StepRecord(
                id=step.id,
                stage=step.stage,
                engine=step.engine,
                engine_version=step.engine_version,
                params=dict(step.params),
                cache_key=step.cache_key,
                status=step.status,
                cache_hit=step.cache_hit,
                attempts=step.attempts,
                started_at=step.started_at,
                finished_at=step.finished_at,
                seconds=step.seconds,
                error=step.error,
                inputs=links["input"],
                outputs=links["output"],
            )
        )
    return RunRecord(
        id=run.id,
        job=_job(run.job),
        prefect_flow_run_id=run.prefect_flow_run_id,
        status=run.status,
        error=run.error,
        started_at=run.started_at,
        finished_at=run.finished_at,
        steps=steps,
    )
