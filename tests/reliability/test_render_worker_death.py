"""A GPU worker dies mid-render: the narration that routed its render there does not wait forever.

Both pools on one machine, as in test_stage_routing.py (tests/reliability/cluster.py). Once gpu-a has
begun the render step, its host dies: SIGKILL to its `prefect worker` and to the render-stage flow run
it started, so nothing tells Prefect, which goes on showing that run "Running". The narration on cpu-a
polls it and its heartbeat in the store; silent for longer than the lease, the run is crashed in
Prefect, the loss is audited, and the render is sent again, to gpu-b (started after the kill). Needs
PostgreSQL (EMOFLOW_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.render_stage import heartbeat_key
from stores.heartbeats import WORKER_LOST
from stores.status import JobStatus, RunStatus, StepStatus
from stores.verify import verify_store
from tests.conftest import POSTGRES_URL
from tests.reliability.cluster import GPU_POOL, ROUTING, Cluster, stage_hosts, wait_for
from tests.reliability.helpers import FAST_JOB, STAGES

LEASE_SECONDS = 5  # how long a silent render counts as alive: the narration notices within about that
# two sentences: a render of about three seconds here, time enough to kill its host mid-render
SCRIPT = "The first worker renders this. It dies halfway, and another one finishes."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL)"),
    # a fourth cluster costs .ci/run over a minute on two cores; the rule it rests on is tested in
    # test_render_heartbeats.py against a fake Prefect client, this end to end by `make test-worker-death`
    pytest.mark.skipif(
        os.environ.get("EMOFLOW_TEST_WORKER_DEATH") != "1", reason="opt-in: make test-worker-death"
    ),
]


def test_a_render_whose_gpu_worker_dies_is_crashed_and_sent_to_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert POSTGRES_URL
    job = tmp_path / "job.yaml"
    job.write_text(f"name: gpu-dies\nscript: {SCRIPT!r}\n{FAST_JOB}")
    with Cluster(tmp_path, POSTGRES_URL, lease_seconds=LEASE_SECONDS) as cluster:
        store = cluster.open_store_here(monkeypatch)
        cluster.submit([job])
        cluster.start_worker("cpu-a", **ROUTING)
        cluster.start_worker("gpu-a", GPU_POOL)
        cluster.run_deployment()

        # 1. gpu-a's host dies once its render step is open
        wait_for(lambda: stage_hosts(store, "render") == ["gpu-a"], 240, "gpu-a rendering")
        assert cluster.kill_host("gpu-a") >= 2  # its worker and the flow run it started
        cluster.start_worker("gpu-b", GPU_POOL)

        # 2. the narration notices, and gpu-b renders
        def ended() -> bool:
            return all(run.job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) for run in store.list_runs())

        wait_for(ended, 240, "the narration ending")
        (run,) = store.list_runs()  # one narration, which never stopped: the job ran once
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert run.job.status == JobStatus.SUCCEEDED
        assert [step.stage for step in run.steps] == STAGES
        (render,) = [step for step in run.steps if step.stage == "render"]
        assert render.status == StepStatus.SUCCEEDED and render.attempts == 2  # gpu-a's step, reopened
        assert stage_hosts(store, "render") == ["gpu-a", "gpu-b"]
        assert all(stage_hosts(store, stage) == ["cpu-a"] for stage in STAGES if stage != "render")

        # 3. what Prefect and the audit trail say
        (lost,) = store.audit_events_by_action(WORKER_LOST)
        assert lost.run_id == run.id and lost.details["host"] == "gpu-a" and lost.details["again"]
        assert lost.details["silent_seconds"] > LEASE_SECONDS
        renders = cluster.flow_runs("render-stage")
        assert [r["state_type"] for r in renders] == ["CRASHED", "COMPLETED"]
        assert renders[0]["id"] == lost.details["flow_run"] and "gpu-a" in renders[0]["state"]["message"]
        assert all(store.heartbeat(heartbeat_key(r["id"])) is None for r in renders)  # forgotten
        report = verify_store(store)
        assert report.ok, report.unrepaired
        store.close()
