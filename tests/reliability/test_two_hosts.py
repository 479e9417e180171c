"""Scale-out end to end: two Prefect workers, each its own "host", drain one store; one dies mid-render.

Real processes on loopback: a Prefect server on PostgreSQL, the emoflow store on PostgreSQL, moto's S3
server as the blob root, prefect.yaml's deployment (`prefect --no-prompt deploy`), and two
`prefect worker` processes with their own EMOFLOW_HOME and EMOFLOW_HOST_NAME. Needs PostgreSQL
(EMOFLOW_TEST_POSTGRES_URL, as .ci/run provides).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from stores.status import JobStatus, RunStatus
from stores.store import ArtifactStore
from stores.verify import verify_store
from tests.conftest import POSTGRES_URL
from tests.reliability.helpers import FAST_JOB

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOBS = 4
LEASE_SECONDS = 4

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (EMOFLOW_TEST_POSTGRES_URL)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fresh_database(name: str) -> str:
    """An empty database beside the test one; returns its URL (psycopg driver)."""
    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the worker and any flow run it started
        process.wait(timeout=30)


def _kill_host(host: str) -> int:
    """SIGKILL every process of one pretend host: the worker and the flow runs it started (Prefect starts
    those in sessions of their own, so killing the worker's process group is not enough)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"EMOFLOW_HOST_NAME={host}".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def _run(command: list[str], env: dict[str, str], timeout: float = 180) -> str:
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_two_workers_drain_one_store_and_survive_one_dying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = _fresh_database("emoflow_two_hosts")
    prefect_url = make_url(_fresh_database("prefect_two_hosts")).set(drivername="postgresql+asyncpg")
    s3_port, api_port = _free_port(), _free_port()
    api = f"http://127.0.0.1:{api_port}/api"
    base = {key: value for key, value in os.environ.items() if not key.startswith(("EMOFLOW_", "PREFECT_"))}
    shared = base | {
        "EMOFLOW_DATABASE_URL": store_url,
        "EMOFLOW_BLOB_ROOT": "s3://emoflow-two-hosts/blobs",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "AWS_ACCESS_KEY_ID": "emoflow-test",
        "AWS_SECRET_ACCESS_KEY": "emoflow-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "EMOFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
        "EMOFLOW_HOME": str(tmp_path / "submitter"),
        "EMOFLOW_OUTPUT_DIR": str(tmp_path / "outputs"),
        "EMOFLOW_REPO": str(ROOT),
    }
    server_env = base | {
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_API_DATABASE_CONNECTION_URL": prefect_url.render_as_string(hide_password=False),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)]
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(api_port)]
    with (
        _process(moto, base, tmp_path / "moto.log"),
        _process(server, server_env, tmp_path / "server.log"),
    ):
        _wait(lambda: _answers(f"http://127.0.0.1:{s3_port}"), 60, "moto's S3 server")
        httpx.put(f"http://127.0.0.1:{s3_port}/emoflow-two-hosts", timeout=10).raise_for_status()
        _wait(lambda: _answers(f"{api}/health"), 180, "the Prefect server")
        _run([str(BIN / "prefect"), "work-pool", "create", "emoflow-process", "--type", "process"], shared)
        _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], shared)
        emoflow = [sys.executable, "-m", "emoflow.cli"]
        for n in range(JOBS):
            job = tmp_path / f"job{n}.yaml"
            job.write_text(f"name: two-hosts-{n}\nscript: 'Job number {n} of {JOBS}, shared.'\n{FAST_JOB}")
            _run([*emoflow, "submit", str(job)], shared)

        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, shared[key])  # this process reads the same blob root
        store = ArtifactStore(store_url, "s3://emoflow-two-hosts/blobs")
        workers = {}
        stack = contextlib.ExitStack()
        with stack:
            for host in ("host-a", "host-b"):
                env = shared | {
                    "EMOFLOW_HOME": str(tmp_path / host),
                    "TMPDIR": str(tmp_path / host / "tmp"),
                    "EMOFLOW_HOST_NAME": host,
                    "EMOFLOW_WORKERS": "1",
                    "PREFECT_WORKER_QUERY_SECONDS": "1",
                }
                (tmp_path / host / "tmp").mkdir(parents=True)
                command = [str(BIN / "prefect"), "worker", "start", "--pool", "emoflow-process",
                           "--name", host, "--limit", "1"]  # fmt: skip
                workers[host] = stack.enter_context(_process(command, env, tmp_path / f"{host}.log"))
            deployment = [str(BIN / "prefect"), "deployment", "run", "drain-queue/nightly-drain"]
            _run(deployment, shared)
            _run(deployment, shared)  # one drain per worker (each takes one flow run at a time)

            def rendering_on_a() -> bool:
                return any(
                    run.status == RunStatus.RUNNING
                    and (run.job.lease_owner or "").startswith("host-a:")
                    and any(step.stage == "render" for step in run.steps)
                    for run in store.list_runs()
                )

            _wait(rendering_on_a, 240, "host-a rendering")
            (killed,) = [
                run for run in store.list_runs() if (run.job.lease_owner or "").startswith("host-a:")
            ]
            assert _kill_host("host-a") >= 2  # the host dies: its worker and the flow run it started
            committed = {step.stage for step in killed.steps if step.status == "succeeded"}

            def others_done() -> bool:
                jobs = {run.job.id: run.job.status for run in store.list_runs()}
                return sum(status == JobStatus.SUCCEEDED for status in jobs.values()) >= JOBS - 1

            _wait(others_done, 300, "host-b finishing the other jobs")
            time.sleep(LEASE_SECONDS + 1)  # host-a's lease runs out
            _run(deployment, shared)  # the next drain, on host-b, takes the dead host's job over

            def all_done() -> bool:
                runs = store.list_runs()
                finished = {run.job.id for run in runs if run.status == RunStatus.SUCCEEDED}
                return len(finished) == JOBS

            _wait(all_done, 300, "every job finished")

        runs = store.list_runs()
        succeeded = [run for run in runs if run.status == RunStatus.SUCCEEDED]
        assert sorted(run.job.id for run in succeeded) == sorted({run.job.id for run in runs})  # once each
        assert len(succeeded) == JOBS
        (abandoned,) = [run for run in runs if run.status == RunStatus.ABANDONED]
        assert abandoned.id == killed.id
        (resumed,) = [run for run in succeeded if run.job.id == killed.job.id]
        assert committed <= {step.stage for step in resumed.steps if step.cache_hit}
        report = verify_store(store)
        assert report.ok, report.unrepaired  # no orphan blob, no dangling row; the abandoned run is handled
        claimers = {event.actor for event in store.audit_events() if event.action == "job.claim"}
        assert any("host-a" in actor for actor in claimers) and any("host-b" in actor for actor in claimers)
        store.close()
        assert _kill_host("host-b") == 0  # every flow run process of the surviving host has ended
