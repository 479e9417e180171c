"""Job leases: held while renewed, reclaimed when they lapse, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from stores.leases import kept_lease, process_owner
from stores.schema import utcnow
from stores.status import JobStatus, RunStatus, StepStatus
from stores.store import ArtifactStore
from stores.verify import verify_store
from tests.stores.helpers import new_job, new_run, portrait


def _queued(store: ArtifactStore) -> str:
    return store.submit_job(
        name="q",
        submitter="ann",
        script="Hi.",
        description="",
        portrait=portrait(store),
        options={},
        queued=True,
    )


def test_claims_and_runs_carry_a_lease_that_finishing_releases(store: ArtifactStore) -> None:
    job_id = _queued(store)
    assert store.job(job_id).lease_owner is None  # queued: nobody holds it
    (claimed,) = store.claim_pending_jobs("drain")
    held = store.job(claimed)
    assert held.lease_owner == process_owner() and held.lease_expires_at is not None
    assert held.lease_expires_at > utcnow() + timedelta(seconds=store.lease_seconds - 5)
    run_id = store.start_run(job_id, prefect_flow_run_id=None)
    assert store.renew_lease(job_id)
    assert not store.renew_lease(job_id, owner="someone-else")
    store.finish_run(run_id)
    done = store.job(job_id)
    assert done.status == JobStatus.SUCCEEDED and done.lease_owner is None and done.lease_expires_at is None
    assert not store.renew_lease(job_id)  # finished jobs hold no lease


def test_an_expired_lease_sends_the_job_back_and_abandons_its_run(store: ArtifactStore) -> None:
    job_id = new_job(store)  # claimed by its caller at submission
    run_id = new_run(store, job_id)
    step_id = store.begin_step(
        run_id=run_id, stage="speak", engine="e", engine_version="1", params={}, cache_key="k", inputs={}
    )
    assert store.reclaim_expired_leases() == []  # still held
    later = utcnow() + timedelta(seconds=store.lease_seconds + 1)
    assert store.reclaim_expired_leases(now=later) == [job_id]
    assert store.job(job_id).status == JobStatus.PENDING
    run = store.run(run_id)
    assert run.status == RunStatus.ABANDONED and "expired" in (run.error or "")
    step = next(s for s in run.steps if s.id == step_id)
    assert step.status == StepStatus.FAILED and step.error is not None and step.error.startswith("abandoned")
    actions = [e.action for e in store.audit_events()]
    assert "job.lease_expire" in actions and "run.abandon" in actions

    # the dead worker's late finish leaves the job to whoever claims it next
    store.finish_run(run_id)
    assert store.run(run_id).status == RunStatus.ABANDONED and store.job(job_id).status == JobStatus.PENDING
    assert "run.finish_late" in [e.action for e in store.audit_events()]
    # store verify still reports the abandoned run, as handled
    (problem,) = verify_store(store).by_kind("abandoned_run")
    assert problem.subject == f"run {run_id}" and problem.repaired
    assert store.claim_pending_jobs("drain") == [job_id]


def test_a_drain_reclaims_lapsed_jobs_before_it_claims(store: ArtifactStore) -> None:
    store.lease_seconds = 0.2
    job_id = new_job(store)
    new_run(store, job_id)
    time.sleep(0.3)
    assert store.claim_pending_jobs("drain") == [job_id]
    assert store.job(job_id).status == JobStatus.CLAIMED


def test_a_kept_lease_is_renewed_while_work_goes_on(store: ArtifactStore) -> None:
    store.lease_seconds = 0.6
    job_id = new_job(store)
    run_id = new_run(store, job_id)
    with kept_lease(store, job_id) as lost:
        time.sleep(1.5)  # two and a half lease lengths
        assert store.reclaim_expired_leases() == []
    assert not lost.is_set()
    store.finish_run(run_id)
    assert store.job(job_id).status == JobStatus.SUCCEEDED


def test_a_lease_taken_over_is_reported_lost(store: ArtifactStore) -> None:
    store.lease_seconds = 0.3
    job_id = new_job(store)
    new_run(store, job_id)
    with kept_lease(store, job_id, owner="worker-a") as lost:
        done = threading.Event()
        # worker-a never held it (the run's lease is this process's): its first renewal fails
        done.wait(0.5)
        assert lost.is_set()
