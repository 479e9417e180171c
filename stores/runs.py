"""Jobs, their runs, and the runs' steps: the get-or-compute bookkeeping behind every stage.

A step is begun ("running"), then committed ("succeeded", with its outputs, in one transaction) or
failed; a step whose cache key was already committed elsewhere is recorded as a cache hit ("cached").
Reading runs loads each level (job, steps, lineage, artifacts) in one statement for all runs at once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from kernel.crashpoints import crashpoint
from kernel.errors import InputError, StoreError
from kernel.runtime import host_name
from stores.artifacts import IN_CHUNK, ArtifactsMixin
from stores.base import SYSTEM_ACTOR
from stores.convert import RUN_LOADING, STEP_LOADING, artifact_ref, aware, job_record, run_record
from stores.leases import LeaseMixin
from stores.records import ArtifactRef, JobRecord, NewArtifact, RunRecord
from stores.schema import Artifact, AuditEvent, Job, Lineage, Run, Step, utcnow
from stores.status import JobStatus, RunStatus, StepStatus

CANCEL_REQUEST = "run.cancel_request"  # the audit action that asks a running run to stop


@dataclass(frozen=True)
class CacheHit:
    """One cache-hit step, as `record_cache_hit` takes it; `record_cache_hits` writes many at once."""

    run_id: str
    stage: str
    engine: str
    engine_version: str
    params: Mapping[str, Any]
    cache_key: str
    inputs: Mapping[str, ArtifactRef]
    outputs: Mapping[str, ArtifactRef]
    engine_digests: Mapping[str, str] | None = None


def resolve_run_id(session: Session, prefix: str) -> str:
    """The one run id starting with `prefix`; InputError if none or several."""
    matches = session.scalars(select(Run.id).where(Run.id.startswith(prefix))).all()
    if not matches:
        raise InputError(f"no run {prefix!r}; `emoflow runs` lists them")
    if len(matches) > 1:
        raise InputError(f"run id {prefix!r} is ambiguous; give more characters")
    return matches[0]


class RunsMixin(ArtifactsMixin, LeaseMixin):
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
            job = Job(
                id=job_id,
                name=name,
                submitter=submitter,
                script=script,
                description=description,
                portrait_sha256=portrait.sha256,
                options=dict(options),
                status=JobStatus.PENDING if queued else JobStatus.CLAIMED,
            )
            if not queued:  # the caller holds it: if the caller dies, the lease sends it to the queue
                self._take_lease(job)
            session.add(job)
            self._audit(session, "job.submit", submitter, job_id=job_id, details={"name": name})
        return job_id

    def job(self, job_id: str) -> JobRecord:
        with self._session() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise StoreError(f"no job {job_id}")
            return job_record(row)

    def jobs(self, job_ids: Collection[str]) -> dict[str, JobRecord]:
        """The jobs of these ids that exist, by id, a few hundred per query."""
        ordered = sorted(set(job_ids))
        found: dict[str, JobRecord] = {}
        with self._session() as session:
            for start in range(0, len(ordered), IN_CHUNK):
                rows = session.scalars(select(Job).where(Job.id.in_(ordered[start : start + IN_CHUNK])))
                found |= {row.id: job_record(row) for row in rows}
        return found

    def start_run(self, job_id: str, prefect_flow_run_id: str | None, actor: str = SYSTEM_ACTOR) -> str:
        run_id = str(uuid.uuid4())
        with self._session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise StoreError(f"no job {job_id}")
            job.status = JobStatus.RUNNING
            self._take_lease(job)
            session.add(
                Run(
                    id=run_id,
                    job_id=job_id,
                    prefect_flow_run_id=prefect_flow_run_id,
                    status=RunStatus.RUNNING,
                )
            )
            # host and pid let `emoflow store verify` tell a live run from one whose process died
            details = {"host": host_name(), "pid": os.getpid()}
            self._audit(session, "run.start", actor, job_id=job_id, run_id=run_id, details=details)
        return run_id

    def link_flow_runs(self, flow_run_ids: Mapping[str, str]) -> None:
        """Give runs started without one their Prefect flow run (run id -> flow run id), in one
        transaction: the fast path records a run in the store first and in Prefect after."""
        with self._session() as session:
            runs = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(list(flow_run_ids))))}
            for run_id, flow_run_id in flow_run_ids.items():
                run = runs.get(run_id)
                if run is None:
                    raise StoreError(f"no run {run_id}")
                if run.prefect_flow_run_id not in (None, flow_run_id):
                    raise StoreError(f"run {run_id} belongs to Prefect flow run {run.prefect_flow_run_id}")
                run.prefect_flow_run_id = flow_run_id

    def finish_run(self, run_id: str, error: str | None = None, actor: str = SYSTEM_ACTOR) -> None:
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run {run_id}")
            if run.status == RunStatus.ABANDONED:
                # its lease ran out and the job went back to the queue: another worker owns it now
                details = {"error": error, "abandoned": run.error}
                self._audit(
                    session, "run.finish_late", actor, job_id=run.job_id, run_id=run_id, details=details
                )
                return
            # a run that stops with an error after someone asked it to stop was stopped by that request
            cancelled = error is not None and self._cancel_request(session, run_id) is not None
            if cancelled:
                run.status, run.job.status = RunStatus.CANCELLED, JobStatus.CANCELLED
            else:
                run.status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
                run.job.status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
            run.error, run.finished_at = error, utcnow()
            run.job.lease_owner, run.job.lease_expires_at = None, None
            action = "run.cancel" if cancelled else "run.fail" if error else "run.finish"
            details = {"error": error} if error else {}
            self._audit(session, action, actor, job_id=run.job_id, run_id=run_id, details=details)

    def request_cancel(self, run_id: str, actor: str) -> bool:
        """Ask a running run to stop: its stage runner checks between stages (and while a stage reports
        progress) and ends it "cancelled". False when the run is no longer running.

        The request is an audit event, so who asked is on record and no schema change is needed."""
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run {run_id}")
            if run.status != RunStatus.RUNNING:
                return False
            if self._cancel_request(session, run_id) is None:
                self._audit(session, CANCEL_REQUEST, actor, job_id=run.job_id, run_id=run_id)
            return True

    def cancel_requested(self, run_id: str) -> str | None:
        """Who asked the run to stop, or None: one indexed lookup, cheap enough to ask often."""
        with self._session() as session:
            return self._cancel_request(session, run_id)

    def _cancel_request(self, session: Session, run_id: str) -> str | None:
        query = select(AuditEvent.actor).where(
            AuditEvent.run_id == run_id, AuditEvent.action == CANCEL_REQUEST
        )
        return session.scalars(query.limit(1)).first()

    def run(self, run_id: str) -> RunRecord:
        """The run whose id starts with `run_id` (at least a few characters), with its job and steps."""
        with self._session() as session:
            full_id = resolve_run_id(session, run_id)
            return run_record(
                session.scalars(select(Run).where(Run.id == full_id).options(*RUN_LOADING)).one()
            )

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """These runs (full ids), in the order given, in a constant number of statements per few hundred."""
        found: dict[str, RunRecord] = {}
        with self._session() as session:
            for start in range(0, len(run_ids), IN_CHUNK):
                chunk = run_ids[start : start + IN_CHUNK]
                query = select(Run).where(Run.id.in_(chunk)).options(*RUN_LOADING)
                found |= {run.id: run_record(run) for run in session.scalars(query)}
        missing = [run_id for run_id in run_ids if run_id not in found]
        if missing:
            raise StoreError(f"no run {missing[0]}")
        return [found[run_id] for run_id in run_ids]

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest `limit` runs, newest first, in a constant number of statements."""
        with self._session() as session:
            query = select(Run).order_by(Run.started_at.desc(), Run.id).limit(limit).options(*RUN_LOADING)
            return [run_record(run) for run in session.scalars(query)]

    def job_runs(self, job_id: str) -> list[RunRecord]:
        """Every run of one job, oldest first (a job is re-run by retries and curve edits)."""
        with self._session() as session:
            query = (
                select(Run).where(Run.job_id == job_id).order_by(Run.started_at, Run.id).options(*RUN_LOADING)
            )
            return [run_record(run) for run in session.scalars(query)]

    # -- steps ---------------------------------------------------------------------------------

    def cached_outputs(self, cache_key: str) -> dict[str, ArtifactRef] | None:
        """Outputs of the newest committed step with this key whose blobs are all present."""
        with self._session() as session:
            steps = session.scalars(
                select(Step)
                .where(Step.cache_key == cache_key, Step.status == StepStatus.SUCCEEDED)
                .order_by(Step.id.desc())
                .options(STEP_LOADING)
            )
            for step in steps:
                outputs = {
                    link.name: artifact_ref(link.artifact) for link in step.lineage if link.role == "output"
                }
                if outputs and all(self.blobs.exists(ref.sha256) for ref in outputs.values()):
                    return outputs
        return None

    def cached_outputs_many(self, cache_keys: Collection[str]) -> dict[str, dict[str, ArtifactRef]]:
        """`cached_outputs` of many keys in one query per few hundred: key -> outputs, for the keys
        that have them (the newest committed step of the key whose blobs are all present)."""
        ordered = sorted(set(cache_keys))
        found: dict[str, dict[str, ArtifactRef]] = {}
        with self._session() as session:
            for start in range(0, len(ordered), IN_CHUNK):
                query = (
                    select(Step.id, Step.cache_key, Lineage.name, Artifact)
                    .join(Lineage, Lineage.step_id == Step.id)
                    .join(Artifact, Artifact.id == Lineage.artifact_id)
                    .where(
                        Step.cache_key.in_(ordered[start : start + IN_CHUNK]),
                        Step.status == StepStatus.SUCCEEDED,
                        Lineage.role == "output",
                    )
                    .order_by(Step.id.desc(), Lineage.id)
                )
                # key -> step id -> outputs, the newest step first (dicts keep the query's order)
                candidates: dict[str, dict[int, dict[str, ArtifactRef]]] = {}
                for step_id, key, name, artifact in session.execute(query):
                    candidates.setdefault(key, {}).setdefault(step_id, {})[name] = artifact_ref(artifact)
                for key, steps in candidates.items():
                    for outputs in steps.values():
                        if all(self.blobs.exists(ref.sha256) for ref in outputs.values()):
                            found[key] = outputs
                            break
        return found

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
        engine_digests: Mapping[str, str] | None = None,
    ) -> int:
        """Open (or, on a Prefect retry, reopen) the run's step for this stage.

        `engine_digests` names the digests (tables, model files, sources) the engine identity covered.
        """
        with self._session() as session:
            step = session.scalars(
                select(Step).where(
                    Step.run_id == run_id, Step.stage == stage, Step.status != StepStatus.SUCCEEDED
                )
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
                    engine_digests=engine_digests,
                    status=StepStatus.RUNNING,
                    cache_hit=False,
                    attempts=1,
                )
            else:
                step.status, step.error, step.attempts = StepStatus.RUNNING, None, step.attempts + 1
                step.started_at = utcnow()
                if engine_digests is not None:  # this attempt's engine is what the step records
                    step.engine_digests = dict(engine_digests)
            run = session.get(Run, run_id)
            self._audit(
                session,
                "step.start",
                actor,
                job_id=run.job_id if run else None,
                run_id=run_id,
                step_id=step.id,
                # the host: with stages routed to other work pools, one run's steps come from many machines
                details={
                    "stage": stage,
                    "attempt": step.attempts,
                    "cache_key": cache_key,
                    "host": host_name(),
                },
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
                refs[new.name] = artifact_ref(row)
            step.status, step.finished_at = StepStatus.SUCCEEDED, utcnow()
            step.seconds = (step.finished_at - aware(step.started_at)).total_seconds()
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
            step.status, step.error, step.finished_at = StepStatus.FAILED, error, utcnow()
            step.seconds = (step.finished_at - aware(step.started_at)).total_seconds()
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
        engine_digests: Mapping[str, str] | None = None,
    ) -> int:
        """A "cached" step in this run that reuses `outputs` (committed by an earlier step)."""
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
                engine_digests=engine_digests,
                status=StepStatus.CACHED,
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

    def record_cache_hits(self, hits: Sequence[CacheHit], actor: str = SYSTEM_ACTOR) -> list[int]:
        """`record_cache_hit` for each hit, in order, in one transaction: the same steps, lineage and
        audit events, with the artifacts looked up in one query and the rows inserted in bulk (the ORM's
        unit of work cost more than the SQL here)."""
        if not hits:
            return []
        with self._session() as session:
            refs = [ref for hit in hits for ref in (*hit.inputs.values(), *hit.outputs.values())]
            artifacts = self._existing_artifacts(session, refs)
            query = select(Run.id, Run.job_id).where(Run.id.in_({hit.run_id for hit in hits}))
            job_ids = {run_id: job_id for run_id, job_id in session.execute(query)}
            steps = []
            for hit in hits:
                now = utcnow()
                steps.append(
                    {
                        "run_id": hit.run_id,
                        "stage": hit.stage,
                        "engine": hit.engine,
                        "engine_version": hit.engine_version,
                        "params": dict(hit.params),
                        "cache_key": hit.cache_key,
                        "engine_digests": dict(hit.engine_digests or {}),
                        "status": StepStatus.CACHED,
                        "cache_hit": True,
                        "attempts": 0,
                        "started_at": now,
                        "finished_at": now,
                        "seconds": 0.0,
                    }
                )
            inserted = insert(Step).returning(Step.id, sort_by_parameter_order=True)
            step_ids = list(session.scalars(inserted, steps))
            links = [
                {
                    "step_id": step_id,
                    "artifact_id": artifacts[(ref.sha256, ref.kind)].id,
                    "role": role,
                    "name": name,
                }
                for hit, step_id in zip(hits, step_ids, strict=True)
                for role, named in (("input", hit.inputs), ("output", hit.outputs))
                for name, ref in named.items()
            ]
            session.execute(insert(Lineage), links)
            events = [
                {
                    "at": utcnow(),
                    "actor": actor,
                    "action": "step.cache_hit",
                    "job_id": job_ids.get(hit.run_id),
                    "run_id": hit.run_id,
                    "step_id": step_id,
                    "details": {"stage": hit.stage, "cache_key": hit.cache_key},
                }
                for hit, step_id in zip(hits, step_ids, strict=True)
            ]
            session.execute(insert(AuditEvent), events)
            return step_ids

    # -- internals -----------------------------------------------------------------------------

    def _new_step(
        self,
        session: Session,
        *,
        params: Mapping[str, Any],
        inputs: Mapping[str, ArtifactRef],
        engine_digests: Mapping[str, str] | None,
        **columns: Any,
    ) -> Step:
        step = Step(params=dict(params), engine_digests=dict(engine_digests or {}), **columns)
        session.add(step)
        session.flush()  # assigns step.id for the lineage rows
        self._link(session, step, inputs, "input")
        return step

    def _link(self, session: Session, step: Step, refs: Mapping[str, ArtifactRef], role: str) -> None:
        for name, ref in refs.items():
            artifact = self._existing_artifact(session, ref)
            session.add(Lineage(step_id=step.id, artifact_id=artifact.id, role=role, name=name))
