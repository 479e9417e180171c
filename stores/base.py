"""What every part of the store shares: the engine (migrated on open), the blob store, transactions,
and writing an audit row inside the caller's transaction.

The parts (stores/artifacts.py, runs.py, queue.py, audit.py, registry.py) are mixins over `StoreBase`;
stores/store.py composes them into `ArtifactStore`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kernel.errors import StoreError
from stores.blobs import open_blob_store
from stores.db import make_engine, upgrade
from stores.schema import AuditEvent

SYSTEM_ACTOR = "emoflow"


class StoreBase:
    lease_seconds: float = 60.0  # how long a claimed or running job stays held without renewal

    def __init__(self, database_url: str, blob_root: str | Path) -> None:
        self.engine = make_engine(database_url)
        upgrade(self.engine)
        self.blobs = open_blob_store(blob_root)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        store = cls(settings.resolved_database_url, settings.resolved_blob_root)
        store.lease_seconds = float(settings.lease_seconds)
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
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
        # in the caller's transaction: an event is recorded exactly when the change it describes is
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
