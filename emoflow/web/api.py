"""The JSON API (documented at /docs and /openapi.json)."""

from __future__ import annotations

import json
import mimetypes
import os
import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, create_model
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from emoflow.web import live, service
from emoflow.web.auth import Reader, Writer
from emoflow.web.schemas import (
    CancelledOut,
    CurveEditedOut,
    CurveOut,
    JobStatusOut,
    ProgressOut,
    RetriedOut,
    RunOut,
    RunSummaryOut,
    SubmittedOut,
)
from kernel.errors import StoreError
from kernel.jobs import JobSpec

router = APIRouter(tags=["api"])
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# on every artifact reply: blobs are data, never a page that runs (an SVG or HTML someone stored)
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
# the store's media types; the system's mime.types (which differ between hosts) only fill gaps
EXTENSIONS = {
    "application/json": ".json",
    "application/vnd.safetensors": ".safetensors",
    "application/x-ndjson": ".ndjson",
    "application/x-npz": ".npz",
    "audio/wav": ".wav",
    "image/bmp": ".bmp",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "text/vtt": ".vtt",
    "video/mp4": ".mp4",
}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# one range-spec of RFC 9110 14.1.1: first-last, first- or -suffix (whitespace only around commas)
_RANGE_SPEC = re.compile(r"(\d+)-(\d*)|-(\d+)")
# over HTTP there is no script_file, so the words themselves are required
REQUIRED_FIELDS = frozenset({"script"})
_JOB_SCHEMA = JobSpec.model_json_schema()


class CurveEditIn(BaseModel):
    """One word (`index`) or a span of words [`start`, `stop`) gets `label` at `intensity`."""

    index: int | None = Field(default=None, ge=0)
    start: int | None = Field(default=None, ge=0)
    stop: int | None = Field(default=None, ge=1)
    label: str = Field(description="an emotion of the vocabulary, or one of its synonyms")
    intensity: float = Field(ge=0.0, le=1.0)


class CurveEditsIn(BaseModel):
    edits: list[CurveEditIn] = Field(min_length=1, max_length=10_000)


def _form_field(name: str) -> tuple[Any, Any]:
    """A form field for one JobSpec field: sent as text, documented with JobSpec's own schema.

    The form only carries values; JobSpec (through `service.submit`) is the one validator, so a
    bad field gets the same 422 "invalid job: <field>: ..." as from the CLI or a job file.
    """
    required = name in REQUIRED_FIELDS
    documented = {k: v for k, v in _JOB_SCHEMA["properties"][name].items() if k != "default" or not required}

    def document(field_schema: dict[str, Any]) -> None:
        # a field referring to JobSpec's $defs would dangle in the OpenAPI document: leave it text
        if "$ref" not in json.dumps(documented):
            field_schema.clear()
            field_schema.update(documented)

    description = JobSpec.model_fields[name].description
    if required:
        return str, Field(description=description, json_schema_extra=document)
    # absent: JobSpec's default, then the server's settings
    return str | None, Field(default=None, description=description, json_schema_extra=document)


class _PortraitForm(BaseModel):
    portrait: UploadFile | None = Field(default=None, description="PNG, JPEG or WebP with a face")
    portrait_builtin: str | None = Field(
        default=None,
        description="a built-in portrait instead of an upload: skimage:astronaut "
        "(skimage:chelsea, a cat, is accepted but always refused for having no human face)",
    )


# Every JobSpec field a client may set, derived so a new JobSpec field reaches the form by itself.
# mypy cannot see fields made at runtime: to it the form is the base, and the rest is read by name.
if TYPE_CHECKING:
    JobForm = _PortraitForm
else:
    JobForm = create_model(
        "JobForm",
        __base__=_PortraitForm,
        __doc__="A job as a multipart form: JobSpec's fields, with the portrait as an upload.",
        **{name: _form_field(name) for name in service.JOB_FIELDS},
    )


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmittedOut,
    summary="Submit a job and start narrating it",
)
async def post_job(
    request: Request,
    token: Writer,
    form: Annotated[JobForm, Form(media_type="multipart/form-data")],
) -> dict[str, Any]:
    state = request.app.state
    portrait = form.portrait
    upload = await service.read_upload(portrait, state.limits) if portrait and portrait.filename else None
    fields = {name: getattr(form, name) for name in service.JOB_FIELDS}
    builtin = form.portrait_builtin
    # face detection and blob writes block: keep them off the event loop
    job_id = await run_in_threadpool(
        service.submit, state.store, state.launcher, token, fields, upload, builtin, state.limits
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
    "/runs/{run_id}/progress", response_model=ProgressOut, summary="A run's status and per-stage progress"
)
def get_progress(request: Request, run_id: str, _token: Reader) -> dict[str, Any]:
    state = request.app.state
    return state.progress.snapshot(state.store, service.find_run(state.store, run_id).id)


@router.get(
    "/runs/{run_id}/events",
    summary="Server-sent events: `progress` (as GET /runs/{id}/progress) on every change, then `end`",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def get_events(request: Request, run_id: str, _token: Reader) -> StreamingResponse:
    state = request.app.state
    run = service.find_run(state.store, run_id)  # a 404 before the stream starts, not inside it
    return StreamingResponse(
        live.progress_events(state.store, state.progress, run.id),
        media_type="text/event-stream",
        # no-transform: a compressing proxy would hold events back; X-Accel-Buffering: nginx's buffer
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/runs/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelledOut,
    summary="Stop a running run before its next stage; it ends cancelled, its finished steps kept",
    responses={409: {"description": "the run is not running"}},
)
def post_cancel(request: Request, run_id: str, token: Writer) -> dict[str, Any]:
    run = service.cancel_run(request.app.state.store, token, run_id)
    request.app.state.progress.forget(run.id)
    return {"run_id": run.id, "status": "cancelling", "url": f"/runs/{run.id}/progress"}


@router.post(
    "/runs/{run_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetriedOut,
    summary="Run a failed, cancelled or abandoned run's job again, reusing its finished steps",
    responses={409: {"description": "the run succeeded or is running, or its job has a flow running"}},
)
def post_retry(request: Request, run_id: str, token: Writer) -> dict[str, Any]:
    state = request.app.state
    source, new_run = service.retry_run(state.store, state.launcher, token, run_id)
    return service.retried_doc(source, new_run)


@router.head("/artifacts/{sha256}", summary="An artifact's headers (size, type, ETag) without its bytes")
@router.get(
    "/artifacts/{sha256}",
    summary="An artifact's bytes by hash; supports Range requests",
    response_class=FileResponse,
    responses={
        206: {"description": "Partial content (one range, or multipart/byteranges for several)"},
        304: {"description": "Not modified: the client's copy has this hash"},
        416: {"description": "Range not satisfiable: no requested range overlaps the artifact"},
    },
)
def get_artifact(
    request: Request,
    sha256: str,
    _token: Reader,
    name: Annotated[
        str | None, Query(max_length=200, description="file name to save as; the extension follows the type")
    ] = None,
    download: Annotated[
        bool, Query(description="send as an attachment (the browser saves it) rather than inline")
    ] = False,
) -> Response:
    if not SHA256.match(sha256):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "artifacts are addressed by a full lowercase sha256")
    store = request.app.state.store
    try:
        ref = store.artifact(sha256)
    except StoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    headers = artifact_headers(sha256)
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        # the client's copy is named by this hash, so it is current: no need to re-read the blob
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    try:
        path = store.blob_path(sha256)  # verified against its hash before any byte goes out
    except StoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    # Starlette does Range, If-Range (against our ETag), multi-range and HEAD; ArtifactResponse
    # first makes an invalid Range header ignored and drops ranges that lie past the end
    return ArtifactResponse(
        path,
        media_type=ref.media_type,
        headers=headers,
        filename=download_name(ref.kind, ref.media_type, name),
        # inline: viewable in a tab, the name is for "save as"; attachment: the run page's download links
        content_disposition_type="attachment" if download else "inline",
        stat_result=os.stat(path),
    )


def artifact_headers(sha256: str) -> dict[str, str]:
    return {
        "ETag": f'"{sha256}"',  # strong: the bytes are the hash's
        "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed: never changes
    } | SAFETY_HEADERS


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison: `W/` is ignored, `*` matches any existing artifact."""
    tags = [tag.strip().removeprefix("W/") for tag in (header or "").split(",")]
    return "*" in tags or etag in tags


def download_name(kind: str, media_type: str, requested: str | None = None) -> str:
    """`requested` (or the artifact's kind) reduced to [A-Za-z0-9._-], so it can never carry quotes,
    separators or line breaks into the header, and ending in the extension of the media type."""
    suffix = extension(media_type)
    stem = _UNSAFE_NAME.sub("_", requested or kind).strip("._")[:100] or "artifact"
    return stem if stem.lower().endswith(suffix) else stem + suffix


def extension(media_type: str) -> str:
    base = media_type.split(";")[0].strip().lower()
    guessed = EXTENSIONS.get(base) or mimetypes.guess_extension(base, strict=False) or ""
    return guessed if re.fullmatch(r"\.[a-z0-9]{1,12}", guessed) else ".bin"


def usable_range(header: str, size: int) -> str | None:
    """The Range header to let Starlette serve, or None to ignore it and send the whole artifact.

    RFC 9110 14.2: a Range that is not a valid `bytes` range set (bad syntax, an unknown unit, a
    last-pos before its first-pos) is ignored, where Starlette answers 400. 15.5.17: 416 is only for a
    set of which no range overlaps the artifact, where Starlette answers 416 if any range lies past the
    end: those are dropped here, and a set that keeps none is handed on as it is, for Starlette's 416.
    """
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part.strip() for part in specs.split(",") if part.strip()]  # empty list elements are allowed
    kept = []
    for part in parts:
        spec = _RANGE_SPEC.fullmatch(part)
        if spec is None:
            return None
        first, last, suffix = spec.groups()
        if suffix is not None:
            if int(suffix) > 0 and size > 0:
                kept.append(part)
        elif last and int(last) < int(first):
            return None
        elif int(first) < size:
            kept.append(part)
    if not parts:
        return None
    return "bytes=" + ", ".join(kept) if kept else header


class ArtifactResponse(FileResponse):
    """FileResponse that reads the Range header as RFC 9110 says (see `usable_range`) and whose own
    replies (416) keep the safety headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k != b"range"]
        sent = [v for k, v in scope["headers"] if k == b"range"]
        if sent:
            size = (self.stat_result or os.stat(self.path)).st_size
            usable = usable_range(b",".join(sent).decode("latin-1"), size)
            if usable is not None:
                headers.append((b"range", usable.encode("latin-1")))
            scope = dict(scope, headers=headers)  # a copy: the request itself is left as it came

        async def send_safely(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SAFETY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await super().__call__(scope, receive, send_safely)


def filter_runs(runs: list[Any], status_: str | None, q: str | None) -> list[Any]:
    needle = (q or "").strip().lower()
    return [
        r
        for r in runs
        if (not status_ or r.status == status_)
        and (not needle or any(needle in v.lower() for v in (r.job.name, r.job.submitter, r.id, r.job.id)))
    ]
