"""The inspector end to end: submit through the API, inspect, stream, edit the curve, re-render."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer import Typer
from typer.testing import CliRunner

from emoflow.web.app import create_app
from emoflow.web.auth import COOKIE
from emoflow.web.limits import Limits
from tests.web.conftest import Inspector, png_bytes

pytestmark = pytest.mark.slow
STAGES = ["plan", "speak", "align", "feel", "render", "publish"]
SCRIPT = "Hello there, my friends. [angry 0.9] This must never happen again!"


@pytest.fixture(scope="module")
def narrated(prefect_api: str, inspector: Inspector) -> dict[str, Any]:
    """One job submitted as a real multipart upload and narrated by the background launcher."""
    from skimage import data

    files = {"portrait": ("me.png", png_bytes(data.astronaut()), "application/octet-stream")}
    form = {"script": SCRIPT, "description": "calm, then furious", "name": "webtest", "size": "256"}
    response = inspector.client.post("/jobs", data=form, files=files, headers=inspector.submitter)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = inspector.wait(job_id)
    assert job["status"] == "succeeded", job
    (run,) = job["runs"]
    return {"job_id": job_id, "run_id": run["id"], "job": job}


def outputs(client: TestClient, run_id: str, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    run = client.get(f"/runs/{run_id}", headers=headers).json()
    return {s["stage"]: s["outputs"] for s in run["steps"]}


def test_submitted_job_runs_every_stage_and_is_recorded_with_its_submitter(
    inspector: Inspector, narrated: dict[str, Any]
) -> None:
    client = inspector.client
    run = client.get(f"/runs/{narrated['run_id']}", headers=inspector.viewer).json()
    assert [s["stage"] for s in run["steps"]] == STAGES
    assert run["computed"] == STAGES and run["job"]["submitter"] == "alice"
    assert run["job"]["options"]["size"] == 256
    # artifacts are addressed by hash only: no filesystem path or file URI anywhere
    text = client.get(f"/runs/{narrated['run_id']}", headers=inspector.viewer).text
    assert "file://" not in text and str(inspector.home) not in text
    # the portrait was sniffed as PNG although the client claimed octet-stream
    portrait = client.get(run["job"]["portrait"], headers=inspector.viewer)
    assert portrait.headers["content-type"] == "image/png"
    events = {e.action: e.actor for e in inspector.store.audit_events()}
    assert events["job.submit"] == "alice"
    listed = client.get("/runs", params={"q": "webtest"}, headers=inspector.viewer).json()
    assert [r["id"] for r in listed] == [narrated["run_id"]]
    assert client.get("/runs", params={"status": "failed"}, headers=inspector.viewer).json() == []


def test_artifacts_stream_by_hash_with_ranges(inspector: Inspector, narrated: dict[str, Any]) -> None:
    client, headers = inspector.client, inspector.viewer
    speech = outputs(client, narrated["run_id"], headers)["speak"]["speech"]
    whole = client.get(speech["url"], headers=headers)
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    assert hashlib.sha256(whole.content).hexdigest() == speech["sha256"]
    assert (
        whole.headers["accept-ranges"] == "bytes" and int(whole.headers["content-length"]) == speech["size"]
    )

    part = client.get(speech["url"], headers=headers | {"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{speech['size']}"
    assert part.content == whole.content[100:200]
    tail = client.get(speech["url"], headers=headers | {"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    beyond = client.get(speech["url"], headers=headers | {"Range": f"bytes={speech['size']}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{speech['size']}"
    cached = client.get(speech["url"], headers=headers | {"If-None-Match": f'"{speech["sha256"]}"'})
    assert cached.status_code == 304

    video = outputs(client, narrated["run_id"], headers)["publish"]["video"]
    seek = client.get(video["url"], headers=headers | {"Range": "bytes=1000-"})
    assert seek.status_code == 206 and len(seek.content) == video["size"] - 1000
    assert seek.headers["content-type"] == "video/mp4"
    assert seek.headers["content-disposition"] == 'inline; filename="video.mp4"'
    head = client.head(video["url"], headers=headers)
    assert (
        head.status_code == 200
        and head.content == b""
        and int(head.headers["content-length"]) == video["size"]
    )

    assert client.get("/artifacts/" + "0" * 64, headers=headers).status_code == 404
    assert client.get("/artifacts/..%2F..%2Fetc%2Fpasswd", headers=headers).status_code == 404
    assert client.get(speech["url"]).status_code == 401


def test_tokens_gate_reads_and_writes(inspector: Inspector, narrated: dict[str, Any]) -> None:
    client = inspector.client
    assert client.get("/runs").status_code == 401
    assert client.get("/runs", headers={"Authorization": "Bearer emo_nope"}).status_code == 401
    form = {"script": "Hi.", "portrait_builtin": "skimage:astronaut"}
    denied = client.post("/jobs", data=form, headers=inspector.viewer)
    assert denied.status_code == 403 and "viewer" in denied.json()["detail"]
    edit = {"edits": [{"index": 0, "label": "happy", "intensity": 0.5}]}
    assert (
        client.post(f"/runs/{narrated['run_id']}/curve", json=edit, headers=inspector.viewer).status_code
        == 403
    )
    # only hashes are stored
    with inspector.store.engine.connect() as connection:
        stored = [row[0] for row in connection.exec_driver_sql("SELECT secret_sha256 FROM api_tokens")]
    assert hashlib.sha256(inspector.viewer_secret.encode()).hexdigest() in stored
    assert inspector.viewer_secret not in stored


def test_uploads_are_limited_and_sniffed(inspector: Inspector) -> None:
    small = Limits(max_upload_bytes=50_000, max_request_bytes=60_000, max_pixels=300 * 300)
    client = TestClient(create_app(inspector.store, small))
    headers = inspector.submitter
    script = {"script": "Hello."}

    def post(content: bytes, name: str = "p.png", kind: str = "image/png") -> Any:
        return client.post("/jobs", data=script, files={"portrait": (name, content, kind)}, headers=headers)

    huge = post(b"\0" * 70_000)  # refused from Content-Length, before parsing
    assert huge.status_code == 413 and "60000" in huge.json()["detail"]
    noise = np.random.default_rng(0).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    big_file = post(png_bytes(noise))  # under the request limit? no: a noisy PNG is ~67 kB
    assert big_file.status_code == 413
    fake = post(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "face.png")
    assert fake.status_code == 415 and "PNG, JPEG or WebP" in fake.json()["detail"]
    gif = io.BytesIO()
    Image.new("RGB", (20, 20)).save(gif, format="GIF")
    assert post(gif.getvalue(), "face.png").status_code == 415
    wide = io.BytesIO()
    Image.new("RGB", (400, 400)).save(wide, format="PNG")
    too_many = post(wide.getvalue())
    assert too_many.status_code == 422 and "160000 pixels" in too_many.json()["detail"]
    no_face = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(no_face, format="JPEG")
    rejected = post(no_face.getvalue(), "x.bin", "text/plain")  # a JPEG, whatever it claims
    assert rejected.status_code == 422 and "face" in rejected.json()["detail"].lower()
    empty = client.post(
        "/jobs", data={"script": " ", "portrait_builtin": "skimage:astronaut"}, headers=headers
    )
    assert empty.status_code == 422 and "script is empty" in empty.json()["detail"]
    engine = client.post(
        "/jobs",
        data={"script": "Hi.", "portrait_builtin": "skimage:astronaut", "tts_engine": "nope"},
        headers=headers,
    )
    assert engine.status_code == 422 and "tts_engine" in engine.json()["detail"]
    rejects = [e for e in inspector.store.audit_events() if e.action == "job.reject"]
    assert rejects and all(e.actor == "alice" for e in rejects)


def test_curve_edit_rerenders_only_render_and_publish(inspector: Inspector, narrated: dict[str, Any]) -> None:
    client, run_id = inspector.client, narrated["run_id"]
    bad = client.post(
        f"/runs/{run_id}/curve",
        json={"edits": [{"index": 0, "label": "grumpy", "intensity": 0.5}]},
        headers=inspector.submitter,
    )
    assert bad.status_code == 422 and "neutral, happy, sad" in bad.json()["detail"]
    outside = client.post(
        f"/runs/{run_id}/curve",
        json={"edits": [{"index": 999, "label": "happy", "intensity": 0.5}]},
        headers=inspector.submitter,
    )
    assert outside.status_code == 422 and "outside" in outside.json()["detail"]
    loud = client.post(
        f"/runs/{run_id}/curve",
        json={"edits": [{"index": 0, "label": "happy", "intensity": 2}]},
        headers=inspector.submitter,
    )
    assert loud.status_code == 422

    edits = [
        {"index": 0, "label": "happy", "intensity": 0.9},
        {"start": 1, "stop": 3, "label": "furious", "intensity": 0.7},  # a synonym of angry
    ]
    response = client.post(f"/runs/{run_id}/curve", json={"edits": edits}, headers=inspector.submitter)
    assert response.status_code == 202, response.text
    new_curve = response.json()["curve"]
    job = inspector.wait(narrated["job_id"])
    assert len(job["runs"]) == 2 and job["runs"][1]["status"] == "succeeded", job
    rerun = client.get(f"/runs/{job['runs'][1]['id']}", headers=inspector.viewer).json()
    steps = {s["stage"]: s for s in rerun["steps"]}
    assert [s["stage"] for s in rerun["steps"]] == STAGES
    assert [st for st in STAGES if not steps[st]["cache_hit"]] == ["feel", "render", "publish"]
    assert steps["feel"]["engine"] == "curve-edit"  # the edit step, not the predictor
    assert steps["feel"]["outputs"]["curve"]["sha256"] == new_curve["sha256"]
    before = outputs(client, run_id, inspector.viewer)
    assert steps["speak"]["outputs"]["speech"]["sha256"] == before["speak"]["speech"]["sha256"]
    assert steps["render"]["outputs"]["frames"]["sha256"] != before["render"]["frames"]["sha256"]

    curve = client.get(f"/runs/{rerun['id']}/curve", headers=inspector.viewer).json()["curve"]
    points = curve["points"]
    assert (points[0]["label"], points[0]["intensity"]) == ("happy", 0.9)
    assert [p["label"] for p in points[1:3]] == ["angry", "angry"]
    assert points[0]["weights"]["edit"] == 1.0 and points[0]["sources"]["edit"] == {"happy": 1.0}
    assert len(points[0]["sources"]) > 1  # the predictor's evidence is kept for the explanation
    edit_events = [e for e in inspector.store.audit_events(run_id=rerun["id"]) if e.action == "curve.edit"]
    assert edit_events and edit_events[0].actor == "alice"
    assert edit_events[0].details["source_run"] == run_id


def test_pages_render_the_run(inspector: Inspector, narrated: dict[str, Any]) -> None:
    client = inspector.browser()
    assert client.get("/ui/runs", follow_redirects=False).headers["location"] == "/ui/login"
    login = client.post("/ui/login", data={"token": inspector.viewer_secret}, follow_redirects=False)
    assert login.status_code == 303 and COOKIE in login.headers["set-cookie"]
    assert "httponly" in login.headers["set-cookie"].lower()

    runs = client.get("/ui/runs", params={"q": "webtest"})
    assert runs.status_code == 200 and narrated["run_id"][:8] in runs.text
    page = client.get(f"/ui/runs/{narrated['run_id']}")
    assert page.status_code == 200
    for needle in ("<svg", "<audio", "<video", "Lineage", "Audit trail", "job.submit", "prosody"):
        assert needle in page.text, needle
    assert "/artifacts/" in page.text and "file://" not in page.text
    # the cookie also opens artifacts, so <audio>/<video> elements can stream them
    speech = outputs(inspector.client, narrated["run_id"], inspector.viewer)["speak"]["speech"]
    assert client.get(speech["url"], headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.get(f"/ui/jobs/{narrated['job_id']}").status_code == 200
    editor = client.get(f"/ui/runs/{narrated['run_id']}/edit")
    assert editor.status_code == 200 and 'name="label_0"' in editor.text
    forbidden = client.post(
        f"/ui/runs/{narrated['run_id']}/edit", data={"label_0": "sad", "intensity_0": "0.5"}
    )
    assert forbidden.status_code == 403
    runs_json = inspector.client.get("/runs", headers=inspector.viewer).json()
    a, b = runs_json[0]["id"], runs_json[-1]["id"]
    compare = client.get("/ui/compare", params={"a": a, "b": b})
    assert compare.status_code == 200 and a[:8] in compare.text and b[:8] in compare.text
    assert client.get("/static/app.js").status_code == 200


def test_submission_page_shows_validation_errors(inspector: Inspector) -> None:
    client = inspector.browser()
    client.post("/ui/login", data={"token": inspector.submitter_secret})
    form = client.get("/ui/submit")
    assert form.status_code == 200 and 'name="portrait"' in form.text
    failed = client.post("/ui/submit", data={"script": "", "portrait_builtin": "skimage:astronaut"})
    assert failed.status_code == 422 and "script is empty" in failed.text


def test_openapi_documents_the_api(inspector: Inspector) -> None:
    paths = inspector.client.get("/openapi.json").json()["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/runs", "/runs/{run_id}", "/runs/{run_id}/curve"} <= set(paths)
    assert "/artifacts/{sha256}" in paths and "/ui/runs" not in paths
    schemas = inspector.client.get("/openapi.json").json()["components"]["schemas"]
    assert {"RunOut", "StepOut", "ArtifactOut", "CurveEditsIn", "JobStatusOut"} <= set(schemas)


def test_tokens_cli_prints_the_secret_once(inspector: Inspector, monkeypatch: pytest.MonkeyPatch) -> None:
    from emoflow.commands.web import register
    from stores.tokens import verify_token

    monkeypatch.setenv("EMOFLOW_HOME", str(inspector.home))
    app = Typer()
    register(app)
    created = CliRunner().invoke(app, ["tokens", "create", "--name", "carol", "--role", "submitter"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    token = verify_token(inspector.store, secret)
    assert token is not None and (token.name, token.role) == ("carol", "submitter")
    again = CliRunner().invoke(app, ["tokens", "create", "--name", "carol"])
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad_role = CliRunner().invoke(app, ["tokens", "create", "--name", "dan", "--role", "admin"])
    assert bad_role.exit_code == 1 and "submitter, viewer" in bad_role.stderr
    listed = CliRunner().invoke(app, ["tokens", "list"])
    assert "carol" in listed.stdout and secret not in listed.stdout


def test_curve_editor_form_saves_changed_words_and_rerenders(
    inspector: Inspector, narrated: dict[str, Any]
) -> None:
    client = inspector.browser()
    client.post("/ui/login", data={"token": inspector.submitter_secret})
    api = inspector.client
    source = api.get(f"/runs/{narrated['run_id']}/curve", headers=inspector.viewer).json()["curve"]
    # the editor posts every row; only the changed one becomes an edit
    form = {f"label_{p['index']}": p["label"] for p in source["points"]}
    form |= {f"intensity_{p['index']}": str(p["intensity"]) for p in source["points"]}
    last = source["points"][-1]["index"]
    form[f"label_{last}"], form[f"intensity_{last}"] = "sad", "0.6"
    saved = client.post(f"/ui/runs/{narrated['run_id']}/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    job = inspector.wait(narrated["job_id"])
    newest = job["runs"][-1]
    assert saved.headers["location"] == f"/ui/runs/{newest['id']}"  # the re-render's page: its progress
    assert newest["status"] == "succeeded" and newest["computed"] == ["feel", "render", "publish"]
    curve = api.get(f"/runs/{newest['id']}/curve", headers=inspector.viewer).json()["curve"]
    changed = [p["index"] for p, q in zip(curve["points"], source["points"], strict=True) if p != q]
    assert changed == [last] and curve["points"][-1]["label"] == "sad"
    bad = client.post(f"/ui/runs/{narrated['run_id']}/edit", data={"label_0": "grumpy", "intensity_0": "0.5"})
    assert bad.status_code == 422 and "unknown emotion" in bad.text
