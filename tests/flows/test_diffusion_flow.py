"""`narrate --renderer diffusion --weights DIR` on tiny random Hallo-layout weights, through the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emoflow.cli import app
from emoflow.web.app import create_app
from models.publish.video import probe
from models.render.diffusion import write_tiny_weights
from stores.tokens import create_token
from tasks.context import open_store


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_diffusion_renderer_through_the_narrate_flow(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, one_thread: None
) -> None:
    weights = tmp_path / "tiny-weights"
    write_tiny_weights(weights)
    job = tmp_path / "job.yaml"
    job.write_text(
        "script: 'Hi there.'\nportrait: skimage:astronaut\ntts_engine: espeak\noutput_dir: out\nsize: 64\n"
    )
    odd = tmp_path / "odd.yaml"
    odd.write_text(job.read_text().replace("size: 64", "size: 500"))
    args = ["narrate", str(job), "--renderer", "diffusion", "--weights", str(weights), "--steps", "2"]
    runner = CliRunner()

    refused = runner.invoke(app, ["narrate", str(odd), *args[2:]])
    assert refused.exit_code == 1 and "multiple of 64" in refused.stderr
    broken = tmp_path / "broken-weights"
    write_tiny_weights(broken)
    (broken / "hallo" / "net.pth").write_bytes(b"not a checkpoint")
    refused = runner.invoke(app, [*args[:4], "--weights", str(broken), "--steps", "2"])
    assert refused.exit_code == 1 and "hallo/net.pth" in refused.stderr
    assert open_store().list_runs() == []  # refused at submission: nothing written
    result = runner.invoke(app, [*args, "--name", "tiny"])
    assert result.exit_code == 0, result.output
    (run,) = [r for r in open_store().list_runs() if r.status == "succeeded"]
    render = next(step for step in run.steps if step.stage == "render")
    assert render.engine == "diffusion" and render.params["steps"] == 2
    assert len(render.params["weights_sha256"]) == 64
    info = probe(tmp_path / "out" / "video.mp4")
    assert info["has_video"] and info["has_audio"]

    # the inspector shows the run, its render step and the weights' digest
    _, secret = create_token(open_store(), "vera", "viewer", actor="test")
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(open_store())) as client:
        shown = client.get(f"/runs/{run.id}", headers=headers)
        assert shown.status_code == 200
        steps = {step["stage"]: step for step in shown.json()["steps"]}
        assert steps["render"]["engine"] == "diffusion"
        assert steps["render"]["params"]["weights_sha256"] == render.params["weights_sha256"]

    # a changed file the renderer reads, new cache key: the render runs again; speech and curve are reused
    (weights / "emoflow.json").write_text((weights / "emoflow.json").read_text() + "\n")
    again = runner.invoke(app, [*args, "--name", "tiny"])
    assert again.exit_code == 0, again.output
    newest = open_store().list_runs()[0]
    recomputed = [s.stage for s in newest.steps if not s.cache_hit]
    # the edit leaves the model as it was, so identical frames let publish be reused
    assert recomputed[0] == "render" and set(recomputed) <= {"render", "publish"}


def test_diffusion_without_weights_is_refused_at_submission(emoflow_home: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("script: 'Hi.'\nportrait: skimage:astronaut\nrenderer: diffusion\n")
    result = CliRunner().invoke(app, ["narrate", str(job)])
    assert result.exit_code == 1 and "needs weights" in result.stderr
