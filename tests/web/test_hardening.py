"""Issue #18's lower-severity findings: security headers and a CSP the pages live within, HTML error
pages for the UI, HEAD on every GET route, plain 415 messages, and /docs without a CDN.
The run is recorded straight into the store: no flow runs."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from emoflow.web.app import create_app
from stores.records import NewArtifact
from tests.web.conftest import Inspector

CURVE = {
    "labels": ["neutral", "angry"],
    "engine": "test",
    "points": [
        {
            "index": i,
            "text": word,
            "start": 0.4 * i,
            "end": 0.4 * i + 0.35,
            "label": label,
            "intensity": 0.3 + 0.2 * i,
            "distribution": {label: 1.0},
            "sources": {"lexicon": {label: 1.0}},
            "weights": {"lexicon": 1.0},
        }
        for i, (word, label) in enumerate([("Stop", "angry"), ("right", "neutral"), ("there", "grumpy")])
    ],
}
READINGS = [
    {"phrase": "angry", "label": "angry", "intensity": 0.8, "how": "lexicon", "where": "all", "words": 3}
]


@pytest.fixture(scope="module")
def run_id(inspector: Inspector) -> str:
    """A run with a plan, speech and a curve, so every partial of the run pages renders."""
    store = inspector.store
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    job_id = store.submit_job(
        name="hardening", submitter="alice", script="Stop right there.", description="angry",
        portrait=portrait, options={},
    )  # fmt: skip
    run = store.start_run(job_id, None)
    common = {"run_id": run, "engine_version": "1", "params": {}, "inputs": {"portrait": portrait}}
    metadata = {"words": 3, "warnings": ["a warning"], "readings": READINGS}
    outputs = {
        "plan": NewArtifact("plan", "plan", "application/json", data=b"{}", metadata=metadata),
        "speak": NewArtifact("speech", "speech", "audio/wav", data=b"RIFF speech"),
        "feel": NewArtifact("curve", "curve", "application/json", data=json.dumps(CURVE).encode()),
    }
    for n, (stage, artifact) in enumerate(outputs.items()):
        step = store.begin_step(stage=stage, engine="test", cache_key=f"{n + 7}" * 64, **common)
        store.commit_step(step, [artifact])
    store.finish_run(run)
    return run


@pytest.fixture(scope="module")
def viewer(inspector: Inspector) -> TestClient:
    return inspector.logged_in(inspector.viewer_secret)


@pytest.fixture(scope="module")
def submitter(inspector: Inspector) -> TestClient:
    return inspector.logged_in(inspector.submitter_secret)


def page_urls(inspector: Inspector, run_id: str) -> list[str]:
    job_id = inspector.store.run(run_id).job.id
    return [
        "/ui/runs",
        f"/ui/runs/{run_id}",
        f"/ui/runs/{run_id}/edit",
        f"/ui/jobs/{job_id}",
        f"/ui/compare?a={run_id}&b={run_id}",
        "/ui/submit",
        "/ui/login",
        "/ui/runs/no-such-run",  # the error page
    ]


class InlineFinder(HTMLParser):
    """What a `script-src 'self'; style-src 'self'` policy would block: inline scripts, <style>
    elements, style attributes and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")]


def test_pages_send_a_csp_frame_and_sniffing_headers(
    inspector: Inspector, submitter: TestClient, run_id: str
) -> None:
    for url in page_urls(inspector, run_id):
        response = submitter.get(url)
        assert response.headers["content-type"].startswith("text/html"), url
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, url
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy, url
        assert response.headers["x-frame-options"] == "DENY", url
        assert response.headers["x-content-type-options"] == "nosniff", url


def test_pages_have_nothing_inline_the_csp_would_block(
    inspector: Inspector, submitter: TestClient, run_id: str
) -> None:
    for url in page_urls(inspector, run_id):
        finder = InlineFinder()
        finder.feed(submitter.get(url).text)
        assert finder.found == [], url


def test_colours_and_stage_widths_come_from_classes(
    inspector: Inspector, viewer: TestClient, run_id: str
) -> None:
    page = viewer.get(f"/ui/runs/{run_id}").text
    assert '<i class="swatch emo-angry"></i>angry' in page  # evidence table and plan readings
    assert '<i class="swatch emo-grumpy"></i>grumpy' in page  # no rule for it: .swatch's grey
    assert re.search(r'class="stage stage-succeeded grow-\d+"', page)
    assert '<link rel="stylesheet" href="/ui/page.css">' in page
    sheet = inspector.client.get("/ui/page.css")  # no token needed: it holds no data
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")
    assert ".emo-angry { background: #d62728; }" in sheet.text
    assert ".grow-2 { flex-grow: 2; }" in sheet.text and ".grow-100 { flex-grow: 100; }" in sheet.text


def test_the_json_api_and_artifacts_keep_their_own_headers(inspector: Inspector, run_id: str) -> None:
    run = inspector.client.get(f"/runs/{run_id}", headers=inspector.viewer)
    assert "x-frame-options" not in run.headers  # JSON is not framed: nothing to add
    speech = run.json()["steps"][1]["outputs"]["speech"]["url"]
    blob = inspector.client.get(speech, headers=inspector.viewer)
    assert blob.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_ui_errors_are_html_pages(viewer: TestClient) -> None:
    for url, code, needle in [
        ("/ui/runs/no-such-run", 404, "no run &#39;no-such-run&#39;"),
        ("/ui/jobs/no-such-job", 404, "no job no-such-job"),
        ("/ui/runs/no-such-run/edit", 404, "no run"),
        ("/ui/no-such-page", 404, "Not Found"),
        ("/ui/compare?a=x", 422, "b: Field required"),
    ]:
        response = viewer.get(url)
        assert response.status_code == code, url
        assert response.headers["content-type"].startswith("text/html"), url
        assert needle in response.text and "<header>" in response.text, url
        assert '{"detail"' not in response.text, url


def test_api_errors_stay_json(inspector: Inspector) -> None:
    missing = inspector.client.get("/runs/no-such-run", headers=inspector.viewer)
    assert missing.status_code == 404 and "no run" in missing.json()["detail"]
    assert inspector.client.get("/no-such-route").json() == {"detail": "Not Found"}


def test_logged_out_pages_still_redirect_to_the_login(inspector: Inspector) -> None:
    response = inspector.browser().get("/ui/runs/no-such-run", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"


def test_head_answers_every_get_route(inspector: Inspector, viewer: TestClient, run_id: str) -> None:
    for client, url, headers in [
        (viewer, "/ui/runs", {}),
        (viewer, f"/ui/runs/{run_id}", {}),
        (inspector.client, f"/runs/{run_id}", inspector.viewer),
        (inspector.client, f"/runs/{run_id}/curve", inspector.viewer),
        (inspector.client, "/openapi.json", {}),
        (inspector.client, "/ui/page.css", {}),
    ]:
        got = client.get(url, headers=headers)
        head = client.head(url, headers=headers)
        assert (head.status_code, head.content) == (got.status_code, b""), url
        assert head.headers["content-type"] == got.headers["content-type"], url
        assert head.headers["content-length"] == str(len(got.content)), url
    assert inspector.client.head("/runs").status_code == 401  # HEAD is a read: it needs a token
    assert inspector.client.head("/ui/logout").status_code == 405  # a POST-only route stays so
    assert inspector.client.head("/ui/logout").content == b""


def test_an_unreadable_upload_names_the_accepted_types_without_internals(inspector: Inspector) -> None:
    for content in (b"\x89PNG not really", b"GIF89a nope"):
        files = {"portrait": ("face.png", content, "image/png")}
        response = inspector.client.post(
            "/jobs", data={"script": "Hi."}, files=files, headers=inspector.submitter
        )
        detail = response.json()["detail"]
        assert response.status_code == 415 and "portrait is not a readable image" in detail
        assert "image/png, image/jpeg or image/webp" in detail
        assert " at 0x" not in detail and "<" not in detail and "BytesIO" not in detail


def test_a_decompression_bomb_is_refused_for_its_pixels(inspector: Inspector) -> None:
    """A PNG header claiming 60000 x 60000 pixels: refused as too large (422), not as a bad type."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    files = {"portrait": ("bomb.png", bomb, "image/png")}
    response = inspector.client.post(
        "/jobs", data={"script": "Hi."}, files=files, headers=inspector.submitter
    )
    assert response.status_code == 422 and "too many pixels" in response.json()["detail"]


def test_docs_need_no_cdn_and_say_what_is_missing(
    inspector: Inspector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)  # not installed, whatever this machine has
    docs = TestClient(create_app(inspector.store)).get("/docs")
    assert docs.status_code == 503 and docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui-bundle-v2" in docs.text and 'href="/openapi.json"' in docs.text
    assert "cdn" not in docs.text and "https://" not in docs.text


def test_docs_serve_swagger_ui_from_the_installed_bundle(
    inspector: Inspector, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """swagger-ui-bundle-v2 installs `swagger_ui_bundle`, whose `swagger_ui_path` holds the dist files."""
    (tmp_path / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = function () {};")
    (tmp_path / "swagger-ui.css").write_text("body { margin: 0; }")
    (tmp_path / "favicon-32x32.png").write_bytes(b"\x89PNG")
    bundle = types.ModuleType("swagger_ui_bundle")
    bundle.swagger_ui_path = tmp_path  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", bundle)
    client = TestClient(create_app(inspector.store))
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in docs.text
    assert 'href="/docs/assets/swagger-ui.css"' in docs.text
    assert "https://" not in docs.text  # no CDN, no remote favicon
    assert client.get("/docs/assets/swagger-ui-bundle.js").text.startswith("window.SwaggerUIBundle")
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    # the page's one inline script is allowed by its hash, and nothing else inline is
    (script,) = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = docs.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in policy and "frame-ancestors 'none'" in policy
    assert docs.headers["x-frame-options"] == "DENY"
    assert client.get("/redoc").status_code == 404  # ReDoc only ever came from a CDN
