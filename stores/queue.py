"""The job queue: drains claim "pending" jobs, each exactly once, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import cast

from sqlalchemy import CursorResult, select, update

from stores.base import StoreBase
from stores.schema import Job
from stores.status import JobStatus


class QueueMixin(StoreBase):
    def claim_pending_jobs(self, claimer: str, limit: int | None = None) -> list[str]:
        """Oldest pending jobs, each moved to "claimed" by a compare-and-set: overlapping drains never
        get the same job, on SQLite and PostgreSQL alike."""
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
                        .values(status=JobStatus.CLAIMED)
                    ),
                )
                if result.rowcount == 1:
                    self._audit(session, "job.claim", claimer, job_id=job_id)
                    claimed.append(job_id)
        return claimed
