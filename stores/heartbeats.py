"""Heartbeats: a process shows another one, through the store, that it is still working.

    kept_heartbeat(store, key)   -> beat(key) now, every third of lease_seconds, and once at the end
    heartbeat(key)               -> its owner (`host:pid`), when it last beat and its lease, or None
    forget_heartbeat(key)        -> the waiting side, once the work has ended
    record_lost_worker(key, ...) -> the beat forgotten, the stage's running steps failed, one audit event

The beating side leaves its last beat behind: were it deleted when the work ends, a waiter could not tell
"finished, its flow run about to say so" from "died before the first beat". The waiting side forgets it;
beats a day old are swept when a new key starts beating.

A routed render beats under its Prefect flow run's id (flows/render_stage.py). The narration waiting for
it reads the beat: one older than the lease means the process that rendered is gone, however long Prefect
still shows its flow run "Running". Each beat records the beating worker's own `lease_seconds`
(EMOFLOW_LEASE_SECONDS), and the waiter allows the longer of that and its own: the two sides may run on
pools set up differently.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from kernel.errors import StoreError
from stores.base import SYSTEM_ACTOR, StoreBase
from stores.convert import aware
from stores.leases import process_owner, renewing
from stores.schema import Base, Run, Step, utcnow
from stores.status import StepStatus

__all__ = ["Beat", "HeartbeatMixin", "HeartbeatRow", "kept_heartbeat"]

WORKER_LOST = "step.worker_lost"  # the audit action: a stage's worker stopped beating
SWEEP_AFTER = timedelta(days=1)  # a beat this old is left over from a waiter that died too


class HeartbeatRow(Base):
    """One beating process per key; the row goes when the work ends (or its death is recorded)."""

    __tablename__ = "heartbeats"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_seconds: Mapped[float | None] = mapped_column(Float, default=None)  # the beater's; None before 0006


@dataclass(frozen=True)
class Beat:
    key: str
    owner: str  # host:pid
    started_at: datetime
    beat_at: datetime
    lease_seconds: float | None = None  # the beating worker's lease (it beats every third of it)

    @property
    def host(self) -> str:
        return self.owner.rsplit(":", 1)[0]

    def age(self, now: datetime | None = None) -> float:
        """Seconds since the last beat."""
        return ((now or utcnow()) - self.beat_at).total_seconds()

    def stale_after(self, waiter_lease_seconds: float) -> float:
        """Silence after which the beater counts as dead: the longer of its lease and the waiter's."""
        return max(waiter_lease_seconds, self.lease_seconds or 0.0)


class HeartbeatMixin(StoreBase):
    def beat(self, key: str, owner: str | None = None) -> None:
        """Record that `owner` (this process by default) is alive and working on `key`, and beats
        every third of this store's lease."""
        owner, lease = owner or process_owner(), float(self.lease_seconds)
        with self._session() as session:
            row = session.get(HeartbeatRow, key)
            if row is None:
                session.execute(delete(HeartbeatRow).where(HeartbeatRow.beat_at < utcnow() - SWEEP_AFTER))
                session.add(HeartbeatRow(key=key, owner=owner, lease_seconds=lease))
            else:
                row.owner, row.beat_at, row.lease_seconds = owner, utcnow(), lease

    def heartbeat(self, key: str) -> Beat | None:
        with self._session() as session:
            row = session.get(HeartbeatRow, key)
            if row is None:
                return None
            return Beat(row.key, row.owner, aware(row.started_at), aware(row.beat_at), row.lease_seconds)

    def forget_heartbeat(self, key: str) -> None:
        with self._session() as session:
            session.execute(delete(HeartbeatRow).where(HeartbeatRow.key == key))

    def record_lost_worker(
        self,
        key: str,
        *,
        run_id: str,
        stage: str,
        why: str,
        details: Mapping[str, Any],
        actor: str = SYSTEM_ACTOR,
    ) -> list[int]:
        """The worker beating `key` for `run_id`'s `stage` died: in one transaction, forget its beat,
        fail the stage's running steps with `why` (a new attempt reopens them) and audit it.
        Returns the failed steps' ids."""
        with self._session() as session:
            session.execute(delete(HeartbeatRow).where(HeartbeatRow.key == key))
            steps = session.scalars(
                select(Step).where(
                    Step.run_id == run_id, Step.stage == stage, Step.status == StepStatus.RUNNING
                )
            ).all()
            for step in steps:
                step.status, step.error, step.finished_at = StepStatus.FAILED, why, utcnow()
            run = session.get(Run, run_id)
            self._audit(
                session,
                WORKER_LOST,
                actor,
                job_id=run.job_id if run else None,
                run_id=run_id,
                step_id=steps[0].id if steps else None,
                details={"stage": stage, "why": why, **details},
            )
            return [step.id for step in steps]


@contextmanager
def kept_heartbeat(store: HeartbeatMixin, key: str) -> Iterator[None]:
    """Beat under `key` now and every third of the store's lease until the block ends, and once more
    then: the waiter sees the work's end (its flow run's final state) well before that beat is stale."""
    owner = process_owner()
    store.beat(key, owner)

    def beat() -> bool:
        store.beat(key, owner)
        return True

    try:
        with renewing(store.lease_seconds / 3, beat, f"the heartbeat {key}"):
            yield
    finally:
        with suppress(StoreError):  # the database is down: the work's own error says more
            store.beat(key, owner)
