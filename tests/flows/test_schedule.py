"""The drain deployment served locally on a cron schedule, triggered with run_deployment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from kernel.jobs import parse_job
from kernel.settings import get_settings
from tasks.context import open_store
from tasks.intake import submit_job


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_served_drain_deployment_narrates_queued_jobs(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    store = open_store()
    spec = parse_job({"script": "Narrated at night.", "portrait": "skimage:astronaut", "tts_engine": "espeak",
                      "size": 128}, tmp_path)  # fmt: skip
    job_ids = [submit_job(spec, get_settings(), store, queued=True) for _ in range(2)]

    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    command = [
        sys.executable,
        "-m",
        "emoflow.cli",
        "schedule",
        "--cron",
        "30 3 * * *",
        "--name",
        "test-drain",
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deployment = wait_for_deployment("drain-queue/test-drain", server)
        assert deployment.schedules[0].schedule.cron == "30 3 * * *"
        flow_run = run_deployment("drain-queue/test-drain", timeout=240)
        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [store.job(job_id).status for job_id in job_ids] == ["succeeded", "succeeded"]
    claims = [e for e in store.audit_events() if e.action == "job.claim"]
    assert sorted(e.job_id for e in claims) == sorted(job_ids)


def wait_for_deployment(name: str, server: subprocess.Popen) -> object:
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"deployment {name} was not served within 120 s")
