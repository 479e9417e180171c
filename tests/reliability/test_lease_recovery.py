"""A worker killed mid-job: its lease runs out, a drain takes the job over and finishes it once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from stores.status import JobStatus, RunStatus
from stores.verify import verify_store
from tests.reliability.helpers import Home, write_job


def test_a_killed_workers_job_is_finished_by_the_next_drain(tmp_path: Path, prefect_api: str) -> None:
    home = Home(tmp_path)
    env = home.env(prefect_api, EMOFLOW_LEASE_SECONDS="3")
    job = write_job(tmp_path / "jobs", "orphan", "Whoever started this will not finish it.")
    emoflow = [sys.executable, "-m", "emoflow.cli"]
    queued = subprocess.run(
        [*emoflow, "submit", str(job)], env=env, capture_output=True, text=True, check=False
    )
    assert queued.returncode == 0, queued.stderr
    store = home.store()

    # the first worker: killed once its render has begun
    worker = subprocess.Popen(
        [*emoflow, "batch", "--queue"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and any(step.stage == "render" for step in runs[0].steps):
            break
        time.sleep(0.3)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    (dead,) = store.list_runs()
    assert dead.status == RunStatus.RUNNING  # nobody has noticed yet
    committed = {step.stage for step in dead.steps if step.status == "succeeded"}
    assert {"plan", "speak", "align", "feel"} <= committed

    time.sleep(3.5)  # the lease runs out
    second = subprocess.run(
        [*emoflow, "batch", "--queue"], env=env, capture_output=True, text=True, check=False
    )
    assert second.returncode == 0, second.stderr
    newest, abandoned = store.list_runs()
    assert abandoned.id == dead.id and abandoned.status == RunStatus.ABANDONED
    assert newest.status == RunStatus.SUCCEEDED and newest.job.status == JobStatus.SUCCEEDED
    reused = {step.stage for step in newest.steps if step.cache_hit}
    assert committed <= reused  # the dead worker's finished stages were not done again
    assert store.job(newest.job.id).lease_owner is None
    report = verify_store(store)
    assert report.ok, report.unrepaired
    assert [p.subject for p in report.by_kind("abandoned_run")] == [f"run {dead.id}"]
    expiries = [e for e in store.audit_events() if e.action == "job.lease_expire"]
    assert len(expiries) == 1, [(e.actor, e.details) for e in expiries]
    store.close()
