"""Reading and appending audit events (the table itself refuses UPDATE and DELETE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from stores.base import StoreBase
from stores.convert import audit_record
from stores.records import AuditRecord
from stores.runs import resolve_run_id
from stores.schema import AuditEvent


class AuditMixin(StoreBase):
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
        """Events oldest first; with `run_id` (a prefix is enough), only that run's."""
        with self._session() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if run_id:
                query = query.where(AuditEvent.run_id == resolve_run_id(session, run_id))
            return [audit_record(r) for r in session.scalars(query.limit(limit))]

    def audit_events_by_action(self, action: str, limit: int = 1000) -> list[AuditRecord]:
        """The newest `limit` events of one action, newest first."""
        with self._session() as session:
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc())
            return [audit_record(r) for r in session.scalars(query.limit(limit))]

    def job_audit_events(self, job_id: str, limit: int = 2000) -> list[AuditRecord]:
        """A job's events (submission, every run's steps, edits), oldest first."""
        with self._session() as session:
            query = select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            return [audit_record(r) for r in session.scalars(query.limit(limit))]
