"""What the API and the pages both do: submit, edit, and turn store records into plain documents.

Validation lives in `submit_job` (re-exported by `flows.narrate`: the shell calls flows, never
tasks) and `flows.rerender`; this module only adds what is web-specific (upload limits, sniffing)
and never touches blob paths on behalf of a URL.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status
from PIL import Image
from starlette.datastructures import UploadFile  # what request.form() gives; FastAPI's subclasses it

from emoflow.web.launcher import Launcher
from emoflow.web.limits import IMAGE_FORMATS, Limits
from flows.narrate import narrate_resolved_or_flow, submit_job
from flows.rerender import commit_edited_curve, rerender, run_curve
from kernel.errors import InputError, StoreError
from kernel.jobs import BUILTIN_PORTRAIT_PREFIX, JobSpec, parse_job
from kernel.settings import get_settings
from stores.records import ArtifactRef, JobRecord, RunRecord, RunStatus
from stores.store import ArtifactStore
from stores.tokens import TokenRecord

CHUNK = 1 << 16
ACCEPTED = "send PNG, JPEG or WebP (image/png, image/jpeg or image/webp)"
# JobSpec fields a client never sets: the file system is the server's, the submitter is the token's
SERVER_SIDE_FIELDS = frozenset({"script_file", "output_dir", "submitter"})
# what the API form and the submission page accept; `portrait` arrives as an upload or a built-in name
JOB_FIELDS = tuple(n for n in JobSpec.model_fields if n not in SERVER_SIDE_FIELDS and n != "portrait")
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ABANDONED})
RETRY_WAIT_SECONDS = 10.0  # how long a retry waits for its flow to start the new run, to link to it


@dataclass(frozen=True)
class Portrait:
    data: bytes
    suffix: str
    width: int
    height: int


async def read_upload(upload: UploadFile, limits: Limits) -> Portrait:
    """The upload's bytes within the size limit, identified by its content (never its name or
    declared content type) as one of the accepted image formats, within the pixel limit."""
    buffer = bytearray()
    while chunk := await upload.read(CHUNK):
        buffer += chunk
        if len(buffer) > limits.max_upload_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"portrait is larger than {limits.max_upload_bytes} bytes; send a smaller image",
            )
    data = bytes(buffer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format or "", image.size
                if kind in IMAGE_FORMATS and width * height <= limits.max_pixels:
                    image.verify()  # structure check without decoding every pixel
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"portrait has too many pixels; the limit is {limits.max_pixels}",
        ) from exc
    except (OSError, SyntaxError, ValueError, Warning) as exc:
        # PIL's message names its internal objects (a BytesIO and its address): say what is accepted
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"portrait is not a readable image; {ACCEPTED}"
        ) from exc
    if kind not in IMAGE_FORMATS:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"portrait is {kind or 'an unknown format'}; {ACCEPTED}"
        )
    if width * height > limits.max_pixels:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"portrait is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )
    return Portrait(data, IMAGE_FORMATS[kind], width, height)


def submit(
    store: ArtifactStore,
    launcher: Launcher,
    token: TokenRecord,
    fields: dict[str, Any],
    portrait: Portrait | None,
    builtin: str | None,
    limits: Limits,
) -> str:
    """Validate and record the job through `submit_job`, then start its narration; the job id."""
    if len(fields.get("script") or "") > limits.max_script_chars:
        raise InputError(f"script is longer than {limits.max_script_chars} characters")
    if (portrait is None) == (not builtin):
        raise InputError("give exactly one of a portrait upload or portrait_builtin (skimage:astronaut)")
    # only client fields, whatever a caller passes: output_dir or script_file would reach server paths
    data = {k: v for k, v in fields.items() if k in JOB_FIELDS and v is not None and v != ""}
    data["submitter"] = token.name  # the actor is the token, whatever the form says
    with tempfile.TemporaryDirectory(prefix="emoflow-upload-") as folder:
        if portrait is not None:
            path = Path(folder) / f"portrait{portrait.suffix}"
            path.write_bytes(portrait.data)
            data["portrait"] = str(path)
        else:
            if not str(builtin).startswith(BUILTIN_PORTRAIT_PREFIX):
                raise InputError("portrait_builtin must be skimage:astronaut or skimage:chelsea")
            data["portrait"] = builtin
        spec = parse_job(data, Path(folder))
        job_id = submit_job(spec, get_settings(), store)  # stores the portrait by hash
    launcher.launch(job_id, narrate_resolved_or_flow, job_id)
    return job_id


def edit_curve(
    store: ArtifactStore, launcher: Launcher, token: TokenRecord, run_id: str, edits: list[dict[str, Any]]
) -> tuple[RunRecord, ArtifactRef]:
    """Commit the edited curve now (so bad edits fail the request) and re-render in the background."""
    source = store.run(run_id)
    curve, _ = commit_edited_curve(store, source.id, edits)
    launcher.launch(source.job.id, rerender, source.id, edits, token.name)
    return source, curve


def cancel_run(store: ArtifactStore, token: TokenRecord, run_id: str) -> RunRecord:
    """Ask a running run to stop; its flow ends it "cancelled" before its next stage (or within
    about half a second of a stage that reports progress), keeping every step it committed."""
    run = find_run(store, run_id)
    store.reclaim_expired_leases(token.name)  # a run whose worker died is abandoned, not cancellable
    if not store.request_cancel(run.id, token.name):
        now = store.run(run.id).status
        hint = "; retry it instead" if now in RETRYABLE else ""
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {run.id[:8]} is {now}, not running{hint}")
    return store.run(run.id)


def retry_run(
    store: ArtifactStore,
    launcher: Launcher,
    token: TokenRecord,
    run_id: str,
    wait: float = RETRY_WAIT_SECONDS,
) -> tuple[RunRecord, str | None]:
    """Run a failed, cancelled or abandoned run's job again (or its curve edit again), reusing every
    committed step by cache key; the new run's id once its flow has started it (None if it has not
    within `wait` seconds: the job's page lists it when it does)."""
    store.reclaim_expired_leases(token.name)  # so a run whose worker died shows as abandoned
    source = find_run(store, run_id)
    if source.status not in RETRYABLE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"run {source.id[:8]} is {source.status}: "
            "only a failed, cancelled or abandoned run can be retried",
        )
    job_id = source.job.id
    if launcher.active(job_id):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a flow for job {job_id[:8]} is already queued or running"
        )
    before = {r.id for r in store.job_runs(job_id)}
    edit = next((e for e in store.audit_events(source.id) if e.action == "curve.edit"), None)
    store.record_event(
        "run.retry", token.name, job_id=job_id, run_id=source.id, details={"edit": edit is not None}
    )
    if edit is None:
        launcher.launch(job_id, narrate_resolved_or_flow, job_id)
    else:  # the same edit of the same source curve: the same job spec as the run it retries
        edits = [
            {"start": e["first"], "stop": e["stop"], "label": e["label"], "intensity": e["intensity"]}
            for e in edit.details["edits"]
        ]
        launcher.launch(job_id, rerender, edit.details["source_run"], edits, token.name)
    return source, started_run(store, launcher, job_id, before, wait)


def started_run(store: Any, launcher: Any, job_id: str, before: set[str], wait: float) -> str | None:
    """The id of the job's run that is not in `before`, once a launched flow has started it; None when
    none has within `wait` seconds, or the flow ended without one (its error is on the job's page)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        started = [r.id for r in store.job_runs(job_id) if r.id not in before]
        if started:
            return str(started[-1])
        if not launcher.active(job_id):
            return None
        time.sleep(0.1)
    return None


def retried_doc(source: RunRecord, new_run: str | None) -> dict[str, Any]:
    job_id = source.job.id
    return {
        "job_id": job_id,
        "source_run_id": source.id,
        "run_id": new_run,
        "status": "running" if new_run else "queued",
        "url": f"/runs/{new_run}" if new_run else f"/jobs/{job_id}",
        "page": f"/ui/runs/{new_run}" if new_run else f"/ui/jobs/{job_id}",
    }


def find_run(store: ArtifactStore, run_id: str) -> RunRecord:
    try:
        return store.run(run_id)
    except InputError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def find_job(store: ArtifactStore, job_id: str) -> JobRecord:
    try:
        return store.job(job_id)
    except StoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


def curve_document(store: ArtifactStore, run: RunRecord) -> tuple[ArtifactRef, dict[str, Any]] | None:
    try:
        ref = run_curve(store, run.id)
    except InputError:
        return None
    return ref, json.loads(store.read_bytes(ref.sha256))


# -- documents ---------------------------------------------------------------------------------


def artifact_doc(ref: ArtifactRef) -> dict[str, Any]:
    # `uri` is left out on purpose: clients reach blobs by hash, never by filesystem path
    return {
        "sha256": ref.sha256,
        "kind": ref.kind,
        "media_type": ref.media_type,
        "size": ref.size,
        "metadata": ref.metadata,
        "url": f"/artifacts/{ref.sha256}",
    }


def job_doc(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "submitter": job.submitter,
        "status": job.status,
        "submitted_at": job.submitted_at.isoformat(),
        "script": job.script,
        "description": job.description,
        "portrait": f"/artifacts/{job.portrait_sha256}",
        "options": {k: v for k, v in job.options.items() if k != "output_dir"},
    }


def run_seconds(run: RunRecord) -> float | None:
    return (run.finished_at - run.started_at).total_seconds() if run.finished_at else None


def run_summary(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_id": run.job.id,
        "job": run.job.name,
        "submitter": run.job.submitter,
        "status": run.status,
        "error": run.error,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": run_seconds(run),
        "engines": {s.stage: f"{s.engine}@{s.engine_version}" for s in run.steps},
        "computed": [s.stage for s in run.steps if not s.cache_hit],
        "cached": [s.stage for s in run.steps if s.cache_hit],
        "url": f"/runs/{run.id}",
        "page": f"/ui/runs/{run.id}",
    }


def run_doc(run: RunRecord) -> dict[str, Any]:
    return run_summary(run) | {
        "job": job_doc(run.job),
        "prefect_flow_run_id": run.prefect_flow_run_id,
        "steps": [
            {
                "id": s.id,
                "stage": s.stage,
                "engine": s.engine,
                "engine_version": s.engine_version,
                "params": s.params,
                "cache_key": s.cache_key,
                "engine_digests": dict(s.engine_digests),
                "status": s.status,
                "cache_hit": s.cache_hit,
                "attempts": s.attempts,
                "seconds": s.seconds,
                "error": s.error,
                "inputs": {n: artifact_doc(a) for n, a in s.inputs.items()},
                "outputs": {n: artifact_doc(a) for n, a in s.outputs.items()},
            }
            for s in run.steps
        ],
    }
