"""Issue #18, item 2: the run page as a delivery page.

A finished run's page leads with what it delivered: the video with its captions as a <track>, the
portrait beside it, and downloads under real file names; then the plan's warnings and readings, the
curve, the stages; lineage, cache keys and audit folded below. One demo-like job is narrated for the
module (espeak, 128 px), and Chromium opens its page through a real server.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from emoflow.web import views
from stores.records import NewArtifact
from tests.web.conftest import Inspector, csp_violations, log_in, serving
from tests.web.test_browser import CHROMIUM, CHROMIUM_FLAGS
from tests.web.test_live_progress import SHOTS

NAME = "harbour-speech"  # job names are [A-Za-z0-9._-] already; the download name sanitises anyway
JOB = {
    "name": NAME,
    "script": (
        "Good evening, and thank you for being here. They promised us the harbour would be safe, "
        "and they broke that promise. Never again will we stay silent. "
        "We lost three friends that night, and we miss them every single day."
    ),
    "description": 'calm at first, angry at "never again", sad at the end',
    "portrait_builtin": "skimage:astronaut",
    "tts_engine": "espeak",
    "size": "128",
    "fps": "10",
}


@pytest.fixture(scope="module")
def delivered(prefect_api: str, inspector: Inspector) -> dict[str, Any]:
    response = inspector.client.post("/jobs", data=JOB, headers=inspector.submitter)
    assert response.status_code == 202, response.text
    job = inspector.wait(response.json()["job_id"])
    assert job["status"] == "succeeded", job
    (run,) = job["runs"]
    record = inspector.store.run(run["id"])
    publish = next(s for s in record.steps if s.stage == "publish")
    return {"run_id": record.id, "run": record, "outputs": publish.outputs}


def expected_names(run_id: str) -> dict[str, str]:
    stem = f"{NAME}-{run_id[:8]}"
    return {
        "Video": f"{stem}.mp4",
        "Speech": f"{stem}-speech.wav",
        "Captions": f"{stem}.vtt",
        "Emotion curve": f"{stem}-curve.json",
        "Curve plot": f"{stem}-curve.png",
    }


@pytest.mark.slow
def test_the_page_puts_the_result_first_and_folds_the_audit(
    inspector: Inspector, delivered: dict[str, Any]
) -> None:
    run_id, outputs = delivered["run_id"], delivered["outputs"]
    text = inspector.logged_in(inspector.viewer_secret).get(f"/ui/runs/{run_id}").text
    video, captions = outputs["video"].sha256, outputs["captions"].sha256
    order = [
        text.index('id="result"'),
        text.index(f'playsinline width="128" height="128" src="/artifacts/{video}"'),
        text.index(
            f'<track kind="captions" label="Captions" srclang="en" src="/artifacts/{captions}" default>'
        ),
        text.index(f'src="/artifacts/{delivered["run"].job.portrait_sha256}"'),
        text.index('id="plan"'),
        text.index('<svg class="curve"'),
        text.index("<h2>Stages</h2>"),
        text.index('<details class="fold" id="lineage">'),
        text.index('<details class="fold" id="cache-keys">'),
        text.index('<details class="fold" id="audit">'),
    ]
    assert order == sorted(order)
    assert 'id="progress"' not in text  # a finished run shows its result, not its progress
    assert '<details class="fold" id="lineage" open' not in text
    for label, name in expected_names(run_id).items():
        assert f'download="{name}">{label}</a>' in text, label
        assert f"?name={name}&amp;download=1" in text, label


@pytest.mark.slow
def test_captions_are_webvtt_and_downloads_are_attachments(
    inspector: Inspector, delivered: dict[str, Any]
) -> None:
    captions = inspector.client.get(
        f"/artifacts/{delivered['outputs']['captions'].sha256}", headers=inspector.viewer
    )
    assert captions.status_code == 200
    assert captions.headers["content-type"].startswith("text/vtt")
    assert captions.text.startswith("WEBVTT\n") and " --> " in captions.text
    video = delivered["outputs"]["video"].sha256
    name = expected_names(delivered["run_id"])["Video"]
    saved = inspector.client.get(
        f"/artifacts/{video}", params={"name": name, "download": "1"}, headers=inspector.viewer
    )
    assert saved.headers["content-disposition"] == f'attachment; filename="{name}"'
    shown = inspector.client.get(f"/artifacts/{video}", params={"name": name}, headers=inspector.viewer)
    assert shown.headers["content-disposition"] == f'inline; filename="{name}"'  # as before


def test_a_download_name_cannot_inject_headers(inspector: Inspector) -> None:
    ref = inspector.store.put_artifact(NewArtifact("captions", "captions", "text/vtt", data=b"WEBVTT\n\n"))
    hostile = "x\"; filename*=UTF-8''evil.exe\r\nSet-Cookie: a=b"
    response = inspector.client.get(
        f"/artifacts/{ref.sha256}", params={"name": hostile, "download": "true"}, headers=inspector.viewer
    )
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+\.vtt"', disposition), disposition
    assert "set-cookie" not in response.headers


def test_an_unfinished_run_keeps_its_progress_first(inspector: Inspector) -> None:
    """A run recorded straight into the store, still at speak: no result yet, the live bars lead."""
    store = inspector.store
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    job_id = store.submit_job(
        name="unfinished", submitter="alice", script="Hi.", description="", portrait=portrait, options={}
    )
    run_id = store.start_run(job_id, None)
    step = store.begin_step(
        stage="plan",
        engine="rules",
        cache_key="d" * 64,
        run_id=run_id,
        engine_version="1",
        params={},
        inputs={"portrait": portrait},
    )
    store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=b"{}")])
    text = inspector.logged_in(inspector.viewer_secret).get(f"/ui/runs/{run_id}").text
    assert 'id="progress"' in text and 'id="result"' not in text and "<video" not in text
    assert text.index('id="progress"') < text.index('id="plan"') < text.index('id="lineage"')
    store.finish_run(run_id, error="abandoned by the test")


PAGE_STATE = """async () => {
    const wait = (target, events, ms) => new Promise((done) => {
        events.forEach((name) => target.addEventListener(name, done, { once: true }));
        setTimeout(done, ms);
    });
    const video = document.querySelector("video");
    if (video.readyState < 1) await wait(video, ["loadedmetadata", "error"], 20000);
    const track = video.querySelector("track");
    if (track.readyState < 2) await wait(track, ["load", "error"], 20000);
    const img = document.querySelector(".delivery-portrait img");
    await img.decode().catch(() => null);
    const cues = video.textTracks.length ? video.textTracks[0].cues : null;
    const folded = ["lineage", "cache-keys", "audit"].map((id) => {
        const el = document.getElementById(id);
        return { id, tag: el.tagName, open: el.open, afterResult:
            Boolean(document.getElementById("result").compareDocumentPosition(el) & 4) };
    });
    const labels = [...document.querySelectorAll("svg.curve text.wordlabel")].map((t) => {
        const box = t.getBBox();
        return { text: t.textContent, x: box.x, y: box.y, w: box.width, h: box.height,
                 length: t.getComputedTextLength() };
    });
    const bars = [...document.querySelectorAll("svg.curve g.word rect")].map((r) => ({
        label: r.parentElement.dataset.label, h: r.getBBox().height,
        opacity: Number(getComputedStyle(r).fillOpacity) }));
    return {
        firstMedia: document.querySelector("video, audio, img, svg") === video,
        readyState: video.readyState, videoError: video.error && video.error.code,
        tracks: [...video.textTracks].map((t) => ({ kind: t.kind, mode: t.mode })),
        trackReadyState: track.readyState, cues: cues ? cues.length : 0,
        firstCue: cues && cues.length ? cues[0].getCueAsHTML().textContent : null,
        portraitWidth: img.naturalWidth, folded, labels, bars,
        words: document.querySelectorAll("svg.curve g.word").length,
        downloads: [...document.querySelectorAll("a.download")].map((a) => ({
            label: a.textContent, name: a.getAttribute("download"), href: a.getAttribute("href") })),
    };
}"""


def overlapping(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_delivery_page_in_chromium(inspector: Inspector, delivered: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    run_id = delivered["run_id"]
    with serving(inspector.app) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        blocked = csp_violations(page)
        log_in(page, url, inspector.viewer_secret)
        page.goto(f"{url}/ui/runs/{run_id}")
        state = page.evaluate(PAGE_STATE)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "delivery-page.png"), full_page=True)
        # the download links: what the server sends for each is an attachment under that name
        dispositions = {
            d["name"]: page.request.get(f"{url}{d['href']}").headers.get("content-disposition")
            for d in state["downloads"]
        }
        browser.close()

    # the video comes first and plays, with its captions loaded as a track
    assert state["firstMedia"], "the published video is not the page's first media element"
    assert state["readyState"] >= 1 and not state["videoError"], state
    assert state["tracks"] == [{"kind": "captions", "mode": "showing"}]
    assert state["trackReadyState"] == 2 and state["cues"] > 0, state
    assert state["firstCue"] and state["firstCue"].split()[0] in JOB["script"]
    assert state["portraitWidth"] > 0
    # downloads under real names, served as attachments under those names
    assert {d["label"]: d["name"] for d in state["downloads"]} == expected_names(run_id)
    assert dispositions == {name: f'attachment; filename="{name}"' for name in dispositions}
    # lineage, cache keys and audit are folded (closed) below the result
    assert state["folded"] == [
        {"id": i, "tag": "DETAILS", "open": False, "afterResult": True}
        for i in ("lineage", "cache-keys", "audit")
    ]
    # the curve: every word has a visible bar (neutral ones included); no two word labels overlap,
    # as Chromium lays them out, and views.text_width never under-estimates a label
    assert len(state["bars"]) == state["words"] >= 30
    assert all(
        b["h"] >= views.MIN_BAR - 0.01 and b["opacity"] >= views.MIN_OPACITY - 0.01 for b in state["bars"]
    )
    assert any(b["label"] == "neutral" for b in state["bars"])
    labels = state["labels"]
    assert len(labels) >= 0.7 * state["words"], (len(labels), state["words"])
    for i, a in enumerate(labels):
        assert a["length"] <= views.text_width(a["text"]), a
        for b in labels[i + 1 :]:
            assert not overlapping(a, b), (a, b)
    assert blocked == []
