"""Issue #18, item 3: live per-stage progress (server-sent events and a JSON snapshot), cancel and retry.

The flow tests narrate one real job with the embedded engines; the later jobs share its script, so
their early stages are cache hits and only what a test is about computes. A `Gate` (a kernel.progress
listener) holds a flow at a chosen stage, so a test can act while the run is surely running.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import uvicorn
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client

from emoflow.web.auth import COOKIE
from kernel.errors import InputError
from kernel.progress import listening
from stores.records import NewArtifact
from tests.web.conftest import Inspector
from tests.web.test_browser import CHROMIUM, CHROMIUM_FLAGS

STAGES = ["plan", "speak", "align", "feel", "render", "publish"]
JOB = {
    "script": "The boats came home late. Nobody had expected them back so soon.",
    "description": "calm, then worried",
    "portrait_builtin": "skimage:astronaut",
    "size": "128",
    "fps": "10",
    "tts_engine": "espeak",
}
OTHER_PORT = "http://127.0.0.1:8799"  # same site as the inspector, another origin
SHOTS = Path(__file__).resolve().parents[2] / "outputs" / "inspector"  # screenshots for the closing note


class Gate:
    """Holds the flow's thread when `stage` starts (or when it first reports progress) until released;
    or, with `fail`, makes that stage fail as bad input would (Prefect does not retry it)."""

    def __init__(self, stage: str, on: str = "stage_started", fail: bool = False) -> None:
        self.stage, self.on, self.fail = stage, on, fail
        self.reached, self.released = threading.Event(), threading.Event()

    def _hit(self, stage: str) -> None:
        if stage != self.stage or self.reached.is_set():
            return
        self.reached.set()
        if self.fail:
            raise InputError(f"injected failure at {stage}")
        self.released.wait(60)

    def stage_started(self, stage: str) -> None:
        if self.on == "stage_started":
            self._hit(stage)

    def stage_progress(self, stage: str, _done: int, _total: int) -> None:
        if self.on == "stage_progress":
            self._hit(stage)


def submit(inspector: Inspector, **fields: str) -> str:
    response = inspector.client.post("/jobs", data=JOB | fields, headers=inspector.submitter)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def only_run(inspector: Inspector, job_id: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = inspector.store.job_runs(job_id)
        if runs:
            return str(runs[-1].id)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} started no run within {timeout} s")


def events(lines: Iterator[str]) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(arrival time, event name, data) of each server-sent event."""
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield time.time(), name, json.loads(data)
            name, data = "message", ""


def seconds_after(moment: datetime | None, arrival: float) -> float:
    assert moment is not None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return arrival - aware.timestamp()


def submitter_page(inspector: Inspector) -> TestClient:
    return inspector.logged_in(inspector.submitter_secret)


@pytest.fixture(scope="module")
def streamed(prefect_api: str, inspector: Inspector) -> dict[str, Any]:
    """A real narration followed through its event stream from before its first stage to its end."""
    gate = Gate("plan")
    with listening(gate):
        job_id = submit(inspector, name="live")
        assert gate.reached.wait(60), "the flow never reached plan"
        run_id = only_run(inspector, job_id)
        received = []
        with inspector.client.stream("GET", f"/runs/{run_id}/events", headers=inspector.viewer) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            gate.released.set()
            for arrival, name, data in events(response.iter_lines()):
                received.append((arrival, name, data))
    inspector.wait(job_id)
    return {"job_id": job_id, "run_id": run_id, "events": received}


@pytest.mark.slow
def test_the_event_stream_follows_every_stage_to_the_end(
    inspector: Inspector, streamed: dict[str, Any]
) -> None:
    progress = [(t, data) for t, name, data in streamed["events"] if name == "progress"]
    first, last = progress[0][1], progress[-1][1]
    assert [s["stage"] for s in first["stages"]] == STAGES
    assert first["status"] == "running" and first["done"] == 0
    assert last["status"] == "succeeded" and last["finished"] and last["done"] == 6
    assert streamed["events"][-1][1:] == ("end", {"run_id": streamed["run_id"], "status": "succeeded"})
    # only changes are sent, and stages only move forward
    docs = [data for _, data in progress]
    assert all(a != b for a, b in itertools.pairwise(docs))
    assert [d["done"] for d in docs] == sorted(d["done"] for d in docs)
    assert len(docs) >= 4
    assert any(s["status"] == "running" for d in docs for s in d["stages"])  # feel takes seconds
    # the goal: a stage's end is on the page within 1 s
    run = inspector.store.run(streamed["run_id"])
    for step in run.steps:
        shown = next(t for t, d in progress if d["stages"][STAGES.index(step.stage)]["status"] == "succeeded")
        assert seconds_after(step.finished_at, shown) < 1.0, step.stage
    assert inspector.app.state.progress.open_streams == 0
    snapshot = inspector.client.get(f"/runs/{run.id}/progress", headers=inspector.viewer).json()
    assert snapshot == last


@pytest.mark.slow
def test_cancel_stops_a_running_render_and_retry_reuses_what_was_done(
    inspector: Inspector, streamed: dict[str, Any]
) -> None:
    gate = Gate("render", on="stage_progress")  # a new seed: only render and publish compute
    with listening(gate):
        job_id = submit(inspector, name="cancelled", seed="7")
        assert gate.reached.wait(60), "render never reported progress"
        run_id = only_run(inspector, job_id)
        page = submitter_page(inspector)
        assert 'action="/ui/runs/' + run_id + '/cancel"' in page.get(f"/ui/runs/{run_id}").text
        cancelled = page.post(f"/ui/runs/{run_id}/cancel", follow_redirects=False)
        assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/ui/runs/{run_id}"
        assert "Cancel requested" in page.get(f"/ui/runs/{run_id}").text
        gate.released.set()
        inspector.wait(job_id, timeout=30)
    run = inspector.store.run(run_id)
    assert run.status == "cancelled" and "cancelled by alice" in (run.error or "")
    assert run.job.status == "cancelled"
    with get_client(sync_client=True) as client:  # Prefect's own record says so too, not "Failed"
        state = client.read_flow_run(UUID(run.prefect_flow_run_id)).state
    assert state is not None and state.is_cancelled() and "cancelled by alice" in (state.message or "")
    steps = {s.stage: s for s in run.steps}
    assert list(steps) == ["plan", "speak", "align", "feel", "render"]  # publish never started
    assert all(steps[s].cache_hit for s in ("plan", "speak", "align", "feel"))
    assert steps["render"].status == "failed" and not steps["render"].outputs  # nothing half-written
    actions = [e.action for e in inspector.store.audit_events(run_id)]
    assert "run.cancel_request" in actions and actions[-1] == "run.cancel"
    page = submitter_page(inspector)
    text = page.get(f"/ui/runs/{run_id}").text
    assert "status-cancelled" in text and f'action="/ui/runs/{run_id}/retry"' in text
    # retry: the same job again; everything that finished is reused, the rest computes
    retried = page.post(f"/ui/runs/{run_id}/retry", follow_redirects=False)
    assert retried.status_code == 303, retried.text
    new_run = retried.headers["location"].removeprefix("/ui/runs/")
    assert new_run != run_id and inspector.store.run(new_run).job.id == job_id
    inspector.wait(job_id)
    again = inspector.store.run(new_run)
    assert again.status == "succeeded"
    assert [s.stage for s in again.steps if s.cache_hit] == ["plan", "speak", "align", "feel"]
    assert [s.stage for s in again.steps if not s.cache_hit] == ["render", "publish"]


@pytest.mark.slow
def test_retry_of_a_failed_run_reuses_its_cached_steps(
    inspector: Inspector, streamed: dict[str, Any]
) -> None:
    with listening(Gate("publish", fail=True)):
        job_id = submit(inspector, name="live")  # the same job as `streamed`: every step is committed
        run_id = only_run(inspector, job_id)
        inspector.wait(job_id)
    failed = inspector.store.run(run_id)
    assert failed.status == "failed" and "injected failure" in (failed.error or "")
    response = inspector.client.post(f"/runs/{run_id}/retry", headers=inspector.submitter)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["source_run_id"] == run_id and body["run_id"] not in (None, run_id)
    assert body["page"] == f"/ui/runs/{body['run_id']}"
    inspector.wait(job_id)
    again = inspector.store.run(body["run_id"])
    assert again.status == "succeeded" and [s.stage for s in again.steps] == STAGES
    assert all(s.cache_hit for s in again.steps)  # the job's every step was committed before
    assert "run.retry" in [e.action for e in inspector.store.audit_events(run_id)]


@pytest.mark.slow
def test_a_succeeded_run_cannot_be_retried_or_cancelled(
    inspector: Inspector, streamed: dict[str, Any]
) -> None:
    run_id = streamed["run_id"]
    for action in ("retry", "cancel"):
        response = inspector.client.post(f"/runs/{run_id}/{action}", headers=inspector.submitter)
        assert response.status_code == 409, response.text
        assert "succeeded" in response.json()["detail"]
    page = submitter_page(inspector).post(f"/ui/runs/{run_id}/retry")
    assert page.status_code == 409 and page.headers["content-type"].startswith("text/html")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_run_page_shows_live_bars_in_chromium(inspector: Inspector, streamed: dict[str, Any]) -> None:
    """app.js follows the event stream: the bars move while the run runs, then the page reloads with
    the result. The module's app is served without its lifespan, so the launcher stays the tests'."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(inspector.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    gate = Gate("render")  # a new seed: only render and publish compute
    try:
        with listening(gate), sync_playwright() as playwright:
            job_id = submit(inspector, name="browser", seed="11")
            assert gate.reached.wait(60) and server.started
            run_id = only_run(inspector, job_id)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(f"{url}/ui/login")
            page.fill("input[name=token]", inspector.viewer_secret)
            with page.expect_navigation():
                page.click("button:has-text('Log in')")
            page.goto(f"{url}/ui/runs/{run_id}")
            assert page.locator("#progress progress").count() == 6
            # selectors, not wait_for_function: the pages' CSP refuses the eval that polling needs
            page.locator("#progress[data-seen]").wait_for()
            done = page.locator("[data-field=done]").inner_text()
            assert done == "4", done  # plan to feel reused, shown by app.js from the first event
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "live-progress.png"), full_page=False)
            gate.released.set()
            # the `end` event reloads the page: a succeeded run shows its result, no progress panel
            page.locator("#progress").wait_for(state="detached", timeout=60_000)
            assert "status-succeeded" in page.content()
            browser.close()
        inspector.wait(job_id)
    finally:
        gate.released.set()
        server.should_exit = True
        thread.join(timeout=30)
    assert inspector.store.run(run_id).status == "succeeded"


# -- no flow: runs recorded straight into the store ------------------------------------------------


@pytest.fixture(scope="module")
def recorded(inspector: Inspector) -> dict[str, str]:
    """A running run with plan done and speak under way, and a failed one."""
    store = inspector.store
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    ids = {}
    for name in ("running", "failed"):
        job_id = store.submit_job(
            name=name, submitter="alice", script="Hi.", description="", portrait=portrait, options={}
        )
        run = store.start_run(job_id, None)
        common = {"run_id": run, "engine_version": "1", "params": {}, "inputs": {"portrait": portrait}}
        plan = store.begin_step(stage="plan", engine="rules", cache_key=name[0] * 64, **common)
        store.commit_step(plan, [NewArtifact("plan", "plan", "application/json", data=b"{}")])
        speak = store.begin_step(stage="speak", engine="piper", cache_key=name[1] * 64, **common)
        if name == "failed":
            store.fail_step(speak, "EngineError: no voice")
            store.finish_run(run, error="EngineError: no voice")
        ids[name] = run
    return ids


def test_progress_snapshot_of_a_running_run(inspector: Inspector, recorded: dict[str, str]) -> None:
    doc = inspector.client.get(f"/runs/{recorded['running']}/progress", headers=inspector.viewer).json()
    assert doc["status"] == "running" and not doc["finished"] and doc["done"] == 1
    rows = {s["stage"]: s for s in doc["stages"]}
    assert list(rows) == STAGES
    assert rows["plan"]["status"] == "succeeded" and rows["plan"]["fraction"] == 1.0
    assert rows["speak"]["status"] == "running" and rows["speak"]["fraction"] is None  # no fraction heard
    assert rows["render"] == {
        "stage": "render",
        "status": "waiting",
        "fraction": 0.0,
        "seconds": None,
        "error": None,
    }
    assert inspector.client.get("/runs/nope/progress", headers=inspector.viewer).status_code == 404


def test_the_run_page_has_live_bars_and_forms_for_submitters_only(
    inspector: Inspector, recorded: dict[str, str]
) -> None:
    running, failed = recorded["running"], recorded["failed"]
    page = submitter_page(inspector).get(f"/ui/runs/{running}").text
    assert f'data-events="/runs/{running}/events"' in page
    assert page.count("<progress ") == 6 and '<noscript><meta http-equiv="refresh"' in page
    assert f'<form method="post" action="/ui/runs/{running}/cancel"' in page
    assert "/retry" not in page
    failed_page = submitter_page(inspector).get(f"/ui/runs/{failed}").text
    assert f'<form method="post" action="/ui/runs/{failed}/retry"' in failed_page
    assert "data-events" not in failed_page and "/cancel" not in failed_page
    viewer = inspector.logged_in(inspector.viewer_secret)
    for run_id in (running, failed):
        shown = viewer.get(f"/ui/runs/{run_id}").text
        assert "<progress " in shown and "/cancel" not in shown and "/retry" not in shown


def test_viewers_may_not_cancel_or_retry(inspector: Inspector, recorded: dict[str, str]) -> None:
    viewer = inspector.logged_in(inspector.viewer_secret)
    for action, run_id in (("cancel", recorded["running"]), ("retry", recorded["failed"])):
        api = inspector.client.post(f"/runs/{run_id}/{action}", headers=inspector.viewer)
        assert api.status_code == 403, api.text
        assert viewer.post(f"/ui/runs/{run_id}/{action}").status_code == 403
    assert inspector.store.cancel_requested(recorded["running"]) is None


def test_cross_origin_cancel_and_retry_are_refused(inspector: Inspector, recorded: dict[str, str]) -> None:
    client = TestClient(inspector.app, headers={"Origin": OTHER_PORT})
    client.cookies.set(COOKIE, inspector.submitter_secret)
    for action, run_id in (("cancel", recorded["running"]), ("retry", recorded["failed"])):
        for url in (f"/runs/{run_id}/{action}", f"/ui/runs/{run_id}/{action}"):
            refused = client.post(url)
            assert refused.status_code == 403, url
            assert "cross-origin" in refused.text, url
    assert inspector.store.cancel_requested(recorded["running"]) is None
    assert "run.retry" not in [e.action for e in inspector.store.audit_events(recorded["failed"])]


def test_a_disconnected_stream_is_closed(inspector: Inspector, recorded: dict[str, str]) -> None:
    board = inspector.app.state.progress
    with inspector.client.stream(
        "GET", f"/runs/{recorded['running']}/events", headers=inspector.viewer
    ) as response:
        received = events(response.iter_lines())  # kept: dropping it would close the stream
        _, name, doc = next(received)
        assert name == "progress" and doc["status"] == "running"
        assert board.open_streams == 1
    deadline = time.monotonic() + 5
    while board.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.open_streams == 0


def test_cancel_of_a_run_records_the_request_once(inspector: Inspector, recorded: dict[str, str]) -> None:
    """Last in the file: the recorded running run stays asked to stop (no flow runs to stop it)."""
    run_id = recorded["running"]
    for _ in range(2):
        response = inspector.client.post(f"/runs/{run_id}/cancel", headers=inspector.submitter)
        assert response.status_code == 202 and response.json()["status"] == "cancelling"
    assert [e.action for e in inspector.store.audit_events(run_id)].count("run.cancel_request") == 1
    assert inspector.store.cancel_requested(run_id) == "alice"
    doc = inspector.client.get(f"/runs/{run_id}/progress", headers=inspector.viewer).json()
    assert doc["cancelling"] is True
    page = submitter_page(inspector).get(f"/ui/runs/{run_id}").text
    assert "Cancel requested" in page and "/cancel" not in page
    failed = inspector.client.post(f"/runs/{recorded['failed']}/cancel", headers=inspector.submitter)
    assert failed.status_code == 409 and "retry it instead" in failed.json()["detail"]
    # what the flow does when its stage runner stops: a run asked to stop ends cancelled, not failed
    inspector.store.finish_run(run_id, error="cancelled by alice before speak finished")
    run = inspector.store.run(run_id)
    assert run.status == "cancelled" and run.job.status == "cancelled"
    assert inspector.client.post(f"/runs/{run_id}/cancel", headers=inspector.submitter).status_code == 409
