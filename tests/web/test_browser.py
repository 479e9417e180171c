"""The inspector in a real browser: Debian's Chromium driven by Playwright against `emoflow serve`'s app."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from emoflow.web.app import create_app
from stores.tokens import create_token
from tasks.context import open_store
from tests.web.conftest import csp_violations, log_in, png_bytes

CHROMIUM = shutil.which("chromium")
# headless, and no background traffic: this machine's network is closed
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
SCRIPT = "The boats came home late. Nobody had expected them back so soon."
WORDS = 12

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture
def inspector_url(prefect_api: str, emoflow_home: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def wait_for_runs(job_id: str, count: int, timeout: float = 180.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = open_store().job_runs(job_id)
        if len(runs) >= count and all(r.status != "running" for r in runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish {count} run(s) within {timeout} s")


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_submit_play_inspect_and_edit_in_a_browser(inspector_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright
    from skimage import data

    _, secret = create_token(open_store(), "browser-test", "submitter", "pytest")
    # a real upload (issue #18: the form's upload was once always refused); resized, so its bytes
    # are not the built-in astronaut's, and still large enough for the face check
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(data.astronaut(), size=400))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        blocked = csp_violations(page)

        log_in(page, inspector_url, secret)

        # submit a job through the form
        page.goto(f"{inspector_url}/ui/submit")
        page.fill("textarea[name=script]", SCRIPT)
        page.fill("textarea[name=description]", "calm at first, sad at the end")
        page.set_input_files("input[name=portrait]", str(face))
        page.select_option("select[name=tts_engine]", "espeak")
        page.fill("input[name=size]", "128")
        page.click("button:has-text('Submit and narrate')")
        page.wait_for_url("**/ui/jobs/*")
        job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        (run,) = wait_for_runs(job_id, 1)
        assert run.status == "succeeded"
        assert open_store().job(job_id).portrait_sha256 == hashlib.sha256(face.read_bytes()).hexdigest()

        # the run page: the speech plays, and the curve shows every word
        page.goto(f"{inspector_url}/ui/runs/{run.id}")
        played = page.evaluate(
            """async () => {
                const audio = document.querySelector('audio');
                audio.muted = true;
                await audio.play();
                await new Promise(resolve => setTimeout(resolve, 800));
                return audio.currentTime;
            }"""
        )
        assert played > 0.2
        assert page.locator("svg g.word").count() == WORDS
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

        # edit one word's emotion: only the edit, render and publish run again
        page.goto(f"{inspector_url}/ui/runs/{run.id}/edit")
        page.click("details.word-table summary")  # editor.js folds the word table away
        page.select_option("select[name=label_3]", "angry")
        page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
        page.click("button:has-text('Save curve and re-render')")
        _, second = wait_for_runs(job_id, 2)
        # the pages work within their policy: nothing they use is blocked
        for path in ("/ui/runs", f"/ui/runs/{run.id}", f"/ui/jobs/{job_id}", "/ui/submit", "/docs"):
            page.goto(f"{inspector_url}{path}")
        assert blocked == []
        browser.close()

    assert second.status == "succeeded"
    assert [s.stage for s in second.steps if not s.cache_hit] == ["feel", "render", "publish"]
    edited = next(s for s in second.steps if s.stage == "feel")
    assert edited.engine == "curve-edit"
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("run.png", "edit.png"))
