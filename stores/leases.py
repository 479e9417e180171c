"""Job leases: a claimed or running job is held by one worker for a while, and renewed while it works.

    claim / start_run  -> lease_owner = the worker, lease_expires_at = now + lease
    renew_lease        -> pushed forward (only by its owner: a lease taken over is not renewed)
    finish_run         -> released
    reclaim_expired_leases (every drain, before it claims)
                       -> the job back to "pending", its running run "abandoned", the run's running
                          steps "failed"; the next worker reuses every step that was committed

The owner is `host:pid` of the worker process. A lease is as long as the store's `lease_seconds`
(EMOFLOW_LEASE_SECONDS, 60 s by default); workers renew it every third of that. `renewing` is the
thread behind it, and behind the heartbeats of routed renders (stores/heartbeats.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from kernel.errors import StoreError
from kernel.runtime import host_name
from stores.base import SYSTEM_ACTOR, StoreBase
from stores.convert import aware
from stores.schema import Job, Run, Step, utcnow
from stores.status import JobStatus, RunStatus, StepStatus

HELD = (JobStatus.CLAIMED, JobStatus.RUNNING)
log = logging.getLogger(__name__)


def process_owner() -> str:
    """The lease owner name of this process."""
    return f"{host_name()}:{os.getpid()}"


class LeaseMixin(StoreBase):
    def _take_lease(self, job: Job, owner: str | None = None) -> None:
        job.lease_owner = owner or process_owner()
        job.lease_expires_at = utcnow() + timedelta(seconds=self.lease_seconds)

    def renew_lease(self, job_id: str, owner: str | None = None) -> bool:
        """Push the job's lease forward; False when this owner no longer holds it."""
        owner = owner or process_owner()
        expires = utcnow() + timedelta(seconds=self.lease_seconds)
        with self._session() as session:
            result = cast(
                CursorResult[tuple[()]],
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.lease_owner == owner, Job.status.in_(HELD))
                    .values(lease_expires_at=expires)
                ),
            )
            return result.rowcount == 1

    def reclaim_expired_leases(self, actor: str = SYSTEM_ACTOR, now: datetime | None = None) -> list[str]:
        """Send every job whose lease ran out back to the queue; returns their ids."""
        now = now or utcnow()
        with self._session() as session:
            query = select(Job.id).where(Job.status.in_(HELD), Job.lease_expires_at < now)
            expired = session.scalars(query).all()
        reclaimed = []
        for job_id in expired:
            # a compare-and-set per job: of two drains reclaiming at once, one wins; a worker that
            # renewed meanwhile keeps its job
            with self._session() as session:
                job = session.get(Job, job_id)
                if job is None or job.lease_expires_at is None:
                    continue
                owner, expires_at = job.lease_owner, job.lease_expires_at
                result = cast(
                    CursorResult[tuple[()]],
                    session.execute(
                        update(Job)
                        .where(
                            Job.id == job_id,
                            Job.status.in_(HELD),
                            Job.lease_owner == owner,
                            Job.lease_expires_at == expires_at,
                            Job.lease_expires_at < now,
                        )
                        .values(status=JobStatus.PENDING, lease_owner=None, lease_expires_at=None)
                        .execution_options(synchronize_session=False)
                    ),
                )
                if result.rowcount != 1:
                    continue
                abandoned = self._abandon_runs(
                    session, job_id, f"lease of {owner} expired at {aware(expires_at)}"
                )
                details = {"owner": owner, "expired_at": str(aware(expires_at)), "runs": abandoned}
                self._audit(session, "job.lease_expire", actor, job_id=job_id, details=details)
                reclaimed.append(job_id)
        return reclaimed

    def _abandon_runs(self, session: Session, job_id: str, why: str) -> list[str]:
        runs = session.scalars(select(Run).where(Run.job_id == job_id, Run.status == RunStatus.RUNNING)).all()
        for run in runs:
            run.status, run.error, run.finished_at = RunStatus.ABANDONED, why, utcnow()
            for step in session.scalars(
                select(Step).where(Step.run_id == run.id, Step.status == StepStatus.RUNNING)
            ):
                step.status, step.error = StepStatus.FAILED, f"abandoned: {why}"
            self._audit(
                session, "run.abandon", SYSTEM_ACTOR, job_id=job_id, run_id=run.id, details={"why": why}
            )
        return [run.id for run in runs]


@contextmanager
def renewing(every: float, renew: Callable[[], bool], what: str) -> Iterator[threading.Event]:
    """Call `renew` every `every` seconds, in a thread, until the block ends.

    Yields an event that is set, and the renewing stops, once `renew` returns False. A StoreError (a
    database hiccup) is logged and tried again next time, before whatever is renewed runs out.
    """
    stop, lost = threading.Event(), threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                if not renew():
                    lost.set()
                    return
            except StoreError as exc:
                log.warning("could not renew %s: %s", what, exc)

    thread = threading.Thread(target=loop, name=f"renew {what}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join()


@contextmanager
def kept_lease(store: LeaseMixin, job_id: str, owner: str | None = None) -> Iterator[threading.Event]:
    """Renew the job's lease every third of its length until the block ends.

    Yields an event that is set if the lease was lost (the job was reclaimed from under this worker);
    the work goes on, and finish_run then leaves the job to its new owner.
    """
    owner = owner or process_owner()

    def renew() -> bool:
        if store.renew_lease(job_id, owner):
            return True
        log.warning("lease on job %s lost: it was reclaimed after its lease expired", job_id)
        return False

    with renewing(store.lease_seconds / 3, renew, f"the lease on job {job_id}") as lost:
        yield lost
