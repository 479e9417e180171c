"""The job queue: drains claim "pending" jobs, each exactly once, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update

from stores.leases import LeaseMixin, process_owner
from stores.schema import Job, utcnow
from stores.status import JobStatus


class QueueMixin(LeaseMixin):
    def claim_pending_jobs(self, claimer: str, limit: int | None = None) -> list[str]:
        """Oldest pending jobs, each moved to "claimed" by a compare-and-set: overlapping drains never
        get the same job, on SQLite and PostgreSQL alike. Jobs whose worker's lease ran out are put
        back in the queue first, so a drain finishes what a dead worker left. A drain that loses every
        candidate to another looks again: an empty answer means the queue was empty, not that another
        drain was faster (two drains asking for one job each both see the same oldest one)."""
        self.reclaim_expired_leases(claimer)
        owner, expires = process_owner(), utcnow() + timedelta(seconds=self.lease_seconds)
        claimed: list[str] = []
        while limit is None or len(claimed) < limit:
            wanted = None if limit is None else limit - len(claimed)
            candidates = self._pending_job_ids(wanted)
            if not candidates:
                break
            for job_id in candidates:
                # one short transaction per job: a drain that loses the race for one job goes on to the next
                if self._claim(job_id, claimer, owner, expires):
                    claimed.append(job_id)
            if limit is None:
                break  # every job pending when asked was tried; later submissions wait for the next call
        return claimed

    def _pending_job_ids(self, limit: int | None) -> list[str]:
        with self._session() as session:
            query = select(Job.id).where(Job.status == JobStatus.PENDING).order_by(Job.submitted_at, Job.id)
            return list(session.scalars(query.limit(limit)).all())

    def _claim(self, job_id: str, claimer: str, owner: str, expires: datetime) -> bool:
        with self._session() as session:
            result = cast(
                CursorResult[tuple[()]],
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.PENDING)
                    .values(status=JobStatus.CLAIMED, lease_owner=owner, lease_expires_at=expires)
                ),
            )
            if result.rowcount != 1:
                return False
            self._audit(session, "job.claim", claimer, job_id=job_id)
            return True
