"""Stage routing: a narration on the CPU pool's worker sends its render to the GPU pool's deployment.

Two work pools on one machine (tests/reliability/cluster.py): `emoflow-process` drains the queue with
EMOFLOW_RENDER_DEPLOYMENT=render-stage/gpu, `emoflow-gpu` (concurrency limit 1) runs prefect.yaml's
`render-stage/gpu`. The preview renderer stands in for the diffusion one (EMOFLOW_ROUTED_RENDERERS):
routing does not depend on what renders. Needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stores.status import JobStatus, RunStatus
from stores.verify import verify_store
from tests.conftest import POSTGRES_URL
from tests.reliability.cluster import GPU_POOL, RENDER_DEPLOYMENT, Cluster, wait_for
from tests.reliability.helpers import FAST_JOB

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL)")


def test_render_runs_on_the_gpu_pool_and_the_other_stages_on_the_cpu_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert POSTGRES_URL
    job = tmp_path / "job.yaml"
    job.write_text(f"name: routed\nscript: 'Rendered somewhere else.'\n{FAST_JOB}")
    with Cluster(tmp_path, POSTGRES_URL) as cluster:
        for key, value in cluster.s3_settings().items():
            monkeypatch.setenv(key, value)
        store = cluster.open_store()
        cluster.submit([job])
        routing = {"EMOFLOW_RENDER_DEPLOYMENT": RENDER_DEPLOYMENT, "EMOFLOW_ROUTED_RENDERERS": "preview"}
        cluster.start_worker("cpu-a", **routing)
        cluster.start_worker("gpu-a", GPU_POOL)
        cluster.run_deployment()

        def finished() -> bool:
            return any(run.job.status == JobStatus.SUCCEEDED for run in store.list_runs())

        wait_for(finished, 300, "the routed job")
        (run,) = store.list_runs()
        assert run.status == RunStatus.SUCCEEDED
        assert [step.stage for step in run.steps] == ["plan", "speak", "align", "feel", "render", "publish"]
        assert not any(step.cache_hit for step in run.steps)
        hosts = {
            event.details["stage"]: event.details["host"]
            for event in store.audit_events(run.id)
            if event.action == "step.start"
        }
        assert hosts == {stage: "gpu-a" if stage == "render" else "cpu-a" for stage in hosts}
        assert len(hosts) == 6

        pool = httpx.get(f"{cluster.api}/work_pools/{GPU_POOL}", timeout=10).json()
        assert pool["concurrency_limit"] == 1
        renders = httpx.post(
            f"{cluster.api}/flow_runs/filter",
            json={"flows": {"name": {"any_": ["render-stage"]}}},
            timeout=10,
        ).json()
        assert [(r["name"], r["state_type"]) for r in renders] == [(f"render-{run.id}", "COMPLETED")]
        report = verify_store(store)
        assert report.ok, report.unrepaired
        store.close()
