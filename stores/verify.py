"""`emoflow store verify [--repair]`: check that rows and blobs still agree, and put them back if not.

Checks, each a problem `kind`:

- ``corrupt_blob``: a blob whose content no longer hashes to its name (bit rot, tampering).
- ``orphan_blob``: a blob file no artifact row points at (e.g. a crash between blob write and commit).
- ``missing_blob``: a row whose blob is gone while a live step (succeeded or cached) still outputs it.
- ``temp_file``: a leftover ``*.part`` under the blob tmp folder (a crash in the middle of a write).
- ``dangling_lineage``: a lineage row naming an artifact or step that does not exist.
- ``stuck_step``: a step still "running" whose run finished or was abandoned.
- ``abandoned_run``: a run still "running" whose process is gone (same host, pid dead), whose job's
  lease expired, or that started longer ago than `stale_after`; and, already handled, a run marked
  "abandoned" when its lease ran out (its job went back to the queue).

Repair never deletes a blob: bad and orphan blobs and temp files move to ``<blob root>/quarantine``.
Steps whose outputs were corrupt or missing become "invalidated" (``cached_outputs`` only reuses
"succeeded" steps, so the next run recomputes them); stuck steps and abandoned runs become "failed".
A ``store.repair`` audit event records what was done. Run it on a quiet store: a writer's in-flight
temp file and open step look exactly like a crash's leftovers.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel.runtime import host_name
from stores.blobs import BlobStore, FsspecBlobStore, sha256_file
from stores.convert import aware
from stores.schema import Artifact, AuditEvent, Lineage, Run, Step, utcnow
from stores.status import LIVE_STEP_STATUSES, JobStatus, RunStatus, StepStatus
from stores.store import SYSTEM_ACTOR, ArtifactStore

LIVE_STEP = LIVE_STEP_STATUSES  # statuses whose outputs a later run may rely on
QUARANTINE = "quarantine"


@dataclass
class Problem:
    kind: str
    subject: str  # a sha256, a file path, "step 12", "run <id>"
    detail: str
    repaired: bool = False


@dataclass
class VerifyReport:
    blobs_checked: int = 0
    artifacts_checked: int = 0
    steps_checked: int = 0
    quarantined: list[str] = field(default_factory=list)  # where repair moved things
    invalidated_steps: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    def by_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def verify_store(
    store: ArtifactStore,
    *,
    repair: bool = False,
    actor: str = SYSTEM_ACTOR,
    stale_after: timedelta = timedelta(hours=24),
) -> VerifyReport:
    report = VerifyReport()
    blobs = store.blobs
    with store._session() as session:
        rows = session.scalars(select(Artifact)).all()
        report.artifacts_checked = len(rows)
        known = {row.sha256 for row in rows}
        on_disk = set(_blob_shas(blobs))
        report.blobs_checked = len(on_disk)
        quarantined = set(_quarantined_shas(blobs))

        # 1. every blob re-hashed; files without a row are orphans
        for sha in sorted(on_disk):
            actual = _hash(blobs, sha)
            if actual != sha:
                report.problems.append(Problem("corrupt_blob", sha, f"content hashes to {actual}"))
            elif sha not in known:
                report.problems.append(Problem("orphan_blob", sha, "no artifact row points at it"))
        corrupt = {p.subject for p in report.by_kind("corrupt_blob")}

        # 2. rows whose blob is gone (or about to be quarantined) while a live step relies on them
        outputs_of = _live_steps_by_output(session)
        missing = {row.sha256 for row in rows if row.sha256 not in on_disk}
        for sha in sorted(missing):
            if outputs_of.get(sha):
                note = " (quarantined earlier)" if sha in quarantined else ""
                report.problems.append(Problem("missing_blob", sha, f"no blob file{note}"))

        # 3. leftovers of interrupted writes
        for path in _temp_files(blobs):
            report.problems.append(Problem("temp_file", str(path), f"{path.stat().st_size} bytes"))

        # 4. lineage pointing nowhere
        artifact_ids = {row.id for row in rows}
        steps = {step.id: step for step in session.scalars(select(Step))}
        report.steps_checked = len(steps)
        dangling_steps: set[int] = set()
        for link in session.scalars(select(Lineage)):
            if link.artifact_id not in artifact_ids or link.step_id not in steps:
                report.problems.append(
                    Problem(
                        "dangling_lineage",
                        f"lineage {link.id}",
                        f"step {link.step_id}, artifact {link.artifact_id}: one of them does not exist",
                    )
                )
                dangling_steps.add(link.step_id)

        # 5. runs whose process died, and steps left "running"
        abandoned = _abandoned_runs(session, stale_after)
        for run_id, why in abandoned.items():
            report.problems.append(Problem("abandoned_run", f"run {run_id}", why))
        # runs already marked abandoned when their worker's lease ran out: reported, nothing left to do
        for run in session.scalars(select(Run).where(Run.status == RunStatus.ABANDONED)):
            why = f"{run.error or 'lease expired'}; its job went back to the queue"
            report.problems.append(Problem("abandoned_run", f"run {run.id}", why, repaired=True))
        for step in steps.values():
            if step.status != StepStatus.RUNNING:
                continue
            run_status = step.run.status
            if run_status != RunStatus.RUNNING or step.run_id in abandoned:
                why = abandoned.get(step.run_id, f"its run is {run_status}")
                report.problems.append(Problem("stuck_step", f"step {step.id}", f"{step.stage}: {why}"))

        if repair:
            _repair(store, session, report, corrupt | missing, outputs_of, dangling_steps, abandoned, actor)
    return report


# -- repair --------------------------------------------------------------------------------------


def _repair(
    store: ArtifactStore,
    session: Session,
    report: VerifyReport,
    lost: set[str],
    outputs_of: dict[str, list[Step]],
    dangling_steps: set[int],
    abandoned: dict[str, str],
    actor: str,
) -> None:
    now = utcnow()
    folder = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    for problem in report.problems:
        if problem.kind in ("corrupt_blob", "orphan_blob"):
            report.quarantined.append(_quarantine_blob(store.blobs, problem.subject, folder))
            problem.repaired = True
        elif problem.kind == "temp_file":
            report.quarantined.append(_quarantine_temp(store.blobs, Path(problem.subject), folder))
            problem.repaired = True
        elif problem.kind == "missing_blob":
            problem.repaired = True  # its steps are invalidated below
        elif problem.kind == "dangling_lineage":
            step = session.get(Step, int(problem.detail.split(",")[0].removeprefix("step ")))
            problem.repaired = step is not None  # the step is invalidated below
    # steps whose outputs are gone are recomputed by the next run that needs them
    invalid = {step.id: step for sha in lost for step in outputs_of.get(sha, [])}
    invalid |= {sid: s for sid in dangling_steps if (s := session.get(Step, sid)) is not None}
    for step in invalid.values():
        if step.status in LIVE_STEP:
            step.status = StepStatus.INVALIDATED
            step.error = "store verify: an output blob was corrupt or missing"
            report.invalidated_steps.append(step.id)
    for problem in report.problems:
        if problem.kind == "stuck_step":
            step = session.get(Step, int(problem.subject.removeprefix("step ")))
            if step is not None:
                step.status, step.finished_at = StepStatus.FAILED, now
                step.error = f"abandoned (store verify): {problem.detail}"
            problem.repaired = True
        elif problem.kind == "abandoned_run":
            run = session.get(Run, problem.subject.removeprefix("run "))
            if run is not None:
                run.status, run.finished_at = RunStatus.FAILED, now
                run.error = f"abandoned (store verify): {problem.detail}"
                run.job.status = JobStatus.FAILED
            problem.repaired = True
    counts: dict[str, int] = {}
    for problem in report.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    session.add(
        AuditEvent(
            actor=actor,
            action="store.repair",
            details={
                "problems": counts,
                "quarantined": report.quarantined,
                "invalidated_steps": sorted(report.invalidated_steps),
                "abandoned_runs": sorted(abandoned),
            },
        )
    )


def _quarantine_blob(blobs: BlobStore | FsspecBlobStore, sha: str, folder: str) -> str:
    if isinstance(blobs, FsspecBlobStore):
        target = f"{blobs.root}/{QUARANTINE}/{folder}/{sha}"
        blobs.fs.mv(blobs.path_for(sha), target)
        return target
    target_path = blobs.root / QUARANTINE / folder / sha
    target_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(blobs.path_for(sha), target_path)  # same filesystem: atomic, nothing deleted
    return str(target_path)


def _quarantine_temp(blobs: BlobStore | FsspecBlobStore, path: Path, folder: str) -> str:
    root = blobs.cache if isinstance(blobs, FsspecBlobStore) else blobs.root
    target = root / QUARANTINE / folder / "tmp" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return str(target)


# -- reading the store ---------------------------------------------------------------------------


def _blob_shas(blobs: BlobStore | FsspecBlobStore) -> list[str]:
    if isinstance(blobs, BlobStore):
        return list(blobs.iter_shas())  # root/ab/cd/<sha>: neither tmp/ nor quarantine/ match
    prefix = f"{blobs.root}/{QUARANTINE}/"
    return [p.rsplit("/", 1)[-1] for p in blobs.fs.find(blobs.root) if not p.startswith(prefix)]


def _quarantined_shas(blobs: BlobStore | FsspecBlobStore) -> list[str]:
    if isinstance(blobs, BlobStore):
        return [p.name for p in (blobs.root / QUARANTINE).glob("*/*") if p.is_file()]
    return []


def _hash(blobs: BlobStore | FsspecBlobStore, sha: str) -> str:
    if isinstance(blobs, BlobStore):
        return sha256_file(blobs.path_for(sha))
    return hashlib.sha256(blobs.fs.cat_file(blobs.path_for(sha))).hexdigest()


def _temp_files(blobs: BlobStore | FsspecBlobStore) -> list[Path]:
    tmp = blobs.cache / "tmp" if isinstance(blobs, FsspecBlobStore) else blobs.tmp
    return sorted(p for p in tmp.iterdir() if p.is_file()) if tmp.is_dir() else []


def _live_steps_by_output(session: Session) -> dict[str, list[Step]]:
    query = (
        select(Artifact.sha256, Step)
        .join(Lineage, Lineage.artifact_id == Artifact.id)
        .join(Step, Step.id == Lineage.step_id)
        .where(Lineage.role == "output", Step.status.in_(LIVE_STEP))
    )
    found: dict[str, list[Step]] = {}
    for sha, step in session.execute(query):
        found.setdefault(sha, []).append(step)
    return found


def _abandoned_runs(session: Session, stale_after: timedelta) -> dict[str, str]:
    """Run id -> why, for runs still marked "running" whose process cannot be running any more."""
    host = host_name()
    now = utcnow()
    found: dict[str, str] = {}
    for run in session.scalars(select(Run).where(Run.status == RunStatus.RUNNING)):
        expires = run.job.lease_expires_at
        if expires is not None and aware(expires) < now:
            found[run.id] = f"the lease of {run.job.lease_owner} on its job expired at {aware(expires)}"
            continue
        start = session.scalars(
            select(AuditEvent).where(AuditEvent.run_id == run.id, AuditEvent.action == "run.start")
        ).first()
        details = start.details if start is not None else {}
        if details.get("host") == host and isinstance(details.get("pid"), int):
            if not _alive(details["pid"]):
                found[run.id] = f"its process {details['pid']} on {host} is gone"
        elif now - aware(run.started_at) > stale_after:
            found[run.id] = f"started more than {stale_after} ago and never finished"
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
