"""Fixtures for the inspector: one Prefect test server, one store and one narrated job per module."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

ORIGIN = "http://testserver"  # the TestClient's base URL: the inspector's own origin in these tests


@dataclass
class Inspector:
    home: Path
    store: Any
    app: Any
    client: TestClient
    submitter: dict[str, str]  # Authorization headers
    viewer: dict[str, str]
    submitter_secret: str
    viewer_secret: str

    def browser(self) -> TestClient:
        """Another client of the same app (so flows it starts are the ones `wait` sees), with its
        own cookie jar; not entered, so closing it does not shut the app's launcher down. Like a
        browser on the inspector's own pages, it names the inspector as the Origin of what it sends."""
        return TestClient(self.app, headers={"Origin": ORIGIN})

    def logged_in(self, secret: str) -> TestClient:
        browser = self.browser()
        response = browser.post("/ui/login", data={"token": secret}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return browser

    def wait(self, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Poll the job until no flow is queued or running for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/jobs/{job_id}", headers=self.viewer).json()
            if not job["active"]:
                return job
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} still running after {timeout} s")


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    """A fresh EMOFLOW_HOME (module-scoped, unlike tests/conftest.py's emoflow_home) and an app."""
    from emoflow.web.app import create_app
    from stores.tokens import create_token
    from tasks.context import open_store, reset_stores

    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMOFLOW_HOME", str(root / "home"))
        patch.setenv("EMOFLOW_OUTPUT_DIR", str(root / "outputs"))
        reset_stores()
        store = open_store()
        _, submitter = create_token(store, "alice", "submitter", actor="test")
        _, viewer = create_token(store, "victor", "viewer", actor="test")
        app = create_app(store)
        with TestClient(app) as client:
            yield Inspector(
                home=root / "home",
                store=store,
                app=app,
                client=client,
                submitter={"Authorization": f"Bearer {submitter}"},
                viewer={"Authorization": f"Bearer {viewer}"},
                submitter_secret=submitter,
                viewer_secret=viewer,
            )
        reset_stores()


@pytest.fixture
def launched(inspector: Inspector, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids the app would narrate; nothing runs, so no Prefect server is needed."""
    jobs: list[str] = []
    monkeypatch.setattr(inspector.app.state.launcher, "launch", lambda job_id, *_args: jobs.append(job_id))
    return jobs


def png_bytes(image: Any, size: int | None = None) -> bytes:
    """`image` as PNG bytes, resized to `size` x `size` when given."""
    from PIL import Image

    picture = Image.fromarray(image)
    if size is not None:
        picture = picture.resize((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def serving(app: Any, lifespan: str = "off") -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port, for a real browser; yields its base URL.
    lifespan "off" (the default) leaves the app's launcher as the TestClient that entered it has it."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def log_in(page: Any, url: str, secret: str) -> None:
    """Log a Playwright page in to the inspector at `url` with a token's secret."""
    page.goto(f"{url}/ui/login")
    page.fill("input[name=token]", secret)
    with page.expect_navigation():
        page.click("button:has-text('Log in')")


def csp_violations(page: Any) -> list[str]:
    """What the Content-Security-Policy blocks on `page`, as Chromium reports it on the console; the
    list fills as the page runs."""
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return blocked
