"""Registered models: names for trained model artifacts (EFP models, renderer weights, ...).

A name is scoped by `kind` and versioned: registering under a taken name adds version n+1, and the
name then means that newest version. Every registration is also an audit event ("model.register").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, selectinload

from kernel.errors import InputError, StoreError
from stores.artifacts import ArtifactsMixin
from stores.base import SYSTEM_ACTOR
from stores.convert import model_record
from stores.records import ArtifactRef, ModelRecord
from stores.schema import RegisteredModel

# concurrent registrations under one name race for the next version; the loser retries (on
# PostgreSQL an advisory lock per name serialises them first, so a retry is rare everywhere)
_VERSION_ATTEMPTS = 5


class RegistryMixin(ArtifactsMixin):
    def register_model(
        self,
        kind: str,
        name: str,
        artifact: ArtifactRef,
        *,
        metadata: Mapping[str, Any] | None = None,
        actor: str = SYSTEM_ACTOR,
    ) -> ModelRecord:
        """Register the stored `artifact` as the newest version of `name` among models of `kind`."""
        if not kind.strip() or not name.strip():
            raise InputError("a registered model needs a kind and a non-empty name")
        with self._session() as session:
            target = self._existing_artifact(session, artifact)
            _lock_name(session, kind, name)
            for _ in range(_VERSION_ATTEMPTS):
                newest = session.scalar(
                    select(func.max(RegisteredModel.version)).where(
                        RegisteredModel.kind == kind, RegisteredModel.name == name
                    )
                )
                row = RegisteredModel(
                    kind=kind,
                    name=name,
                    version=(newest or 0) + 1,
                    sha256=target.sha256,
                    artifact=target,
                    meta=dict(metadata or {}),
                    actor=actor,
                )
                try:
                    with session.begin_nested():
                        session.add(row)
                    break
                except SAIntegrityError:
                    continue
            else:
                raise StoreError(f"could not register {kind} model {name!r}: too many concurrent versions")
            details = {"kind": kind, "name": name, "version": row.version, "sha256": target.sha256}
            self._audit(session, "model.register", actor, details=details)
            return model_record(row)

    def find_model(self, kind: str, name: str) -> ModelRecord | None:
        """The newest registration of `name` among models of `kind`, or None."""
        query = (
            select(RegisteredModel)
            .where(RegisteredModel.kind == kind, RegisteredModel.name == name)
            .order_by(RegisteredModel.version.desc(), RegisteredModel.id.desc())
            .limit(1)
            .options(selectinload(RegisteredModel.artifact))
        )
        with self._session() as session:
            row = session.scalars(query).first()
            return model_record(row) if row is not None else None

    def list_models(self, kind: str | None = None) -> list[ModelRecord]:
        """Every registration (all versions), newest first; only those of `kind` if given."""
        query = (
            select(RegisteredModel)
            .order_by(RegisteredModel.id.desc())
            .options(selectinload(RegisteredModel.artifact))
        )
        if kind:
            query = query.where(RegisteredModel.kind == kind)
        with self._session() as session:
            return [model_record(row) for row in session.scalars(query)]


def _lock_name(session: Session, kind: str, name: str) -> None:
    """On PostgreSQL, hold a transaction-scoped advisory lock for (kind, name).

    SQLite needs none: the first failed insert takes the database's write lock, so the retry reads
    the newest version.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"model\0{kind}\0{name}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)  # advisory lock keys are signed 64-bit
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
