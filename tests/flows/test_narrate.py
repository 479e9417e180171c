"""The narrate flow end to end on the real embedded engines, through the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from typer.testing import CliRunner

from emoflow.cli import app
from flows.narrate import narrate
from kernel.jobs import parse_job
from kernel.settings import get_settings
from models.audio import read_wav
from models.evaluate import metrics
from models.evaluate.speech import frame_energy
from models.publish.video import probe
from models.types import Speech, Timings
from models.vision.face import detect_landmarks
from tasks.context import open_store
from tasks.intake import submit_job

pytestmark = pytest.mark.slow
STAGES = ["plan", "speak", "align", "feel", "render", "publish"]
SCRIPT = "Hello there, my friends. [angry 0.9] This must never happen again!"


def make_spec(tmp_path: Path, script: str = SCRIPT, **fields: object) -> object:
    data = {"name": "t", "script": script, "portrait": "skimage:astronaut", "size": 256, **fields}
    return parse_job(data, tmp_path)


def test_narrate_publishes_a_talking_video_and_a_rerun_computes_nothing(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, output_dir="out")
    job_id = submit_job(spec, get_settings(), open_store())
    result = narrate(job_id)

    # every stage ran once, in the paper's order, and each committed its outputs
    shown = CliRunner().invoke(app, ["show", result.run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert [s["stage"] for s in document["steps"]] == STAGES
    for step in document["steps"]:
        assert step["status"] == "succeeded" and not step["cache_hit"]
        assert step["engine"] and step["engine_version"] and len(step["cache_key"]) == 64
        # what the engine identity covers: its source always, its tables where it reads any
        assert len(step["engine_digests"]["source"]) == 64
        assert step["artifacts"] and all(len(a["sha256"]) == 64 for a in step["artifacts"])
    covered = {s["stage"]: set(s["engine_digests"]) for s in document["steps"]}
    assert {"table:facs.yaml", "table:visemes.yaml"} <= covered["render"]
    assert "table:emotions.yaml" in covered["plan"] and "model:voice.onnx" in covered["speak"]

    # the MP4 has both streams and lasts as long as the speech
    store = open_store()
    record = store.run(result.run_id)
    outputs = {s.stage: s.outputs for s in record.steps}
    samples, rate = read_wav(store.read_bytes(outputs["speak"]["speech"].sha256))
    speech_s = len(samples) / rate
    video = Path(result.published["video.mp4"])
    assert video.parent == tmp_path / "out"
    info = probe(video)
    assert info["has_video"] and info["has_audio"]
    assert abs(info["duration"] - speech_s) / speech_s < 0.05
    for name in ("curve.png", "curve.json", "captions.vtt", "speech.wav", "plan.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0

    # the planned anger reaches the curve
    curve = json.loads((tmp_path / "out" / "curve.json").read_text())
    labels = {p["text"].lower(): p["label"] for p in curve["points"]}
    assert labels["never"] == "angry" and labels["hello"] != "angry"

    # the mouth moves with the speech: mouth-region change tracks speech energy
    assert mouth_energy_correlation(store.blob_path(outputs["render"]["frames"].sha256), samples, rate) > 0.3

    # publish left a Prefect markdown summary with every stage and its artifact hashes
    key = f"narration-{result.run_id[:8]}"
    with get_client(sync_client=True) as client:
        (summary,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert summary.type == "markdown"
    assert f"/ui/runs/{result.run_id}" in summary.data
    for step in record.steps:
        assert f"| {step.stage} |" in summary.data
        assert all(ref.sha256[:12] in summary.data for ref in step.outputs.values())

    # an identical re-run, and an identical new job, recompute nothing
    again = narrate(job_id)
    assert all(s.cache_hit for s in store.run(again.run_id).steps)
    twin = narrate(submit_job(spec, get_settings(), store))
    twin_steps = store.run(twin.run_id).steps
    assert [s.stage for s in twin_steps] == STAGES and all(s.cache_hit for s in twin_steps)
    assert Path(twin.published["video.mp4"]).read_bytes() == video.read_bytes()


def mouth_energy_correlation(frames_mp4: Path, samples: np.ndarray, rate: int, fps: int = 25) -> float:
    """Correlation of the rendered lips' opening (re-detected by the face mesh) with speech energy,
    measured as `emoflow evaluate render` measures lip sync (frame-centred 40 ms RMS)."""
    reader = imageio_ffmpeg.read_frames(str(frames_mp4))
    width, height = next(reader)["size"]
    opening = []
    for raw in reader:
        points = detect_landmarks(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
        assert points is not None, "the rendered face must stay detectable"
        opening.append(metrics.mouth_opening(points))
    energy = frame_energy(Speech(samples, rate, Timings(words=[])), fps, len(opening))
    return metrics.correlation(np.array(opening), energy)


def test_unknown_emotion_tag_fails_the_plan_step_and_commits_nothing(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submission refuses such a tag (tests/test_cli_input.py); a job accepted without that check (queued
    by an older version) still fails at plan, once, with nothing committed."""
    monkeypatch.setattr("tasks.intake.check_script", lambda script: None)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("script: '[grumpy] Hello there.'\nportrait: skimage:astronaut\nsize: 256\n")
    result = CliRunner().invoke(app, ["narrate", str(job_file)])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "grumpy" in message and "neutral, happy, sad, angry, fear, surprise, disgust" in message

    store = open_store()
    (run,) = store.list_runs()
    assert run.status == "failed"
    (plan,) = run.steps
    assert plan.stage == "plan" and plan.status == "failed" and plan.outputs == {}
    assert plan.attempts == 1  # bad input is not retried
    actions = [e.action for e in store.audit_events(run_id=run.id)]
    assert actions[-2:] == ["step.fail", "run.fail"]


def test_killed_during_render_a_rerun_recomputes_only_render_and_publish(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    job_file = tmp_path / "job.yaml"
    script = (
        "We waited all night for the boats to come home. In the morning the harbour was empty and silent."
    )
    job_file.write_text(f"script: '{script}'\nportrait: skimage:astronaut\noutput_dir: out\n")
    env = {**os.environ, "EMOFLOW_HOME": str(emoflow_home), "PREFECT_API_URL": prefect_api}
    process = subprocess.Popen(
        [sys.executable, "-m", "emoflow.cli", "narrate", str(job_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    database = get_settings().resolved_database_url
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if render_status(database) == "running":
                time.sleep(0.3)  # well inside the render
                break
            time.sleep(0.05)
        assert process.poll() is None, f"narrate ended before render started: {process.stderr.read()}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert render_status(database) == "running"  # killed mid-step: never marked done

    store = open_store()
    (job_id,) = {r.job.id for r in store.list_runs()}
    result = narrate(job_id)
    steps = {s.stage: s for s in store.run(result.run_id).steps}
    computed = [stage for stage in STAGES if not steps[stage].cache_hit]
    assert computed == ["render", "publish"]
    assert Path(result.published["video.mp4"]).stat().st_size > 0


def render_status(database_url: str) -> str | None:
    """The newest render step's status, read over a connection of its own (SQLite or PostgreSQL)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = "SELECT status FROM steps WHERE stage = 'render' ORDER BY id DESC"
            row = connection.execute(text(query)).first()
    except (OperationalError, ProgrammingError):  # schema not migrated yet, or the writer holds a lock
        return None
    finally:
        engine.dispose()
    return row[0] if row else None
