"""The job queue: drains claim "pending" jobs, each exactly once, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update

from stores.leases import LeaseMixin, process_owner
from stores.schema import Job, utcnow
from stores.status import JobStatus


class QueueMixin(LeaseMixin):
    def claim_pending_jobs(self, claimer: str, limit: int | None = None) -> list[str]:
        """Oldest pending jobs, each moved to "claimed" by a compare-and-set: overlapping drains never
        get the same job, on SQLite and PostgreSQL alike. Jobs whose worker's lease ran out are put
        back in the queue first, so a drain finishes what a dead worker left."""
        self.reclaim_expired_leases(claimer)
        owner, expires = process_owner(), utcnow() + timedelta(seconds=self.lease_seconds)
        with self._session() as session:
            query = select(Job.id).where(Job.status == JobStatus.PENDING).order_by(Job.submitted_at, Job.id)
            candidates = session.scalars(query.limit(limit)).all()
        claimed = []
        for job_id in candidates:
            # one short transaction per job: a drain that loses the race for one job goes on to the next
            with self._session() as session:
                result = cast(
                    CursorResult[tuple[()]],
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == JobStatus.PENDING)
                        .values(status=JobStatus.CLAIMED, lease_owner=owner, lease_expires_at=expires)
                    ),
                )
                if result.rowcount == 1:
                    self._audit(session, "job.claim", claimer, job_id=job_id)
                    claimed.append(job_id)
        return claimed
