"""The JSON API (documented at /docs and /openapi.json)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from emoflow.web import service
from emoflow.web.auth import Reader, Writer
from emoflow.web.schemas import (
    CurveEditedOut,
    CurveOut,
    JobStatusOut,
    RunOut,
    RunSummaryOut,
    SubmittedOut,
)
from kernel.errors import StoreError

router = APIRouter(tags=["api"])
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1 << 16


class CurveEditIn(BaseModel):
    """One word (`index`) or a span of words [`start`, `stop`) gets `label` at `intensity`."""

    index: int | None = Field(default=None, ge=0)
    start: int | None = Field(default=None, ge=0)
    stop: int | None = Field(default=None, ge=1)
    label: str = Field(description="an emotion of the vocabulary, or one of its synonyms")
    intensity: float = Field(ge=0.0, le=1.0)


class CurveEditsIn(BaseModel):
    edits: list[CurveEditIn] = Field(min_length=1, max_length=10_000)


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmittedOut,
    summary="Submit a job and start narrating it",
)
async def post_job(
    request: Request,
    token: Writer,
    script: Annotated[str, Form(description="words to speak; inline tags like [angry 0.8] allowed")],
    description: Annotated[str, Form(description="free-form emotion description")] = "",
    portrait: Annotated[UploadFile | None, File(description="PNG, JPEG or WebP with a face")] = None,
    portrait_builtin: Annotated[
        str | None, Form(description="skimage:astronaut instead of an upload")
    ] = None,
    name: Annotated[str | None, Form()] = None,
    planner: Annotated[str | None, Form()] = None,
    tts_engine: Annotated[str | None, Form(description="piper or espeak")] = None,
    aligner: Annotated[str | None, Form()] = None,
    efp_engine: Annotated[str | None, Form()] = None,
    renderer: Annotated[str | None, Form()] = None,
    fps: Annotated[int | None, Form()] = None,
    size: Annotated[int | None, Form()] = None,
    seed: Annotated[int | None, Form()] = None,
    head_motion: Annotated[float | None, Form()] = None,
    face_index: Annotated[int | None, Form()] = None,
) -> dict[str, Any]:
    state = request.app.state
    upload = await service.read_upload(portrait, state.limits) if portrait and portrait.filename else None
    fields = {
        "name": name,
        "script": script,
        "description": description,
        "planner": planner,
        "tts_engine": tts_engine,
        "aligner": aligner,
        "efp_engine": efp_engine,
        "renderer": renderer,
        "fps": fps,
        "size": size,
        "seed": seed,
        "head_motion": head_motion,
        "face_index": face_index,
    }
    # face detection and blob writes block: keep them off the event loop
    job_id = await run_in_threadpool(
        service.submit, state.store, state.launcher, token, fields, upload, portrait_builtin, state.limits
    )
    return {"job_id": job_id, "status": "queued", "url": f"/jobs/{job_id}", "page": f"/ui/jobs/{job_id}"}


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatusOut,
    summary="A job, its runs, and whether a flow is still queued or running",
)
def get_job(request: Request, job_id: str, _token: Reader) -> dict[str, Any]:
    state = request.app.state
    job = service.find_job(state.store, job_id)
    return service.job_doc(job) | {
        "active": state.launcher.active(job.id),
        "last_error": state.launcher.error(job.id),
        "runs": [service.run_summary(r) for r in state.store.job_runs(job.id)],
    }


@router.get("/runs", response_model=list[RunSummaryOut], summary="Newest runs first, optionally filtered")
def list_runs(
    request: Request,
    _token: Reader,
    status_: Annotated[str | None, Query(alias="status")] = None,
    q: Annotated[str | None, Query(description="search job name, submitter, run or job id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    runs = filter_runs(request.app.state.store.list_runs(limit), status_, q)
    return [service.run_summary(r) for r in runs]


@router.get("/runs/{run_id}", response_model=RunOut, summary="A run: steps, engines, cache hits, artifacts")
def get_run(request: Request, run_id: str, _token: Reader) -> dict[str, Any]:
    return service.run_doc(service.find_run(request.app.state.store, run_id))


@router.get(
    "/runs/{run_id}/curve", response_model=CurveOut, summary="The word-level emotion curve the run rendered"
)
def get_curve(request: Request, run_id: str, _token: Reader) -> dict[str, Any]:
    store = request.app.state.store
    found = service.curve_document(store, service.find_run(store, run_id))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no emotion curve")
    ref, curve = found
    return {"artifact": service.artifact_doc(ref), "curve": curve}


@router.post(
    "/runs/{run_id}/curve",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CurveEditedOut,
    summary="Edit the run's curve and re-render (only render and publish compute)",
)
def post_curve(request: Request, run_id: str, body: CurveEditsIn, token: Writer) -> dict[str, Any]:
    state = request.app.state
    edits = [e.model_dump(exclude_none=True) for e in body.edits]
    source, curve = service.edit_curve(state.store, state.launcher, token, run_id, edits)
    return {
        "job_id": source.job.id,
        "source_run_id": source.id,
        "curve": service.artifact_doc(curve),
        "status": "queued",
        "url": f"/jobs/{source.job.id}",
    }


@router.get(
    "/artifacts/{sha256}",
    summary="An artifact's bytes by hash; supports Range requests",
    responses={206: {"description": "Partial content"}, 416: {"description": "Range not satisfiable"}},
)
def get_artifact(request: Request, sha256: str, _token: Reader) -> Response:
    if not SHA256.match(sha256):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "artifacts are addressed by a full lowercase sha256")
    store = request.app.state.store
    try:
        ref = store.artifact(sha256)
        path = store.blob_path(sha256)  # verified against its hash before any byte goes out
    except StoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    size = path.stat().st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed: never changes
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if request.headers.get("if-none-match") == f'"{sha256}"':
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    first, last = 0, size - 1
    code = status.HTTP_200_OK
    spec = request.headers.get("range")
    if spec and (request.headers.get("if-range") in (None, f'"{sha256}"')):
        parsed = parse_range(spec, size)
        if parsed is None:
            return Response(
                status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE,
                headers=headers | {"Content-Range": f"bytes */{size}"},
            )
        first, last = parsed
        code = status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    return StreamingResponse(
        _read(path, first, last), status_code=code, media_type=ref.media_type, headers=headers
    )


def parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, clamped to the file; None if unsatisfiable.
    Multiple ranges are not supported and are answered with the whole first-to-last span."""
    ranges = spec.replace(" ", "").split(",")
    spans = [_RANGE.match(r) for r in ranges]
    if not all(spans) or size == 0:
        return None
    bounds = []
    for match in spans:
        assert match is not None
        start, end = match.groups()
        if start == "" and end == "":
            return None
        if start == "":  # suffix: the last N bytes
            first, last = max(0, size - int(end)), size - 1
        else:
            first, last = int(start), min(size - 1, int(end)) if end else size - 1
        if first > last or first >= size:
            return None
        bounds.append((first, last))
    return min(b[0] for b in bounds), max(b[1] for b in bounds)


def filter_runs(runs: list[Any], status_: str | None, q: str | None) -> list[Any]:
    needle = (q or "").strip().lower()
    return [
        r
        for r in runs
        if (not status_ or r.status == status_)
        and (not needle or any(needle in v.lower() for v in (r.job.name, r.job.submitter, r.id, r.job.id)))
    ]


def _read(path: Any, first: int, last: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(first)
        left = last - first + 1
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
