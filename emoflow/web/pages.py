"""Server-rendered pages: runs, a run, a job, submission, the curve editor, and a comparison."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cachetools import LRUCache, cached
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from emoflow.web import compare, service, views
from emoflow.web.api import download_name, filter_runs
from emoflow.web.auth import COOKIE, require_same_origin
from emoflow.web.edit_form import editor_rows, form_edits, rejected_words
from flows.rerender import emotion_colors
from kernel.errors import InputError, StoreError
from kernel.jobs import JobSpec
from stores.records import ArtifactRef, RunRecord
from stores.tokens import TokenRecord, verify_token

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# abandoned: its worker's lease ran out; cancelled: stopped on request
STATUSES = ("running", "succeeded", "failed", "cancelled", "abandoned")
# fields submit.html lays out by hand; every other job field goes under "More options"
LAID_OUT = ("name", "script", "description", "tts_engine", "size", "fps", "seed", "head_motion")
# the built-ins the form offers: skimage:chelsea (a cat) is left out, it always fails the face check
FORM_BUILTINS = ("skimage:astronaut",)
_COLOR = re.compile(r"#[0-9A-Fa-f]{3,8}")
EDIT_WAIT_SECONDS = 10.0  # how long saving an edit waits for the re-render to start, to link to it


def emotion_class(label: Any) -> str:
    """The CSS class that colours a label's swatch (page.css); any label gives a safe class name."""
    return "emo-" + re.sub(r"[^a-z0-9_-]", "_", str(label).lower())


templates.env.filters["emotion_class"] = emotion_class


def page_user(request: Request, write: bool = False) -> TokenRecord:
    """The cookie's token, or a redirect to the login page; writes also need a same-origin form."""
    secret = request.cookies.get(COOKIE)
    token = verify_token(request.app.state.store, secret) if secret else None
    if token is None:
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/ui/login"})
    if write:
        require_same_origin(request)
        if not token.can_write:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"token {token.name!r} is a viewer: it cannot write"
            )
    return token


def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=code)


def error_page(
    request: Request, code: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A UI route's error as a page in the site's layout (the JSON API keeps JSON errors)."""
    response = render(request, "error.html", code, user=None, status=code, message=message)
    response.headers.update(headers or {})
    return response


@router.get("/page.css")
def page_css() -> Response:
    """What app.css cannot know and the CSP keeps out of style attributes: the vocabulary's colours
    and the timeline's proportions, as classes. Holds no data, so no token is needed."""
    return PlainTextResponse(_page_css(), media_type="text/css", headers={"Cache-Control": "max-age=300"})


@cache
def _page_css() -> str:
    colours = [
        f".{emotion_class(label)} {{ background: {colour}; }}"
        for label, colour in emotion_colors().items()
        if _COLOR.fullmatch(colour)  # a colour, never CSS of its own
    ]
    widths = [f".grow-{n} {{ flex-grow: {n}; }}" for n in range(1, 101)]
    return "\n".join(
        [
            "/* generated from the emotion vocabulary: see emoflow/web/pages.py */",
            *colours,
            *widths,
            *INVALID_CSS,
            "",
        ]
    )


# the fields and words a rejected curve edit got wrong (edit.html); app.css's .error red
INVALID_CSS = (
    '[aria-invalid="true"], .invalid { outline: 2px solid #a61b1b; outline-offset: 1px; }',
    ".tok.invalid { background: #fff0f0; border-color: #a61b1b; }",
)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", user=None)


@router.post("/login")
def login(request: Request, token: str = Form()) -> Response:
    require_same_origin(request)  # else another site could log a visitor in as someone else
    found = verify_token(request.app.state.store, token.strip())
    if found is None:
        return render(request, "login.html", 401, user=None, error="that token is not valid")
    response = RedirectResponse("/ui/runs", status.HTTP_303_SEE_OTHER)
    # HttpOnly: page scripts never see it; Strict: other sites cannot post with it
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    require_same_origin(request)
    response = RedirectResponse("/ui/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE)
    return response


@router.get("/runs")
def runs_page(request: Request, q: str | None = None) -> HTMLResponse:
    user = page_user(request)
    status_ = request.query_params.get("status") or None
    runs = filter_runs(request.app.state.store.list_runs(500), status_, q)
    rows = [service.run_summary(r) for r in runs]
    return render(request, "runs.html", user=user, runs=rows, status=status_, q=q or "", statuses=STATUSES)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> HTMLResponse:
    user = page_user(request)
    store = request.app.state.store
    run = service.find_run(store, run_id)
    context = _run_context(store, run)
    return render(
        request,
        "run.html",
        user=user,
        run=run,
        summary=service.run_summary(run),
        plan=run.plan_report(),
        active=request.app.state.launcher.active(run.job.id),
        progress=request.app.state.progress.document(store, run),
        # the run's own events plus the job's run-less ones (submission)
        prefect_ui=_prefect_ui(run.prefect_flow_run_id),
        audit=[e for e in store.job_audit_events(run.job.id) if e.run_id in (None, run.id)],
        **context,
        delivery=_delivery(store, run, context["curve_ref"]),
    )


@router.post("/runs/{run_id}/cancel")
async def cancel_submit(request: Request, run_id: str) -> Response:
    user = page_user(request, write=True)
    run = await run_in_threadpool(service.cancel_run, request.app.state.store, user, run_id)
    request.app.state.progress.forget(run.id)
    return RedirectResponse(f"/ui/runs/{run.id}", status.HTTP_303_SEE_OTHER)


@router.post("/runs/{run_id}/retry")
async def retry_submit(request: Request, run_id: str) -> Response:
    user = page_user(request, write=True)
    state = request.app.state
    # waits (off the event loop) for the new run to start, so the redirect can show it
    source, new_run = await run_in_threadpool(service.retry_run, state.store, state.launcher, user, run_id)
    return RedirectResponse(service.retried_doc(source, new_run)["page"], status.HTTP_303_SEE_OTHER)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> HTMLResponse:
    user = page_user(request)
    state = request.app.state
    job = service.find_job(state.store, job_id)
    runs = [service.run_summary(r) for r in state.store.job_runs(job.id)]
    return render(
        request,
        "job.html",
        user=user,
        job=job,
        runs=runs,
        active=state.launcher.active(job.id),
        last_error=state.launcher.error(job.id),
    )


@router.get("/submit")
def submit_form(request: Request) -> HTMLResponse:
    return render(request, "submit.html", user=page_user(request), form={}, **_submit_context())


@router.post("/submit")
async def submit_page(request: Request) -> Response:
    user = page_user(request, write=True)
    state = request.app.state
    form = await request.form()
    fields = {k: str(form.get(k, "")).strip() for k in service.JOB_FIELDS}
    fields["script"] = str(form.get("script", ""))
    upload = form.get("portrait")
    builtin = str(form.get("portrait_builtin") or "") or None
    try:
        portrait = None
        # request.form() gives Starlette's UploadFile; FastAPI's is a subclass, so test the base
        if isinstance(upload, UploadFile) and upload.filename:
            if builtin:  # dropping either one silently would narrate a face the user did not mean
                raise InputError(
                    f"choose either an uploaded portrait or the built-in {builtin}, not both: "
                    "clear the file or set the built-in to (use the upload)"
                )
            portrait = await service.read_upload(upload, state.limits)
        elif not builtin:
            raise InputError("choose a portrait: upload a PNG, JPEG or WebP image, or pick a built-in one")
        job_id = await run_in_threadpool(
            service.submit, state.store, state.launcher, user, fields, portrait, builtin, state.limits
        )
    except (InputError, HTTPException) as exc:
        message = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
        code = exc.status_code if isinstance(exc, HTTPException) else 422
        shown = fields | {"portrait_builtin": builtin or ""}  # the form comes back as it was sent
        context = {"form": shown, "error": message, **_submit_context()}
        return render(request, "submit.html", code, user=user, **context)
    return RedirectResponse(f"/ui/jobs/{job_id}", status.HTTP_303_SEE_OTHER)


@router.get("/runs/{run_id}/edit")
def edit_page(request: Request, run_id: str) -> HTMLResponse:
    user = page_user(request)
    store = request.app.state.store
    run = service.find_run(store, run_id)
    return render(request, "edit.html", user=user, run=run, **_editor_context(store, run))


@router.post("/runs/{run_id}/edit")
async def edit_submit(request: Request, run_id: str) -> Response:
    """Commit the edited curve, then show the re-render's own page (its live progress) once its flow
    has started it; the job's page if it has not started within EDIT_WAIT_SECONDS."""
    user = page_user(request, write=True)
    state = request.app.state
    run = service.find_run(state.store, run_id)
    form = await request.form()
    found = service.curve_document(state.store, run)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no emotion curve")
    edits = form_edits(found[1], form)
    before = {r.id for r in state.store.job_runs(run.job.id)}
    try:
        await run_in_threadpool(service.edit_curve, state.store, state.launcher, user, run.id, edits)
    except InputError as exc:
        # nothing was committed: show the form as it was sent, the faulty words marked, to correct it
        message = str(exc)
        wrong = rejected_words(edits, exc, len(found[1]["points"]))
        context = _editor_context(state.store, run, sent=form, wrong=wrong)
        return render(request, "edit.html", 422, user=user, run=run, edit_error=message, **context)
    new_run = await run_in_threadpool(
        service.started_run, state.store, state.launcher, run.job.id, before, EDIT_WAIT_SECONDS
    )
    target = f"/ui/runs/{new_run}" if new_run else f"/ui/jobs/{run.job.id}"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/compare")
def compare_page(request: Request, a: str, b: str) -> HTMLResponse:
    user = page_user(request)
    store = request.app.state.store
    sides = []
    for run_id in (a, b):
        run = service.find_run(store, run_id)
        playback = compare.playback_media(run.steps)
        sides.append(
            {
                "run": run,
                "summary": service.run_summary(run),
                "playback": {"name": playback[0], "ref": playback[1]} if playback else None,
                **_run_context(store, run),
            }
        )
    return render(
        request,
        "compare.html",
        user=user,
        sides=sides,
        words=compare.word_rows(sides[0]["curve"], sides[1]["curve"]),
        stages=compare.stage_rows(sides[0]["run"].steps, sides[1]["run"].steps),
        threshold=compare.INTENSITY_CHANGE,
    )


def _editor_context(
    store: Any,
    run: RunRecord,
    sent: Mapping[str, Any] | None = None,
    wrong: Mapping[int, set[str]] | None = None,
) -> dict[str, Any]:
    """What edit.html needs besides the run's page context: the speech the word timings refer to
    (for Preview), the curve plot's height (editor.js redraws the bars it changes) and the word rows,
    as `sent` (a rejected form) has them, else as the curve has them."""
    speech = next(
        (s.outputs["speech"] for s in run.steps if s.stage == "speak" and "speech" in s.outputs), None
    )
    plot = {"height": views.HEIGHT, "min_bar": views.MIN_BAR, "min_opacity": views.MIN_OPACITY}
    context = _run_context(store, run)
    curve = context["curve"]
    rows = editor_rows(curve, sent or {}, wrong or {}, context["colors"]) if curve else []
    return {**context, "speech": speech, "plot": plot, "rows": rows}


def _run_context(store: Any, run: RunRecord) -> dict[str, Any]:
    colors = emotion_colors()
    found = _curve_of(store, run)
    curve = found[1] if found else None
    media = [
        {"stage": s.stage, "name": n, "ref": ref}
        for s in run.steps
        for n, ref in s.outputs.items()
        if ref.media_type.startswith(("audio/", "video/", "image/"))
    ]
    return {
        "colors": colors,
        "curve": curve,
        "curve_ref": found[0] if found else None,
        "curve_svg": _curve_picture(found[0].sha256, found[1], colors) if found else None,
        "explain": views.explain,
        "timeline": views.timeline(run),
        "media": media,
    }


def _curve_of(store: Any, run: RunRecord) -> tuple[ArtifactRef, dict[str, Any]] | None:
    """The curve the run rendered (its feel step's output, as service.curve_document finds it) read
    from the run already loaded: service.curve_document loads the whole run again, which was a third
    of the run page's server time."""
    ref = next((s.outputs["curve"] for s in run.steps if s.stage == "feel" and "curve" in s.outputs), None)
    if ref is None:
        return None
    return ref, json.loads(store.read_bytes(ref.sha256))  # read_bytes verifies the hash


@cached(
    LRUCache(maxsize=256),
    key=lambda sha256, curve, colors: (sha256, tuple(colors.items())),
    lock=threading.Lock(),
)
def _curve_picture(sha256: str, curve: dict[str, Any], colors: dict[str, str]) -> str:
    """views.curve_svg, kept per curve artifact: the artifact is content-addressed, so its picture
    only changes with the colours (part of the key)."""
    return views.curve_svg(curve, colors)


# what the run page offers to download, in order: (publish output or "curve", label, file name suffix)
DOWNLOADS = (
    ("video", "Video", ""),
    ("delivery_speech", "Speech", "-speech"),
    ("captions", "Captions", ""),
    ("curve", "Emotion curve", "-curve"),
    ("curve_plot", "Curve plot", "-curve"),
)


def _delivery(store: Any, run: RunRecord, curve_ref: ArtifactRef | None) -> dict[str, Any] | None:
    """What a finished run delivered, for the top of its page: the video with its captions track, the
    portrait it was rendered from, and download links under real file names (`<job>-<run8>.mp4`).
    None while the run has published nothing (it is running, or failed before publish)."""
    publish = next((s for s in reversed(run.steps) if s.stage == "publish" and "video" in s.outputs), None)
    if publish is None:
        return None
    outputs = dict(publish.outputs)
    if curve_ref is not None:
        outputs["curve"] = curve_ref
    stem = f"{run.job.name}-{run.id[:8]}"
    downloads = []
    for key, label, suffix in DOWNLOADS:
        ref = outputs.get(key)
        if ref is None:
            continue
        name = download_name(ref.kind, ref.media_type, stem + suffix)  # only [A-Za-z0-9._-]
        downloads.append(
            {
                "label": label,
                "name": name,
                "ref": ref,
                "href": f"/artifacts/{ref.sha256}?{urlencode({'name': name, 'download': 1})}",
            }
        )
    return {
        "video": publish.outputs["video"],
        "captions": publish.outputs.get("captions"),
        "portrait": _portrait(store, run),
        "downloads": downloads,
        "size": run.job.options.get("size"),
        "fps": run.job.options.get("fps"),
    }


def _portrait(store: Any, run: RunRecord) -> ArtifactRef | None:
    """The job's portrait as an artifact: from a step that read it, else from the store."""
    sha = run.job.portrait_sha256
    for step in run.steps:
        for ref in step.inputs.values():
            if ref.sha256 == sha:
                return ref
    try:
        found: ArtifactRef = store.artifact(sha)
    except StoreError:
        return None
    return found


def _submit_context() -> dict[str, Any]:
    return {"more": _more_fields(), "builtins": FORM_BUILTINS}


def _more_fields() -> list[dict[str, str]]:
    """The job fields submit.html does not lay out itself, with JobSpec's description as a hint."""
    specs = JobSpec.model_fields
    return [
        {"name": n, "label": n.replace("_", " "), "hint": specs[n].description or ""}
        for n in service.JOB_FIELDS
        if n not in LAID_OUT
    ]


def _prefect_ui(flow_run_id: str | None) -> str | None:
    """Link to the flow run in Prefect's UI, when a Prefect server with a UI is configured."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base and flow_run_id else None
