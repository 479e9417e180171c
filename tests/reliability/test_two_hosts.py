"""Scale-out end to end: two Prefect workers, each its own "host", drain one store; one dies mid-render.

Real processes on loopback (tests/reliability/cluster.py): a Prefect server on PostgreSQL, the emoflow
store on PostgreSQL, moto's S3 server as the blob root, prefect.yaml's deployment
(`prefect --no-prompt deploy`), and two `prefect worker` processes with their own EMOFLOW_HOME, TMPDIR
and EMOFLOW_HOST_NAME. Needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL, as .ci/run provides).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stores.records import RunRecord
from stores.status import JobStatus, RunStatus
from stores.verify import verify_store
from tests.conftest import POSTGRES_URL
from tests.reliability.cluster import Cluster, wait_for
from tests.reliability.helpers import FAST_JOB

JOBS = 4
LEASE_SECONDS = 4

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL)")


def test_two_workers_drain_one_store_and_survive_one_dying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert POSTGRES_URL
    jobs = []
    for n in range(JOBS):
        jobs.append(tmp_path / f"job{n}.yaml")
        jobs[-1].write_text(f"name: two-hosts-{n}\nscript: 'Job number {n} of {JOBS}, shared.'\n{FAST_JOB}")
    with Cluster(tmp_path, POSTGRES_URL, lease_seconds=LEASE_SECONDS) as cluster:
        for key, value in cluster.s3_settings().items():
            monkeypatch.setenv(key, value)  # this process reads the same blob root
        store = cluster.open_store()
        cluster.submit(jobs)
        cluster.start_worker("host-a")
        cluster.start_worker("host-b")
        cluster.run_deployment()
        cluster.run_deployment()  # one drain per worker (each takes one flow run at a time)

        def held_by_a() -> list[RunRecord]:
            return [run for run in store.list_runs() if (run.job.lease_owner or "").startswith("host-a:")]

        wait_for(
            lambda: any(
                run.status == RunStatus.RUNNING and any(step.stage == "render" for step in run.steps)
                for run in held_by_a()
            ),
            240,
            "host-a rendering",
        )
        (killed,) = held_by_a()
        assert cluster.kill_host("host-a") >= 2  # the host dies: its worker and the flow run it started
        committed = {step.stage for step in killed.steps if step.status == "succeeded"}

        def jobs_succeeded() -> int:
            statuses = {run.job.id: run.job.status for run in store.list_runs()}
            return sum(status == JobStatus.SUCCEEDED for status in statuses.values())

        wait_for(lambda: jobs_succeeded() >= JOBS - 1, 300, "host-b finishing the other jobs")
        time.sleep(LEASE_SECONDS + 1)  # host-a's lease runs out
        cluster.run_deployment()  # the next drain, on host-b, takes the dead host's job over
        wait_for(lambda: jobs_succeeded() == JOBS, 300, "every job finished")

        runs = store.list_runs()
        succeeded = [run for run in runs if run.status == RunStatus.SUCCEEDED]
        assert sorted(run.job.id for run in succeeded) == sorted({run.job.id for run in runs})  # once each
        (abandoned,) = [run for run in runs if run.status == RunStatus.ABANDONED]
        assert abandoned.id == killed.id
        (resumed,) = [run for run in succeeded if run.job.id == killed.job.id]
        assert committed <= {step.stage for step in resumed.steps if step.cache_hit}
        report = verify_store(store)
        assert report.ok, report.unrepaired  # no orphan blob, no dangling row; the abandoned run is handled
        claimers = {event.actor for event in store.audit_events() if event.action == "job.claim"}
        assert any("host-a" in actor for actor in claimers) and any("host-b" in actor for actor in claimers)
        store.close()
