"""Batches: one failed or malformed job never stops the others; a re-run reuses everything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoflow.cli import app
from flows.batch import drain_queue, make_task_runner, run_manifest
from kernel.errors import InputError
from kernel.jobs import parse_job
from kernel.manifest import load_manifest
from kernel.settings import get_settings
from kernel.threads import available_cores, engine_threads, onnx_intra_op_threads, threads_per_worker
from tasks.context import open_store
from tasks.intake import submit_job

ROW = "{id},{script},skimage:astronaut,espeak,128,out/{id}\n"


def test_manifest_batch_isolates_failures_and_reruns_from_the_store(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "id,script,portrait,tts_engine,size,output_dir\n"
        + ROW.format(id="calm", script="Good morning.")
        + ROW.format(id="grumpy", script="[grumpy] Hello.")
        + "lost,Where is my face?,missing.png,espeak,128,out/lost\n"
        + ROW.format(id="angry", script="[angry] Never again!"),
        encoding="utf-8",
    )
    outcomes = run_manifest(load_manifest(manifest), workers=2)
    assert [(o.row_id, o.status) for o in outcomes] == [
        ("calm", "succeeded"),
        ("grumpy", "rejected"),  # a bad tag is refused at submission, as a missing portrait is
        ("lost", "rejected"),
        ("angry", "succeeded"),
    ]
    assert outcomes[1].where == "jobs.csv:3" and "unknown emotion" in (outcomes[1].error or "")
    assert outcomes[2].where == "jobs.csv:4" and "missing.png" in (outcomes[2].error or "")
    assert all(Path(o.video).is_file() for o in outcomes if o.status == "succeeded")

    again = run_manifest(load_manifest(manifest), workers=2)
    assert [o.computed_steps for o in again if o.status == "succeeded"] == [0, 0]


def test_queued_jobs_are_drained_once(prefect_api: str, emoflow_home: Path, tmp_path: Path) -> None:
    store = open_store()
    job = {"portrait": "skimage:astronaut", "tts_engine": "espeak", "size": 128}
    job_ids = [
        submit_job(parse_job({**job, "script": script}, tmp_path), get_settings(), store, queued=True)
        for script in ("Queued hello.", "Queued again.")
    ]
    assert [store.job(job_id).status for job_id in job_ids] == ["pending", "pending"]
    (first,) = drain_queue(limit=1, workers=2)  # the limit caps the workers, each claiming one job at a time
    assert first.status == "succeeded" and first.job_id in job_ids
    (left,) = (job_id for job_id in job_ids if job_id != first.job_id)
    assert store.job(left).status == "pending"
    (second,) = drain_queue(workers=2)
    assert second.status == "succeeded" and second.job_id == left
    assert drain_queue() == []  # nothing left to claim


def test_thread_budget_shares_the_cores_among_workers() -> None:
    cores = available_cores()
    assert threads_per_worker(1) == cores
    assert threads_per_worker(2) == max(1, cores // 2)
    assert threads_per_worker(4 * cores) == 1  # never zero
    assert threads_per_worker(2, engine_threads=3) == 3  # the setting wins


def test_thread_budget_reaches_torch_opencv_onnxruntime_and_child_processes() -> None:
    import cv2
    import torch

    from models.tts.piper_engine import PiperEngine

    before = (torch.get_num_threads(), cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS"))
    with engine_threads(1):
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == "1"
        session = PiperEngine(reshape=False).voice.session  # a voice loaded under the budget
        assert session.get_session_options().intra_op_num_threads == 1
    assert (torch.get_num_threads(), cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS")) == before
    assert onnx_intra_op_threads() == 0  # sessions created later get onnxruntime's default again


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_batch_cli_reports_every_row_and_exits_nonzero_on_failure(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "- {id: ok, script: Hi there., portrait: skimage:astronaut, tts_engine: espeak, size: 128}\n"
        "- {id: cat, script: Meow., portrait: 'skimage:chelsea', tts_engine: espeak, size: 128}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["batch", str(manifest)])
    assert result.exit_code == 1
    assert "1 of 2 jobs narrated" in result.stdout
    assert "no human face" in result.stdout


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_dask_runner_narrates_jobs_in_two_worker_processes(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # worker processes report to the same server
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "id,script,portrait,tts_engine,size,output_dir\n"
        + ROW.format(id="one", script="First of two.")
        + ROW.format(id="two", script="Second of two."),
        encoding="utf-8",
    )
    outcomes = run_manifest(load_manifest(manifest), task_runner=make_task_runner("dask", 2))
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"], outcomes
    assert all(Path(o.video).is_file() for o in outcomes)


def test_dask_runner_without_a_server_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(InputError, match="PREFECT_API_URL"):
        make_task_runner("dask", 2)


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_render_concurrency_limit_serialises_renders(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    monkeypatch.setenv("EMOFLOW_RENDER_TAGS", "render,gpu")  # tags are opt-in
    get_settings.cache_clear()

    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "id,script,portrait,tts_engine,size,output_dir\n"
        + ROW.format(id="first", script="One render at a time please.")
        + ROW.format(id="second", script="The second render waits its turn."),
        encoding="utf-8",
    )
    with get_client(sync_client=True) as client:
        # what `prefect concurrency-limit create render 1` sets up: the render tag's slots
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="tag:render", limit=1))
        try:
            outcomes = run_manifest(load_manifest(manifest), workers=2)
        finally:
            client.delete_global_concurrency_limit_by_name("tag:render")
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    renders = sorted(
        (step.started_at, step.finished_at)
        for o in outcomes
        for step in open_store().run(o.run_id).steps
        if step.stage == "render"
    )
    assert renders[0][1] <= renders[1][0], renders  # the second render began after the first ended
