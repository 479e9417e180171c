"""Artifacts: content-addressed blobs with one row per (sha256, kind), exports, and lineage queries
(which step produced an artifact, which steps consumed it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from kernel.crashpoints import crashpoint
from kernel.errors import InputError, StoreError
from stores.base import SYSTEM_ACTOR, StoreBase
from stores.convert import STEP_LOADING, artifact_ref, step_record
from stores.records import ArtifactRef, LineageStep, NewArtifact
from stores.schema import Artifact, Lineage, Step
from stores.status import StepStatus

# values bound in one IN (...): well under SQLite's and PostgreSQL's limits on parameters
IN_CHUNK = 500


class ArtifactsMixin(StoreBase):
    def put_artifact(self, new: NewArtifact) -> ArtifactRef:
        """Write the blob (atomically) and its row; the same content and kind is stored once."""
        sha256 = self._write_blob(new)
        crashpoint("blob.before_commit")  # test hook: a blob in place without its row
        with self._session() as session:
            return artifact_ref(self._artifact_row(session, sha256, new))

    def artifact(self, sha256: str, kind: str | None = None) -> ArtifactRef:
        with self._session() as session:
            query = select(Artifact).where(Artifact.sha256 == sha256)
            if kind:
                query = query.where(Artifact.kind == kind)
            row = session.scalars(query.order_by(Artifact.id)).first()
            if row is None:
                raise StoreError(f"no artifact with sha256 {sha256}")
            return artifact_ref(row)

    def find_artifacts(self, prefix: str) -> list[ArtifactRef]:
        if len(prefix) < 6:
            raise InputError("give at least 6 characters of an artifact's sha256")
        with self._session() as session:
            rows = session.scalars(select(Artifact).where(Artifact.sha256.startswith(prefix.lower())))
            return [artifact_ref(r) for r in rows]

    def read_bytes(self, sha256: str) -> bytes:
        return self.blobs.read_bytes(sha256)

    def blob_path(self, sha256: str) -> Path:
        return self.blobs.verified_path(sha256)

    def export(
        self, sha256: str, destination: Path, actor: str = SYSTEM_ACTOR, run_id: str | None = None
    ) -> Path:
        """Copy a verified blob to `destination` atomically (no half-written file is ever visible)."""
        destination = self._copy_out(sha256, destination)
        with self._session() as session:
            details = {"sha256": sha256, "path": str(destination)}
            self._audit(session, "artifact.export", actor, run_id=run_id, details=details)
        return destination

    def export_many(
        self, files: Sequence[tuple[str, Path]], actor: str = SYSTEM_ACTOR, run_id: str | None = None
    ) -> list[Path]:
        """`export` of each (sha256, destination) in order, their audit events in one transaction.

        A copy that fails raises after the events of the copies before it are recorded, as one `export`
        call after another would leave them.
        """
        done: list[tuple[str, Path]] = []
        try:
            for sha256, destination in files:
                done.append((sha256, self._copy_out(sha256, destination)))
        finally:
            if done:
                with self._session() as session:
                    for sha256, path in done:
                        details = {"sha256": sha256, "path": str(path)}
                        self._audit(session, "artifact.export", actor, run_id=run_id, details=details)
        return [path for _, path in done]

    def artifacts_by_hash(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ArtifactRef]:
        """The artifacts of these (sha256, kind) pairs that exist, in one query; missing ones are absent."""
        pairs = set(wanted)
        found: dict[tuple[str, str], ArtifactRef] = {}
        with self._session() as session:
            for row in self._artifact_rows(session, {sha256 for sha256, _ in pairs}):
                if (row.sha256, row.kind) in pairs:
                    found[(row.sha256, row.kind)] = artifact_ref(row)
        return found

    # -- lineage -------------------------------------------------------------------------------

    def producer_of(self, sha256: str, kind: str | None = None) -> LineageStep | None:
        """The committed ("succeeded") step that output this artifact, newest if several; None if none.

        Cache hits are not producers: they reuse the outputs of the step this returns.
        """
        query = (
            select(Step, Lineage.name)
            .join(Lineage, Lineage.step_id == Step.id)
            .join(Artifact, Artifact.id == Lineage.artifact_id)
            .where(Artifact.sha256 == sha256, Lineage.role == "output", Step.status == StepStatus.SUCCEEDED)
            .order_by(Step.finished_at.desc(), Step.id.desc())
            .limit(1)
            .options(STEP_LOADING)
        )
        if kind:
            query = query.where(Artifact.kind == kind)
        with self._session() as session:
            found = session.execute(query).first()
            if found is None:
                return None
            step, name = found
            return LineageStep(run_id=step.run_id, step=step_record(step), name=name)

    def consumers_of(self, sha256: str, kind: str | None = None) -> list[LineageStep]:
        """Every step that took this artifact as an input (any status, cache hits included), oldest first."""
        query = (
            select(Step, Lineage.name)
            .join(Lineage, Lineage.step_id == Step.id)
            .join(Artifact, Artifact.id == Lineage.artifact_id)
            .where(Artifact.sha256 == sha256, Lineage.role == "input")
            .order_by(Step.id, Lineage.id)
            .options(STEP_LOADING)
        )
        if kind:
            query = query.where(Artifact.kind == kind)
        with self._session() as session:
            return [
                LineageStep(run_id=step.run_id, step=step_record(step), name=name)
                for step, name in session.execute(query)
            ]

    # -- internals -----------------------------------------------------------------------------

    def _write_blob(self, new: NewArtifact) -> str:
        if new.data is not None and new.path is None:
            return self.blobs.put_bytes(new.data)
        if new.path is not None and new.data is None:
            return self.blobs.put_file(new.path)
        raise StoreError(f"artifact {new.name!r} needs exactly one of data or path")

    def _artifact_row(self, session: Session, sha256: str, new: NewArtifact) -> Artifact:
        """The row for this content and kind, inserted if it is new."""
        query = select(Artifact).where(Artifact.sha256 == sha256, Artifact.kind == new.kind)
        row = session.scalars(query).first()
        if row is not None:
            return row
        row = Artifact(
            sha256=sha256,
            kind=new.kind,
            media_type=new.media_type,
            size=self.blobs.size(sha256),
            uri=self.blobs.uri_for(sha256),
            meta=dict(new.metadata),
        )
        try:
            with session.begin_nested():  # another writer may insert the same content meanwhile
                session.add(row)
        except SAIntegrityError:
            row = session.scalars(query).one()
        return row

    def _copy_out(self, sha256: str, destination: Path) -> Path:
        """Copy a verified blob to `destination` atomically; the absolute destination."""
        destination = destination.expanduser().resolve()
        source = self.blob_path(sha256)
        temp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, temp)
            os.replace(temp, destination)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise InputError(f"cannot write {destination}: {exc.strerror or exc}") from exc
        return destination

    def _artifact_rows(self, session: Session, shas: Collection[str]) -> list[Artifact]:
        """Every row of these contents (any kind), a few hundred hashes per query."""
        ordered = sorted(shas)
        rows: list[Artifact] = []
        for start in range(0, len(ordered), IN_CHUNK):
            chunk = ordered[start : start + IN_CHUNK]
            rows += session.scalars(select(Artifact).where(Artifact.sha256.in_(chunk)).order_by(Artifact.id))
        return rows

    def _existing_artifacts(
        self, session: Session, refs: Iterable[ArtifactRef]
    ) -> dict[tuple[str, str], Artifact]:
        """`_existing_artifact` for many refs in one query: (sha256, kind) -> row."""
        wanted = {(ref.sha256, ref.kind) for ref in refs}
        rows = {
            (row.sha256, row.kind): row
            for row in self._artifact_rows(session, {sha256 for sha256, _ in wanted})
        }
        missing = sorted(wanted - rows.keys())
        if missing:
            sha256, kind = missing[0]
            raise StoreError(f"no {kind} artifact with sha256 {sha256}")
        return rows

    def _existing_artifact(self, session: Session, ref: ArtifactRef) -> Artifact:
        row = session.scalars(
            select(Artifact).where(Artifact.sha256 == ref.sha256, Artifact.kind == ref.kind)
        ).first()
        if row is None:
            raise StoreError(f"no {ref.kind} artifact with sha256 {ref.sha256}")
        return row
