"""A scale-out deployment on loopback, of real processes: what tests/reliability/test_two_hosts.py,
test_stage_routing.py, test_render_worker_death.py and bench/scale_out.py run emoflow on.

    with Cluster(workdir, postgres_url) as cluster:   # Prefect server on PostgreSQL, moto's S3, deploy
        cluster.submit(job_files)
        cluster.start_worker("host-a")                 # its own EMOFLOW_HOME, TMPDIR and host name
        cluster.start_worker("gpu-a", GPU_POOL)        # a worker of the GPU pool (render-stage/gpu)
        cluster.run_deployment()
        cluster.kill_host("host-a")

The Prefect server and the store get databases of their own on the given PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, cast

import fsspec
import httpx
from sqlalchemy import create_engine, make_url, text

from stores.store import ArtifactStore

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "emoflow-cluster"
DEPLOYMENT = "drain-queue/nightly-drain"
RENDER_DEPLOYMENT = "render-stage/gpu"
CPU_POOL, GPU_POOL = "emoflow-process", "emoflow-gpu"
# a CPU worker's settings that send its renders to the GPU pool; the preview renderer stands in for the
# diffusion one (routing does not depend on what renders)
ROUTING = {"EMOFLOW_RENDER_DEPLOYMENT": RENDER_DEPLOYMENT, "EMOFLOW_ROUTED_RENDERERS": "preview"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_database(server_url: str, name: str) -> str:
    """An empty database `name` on the server of `server_url`; returns its URL."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def stage_hosts(store: ArtifactStore, stage: str) -> list[str]:
    """The hosts that began `stage`'s steps, oldest first: each step.start event names its host."""
    events = reversed(store.audit_events_by_action("step.start"))
    return [event.details["host"] for event in events if event.details.get("stage") == stage]


def kill_host(home: Path) -> int:
    """SIGKILL every process of one pretend host, found by its EMOFLOW_HOME: its worker and the flow runs
    it started (Prefect starts those in sessions of their own, so killing the worker's process group is
    not enough). The home, not the host name, because another test's cluster may run a host of that name."""
    marker = f"EMOFLOW_HOME={home}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


class Cluster:
    def __init__(self, workdir: Path, postgres_url: str, lease_seconds: float = 4.0) -> None:
        self.workdir = workdir
        # named after the given database, which is per pytest-xdist worker: clusters may run side by side
        base = make_url(postgres_url).database
        self.store_url = fresh_database(postgres_url, f"{base}_cluster_store")
        prefect_db = fresh_database(postgres_url, f"{base}_cluster_prefect")
        self.prefect_db = make_url(prefect_db).set(drivername="postgresql+asyncpg")
        self.s3_port, self.api_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}/api"
        own = ("EMOFLOW_", "PREFECT_")
        self.base = {key: value for key, value in os.environ.items() if not key.startswith(own)}
        self.blob_root = f"s3://{BUCKET}/blobs"
        self.shared = self.base | {
            "EMOFLOW_DATABASE_URL": self.store_url,
            "EMOFLOW_BLOB_ROOT": self.blob_root,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "emoflow-test",
            "AWS_SECRET_ACCESS_KEY": "emoflow-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PREFECT_API_URL": self.api,
            "PREFECT_HOME": str(workdir / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "EMOFLOW_LEASE_SECONDS": str(lease_seconds),
            "EMOFLOW_HOME": str(workdir / "submitter"),
            "EMOFLOW_OUTPUT_DIR": str(workdir / "outputs"),
            "EMOFLOW_REPO": str(ROOT),
        }
        self.hosts: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def _start(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        out = (self.workdir / log).open("wb")
        self._logs.append(out)
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        self._processes.append(process)
        return process

    def run(self, command: list[str], timeout: float = 180) -> str:
        done = subprocess.run(
            command, env=self.shared, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    def __enter__(self) -> Cluster:
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)]
        self._start(moto, self.base, "moto.log")
        server_env = self.base | {
            "PREFECT_HOME": str(self.workdir / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.prefect_db.render_as_string(hide_password=False),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        server = [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.api_port),
        ]
        self._start(server, server_env, "server.log")
        wait_for(lambda: answers(f"http://127.0.0.1:{self.s3_port}"), 60, "moto's S3 server")
        httpx.put(f"http://127.0.0.1:{self.s3_port}/{BUCKET}", timeout=10).raise_for_status()
        wait_for(lambda: answers(f"{self.api}/health"), 180, "the Prefect server")
        # the pools over the REST API (each `prefect` CLI process costs seconds of imports), with the job
        # template `prefect work-pool create --type process` would give them
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
        for pool, limit in ((CPU_POOL, None), (GPU_POOL, 1)):  # the GPU pool: one render at a time
            body = {
                "name": pool,
                "type": "process",
                "base_job_template": template,
                "concurrency_limit": limit,
            }
            httpx.post(f"{self.api}/work_pools/", json=body, timeout=30).raise_for_status()
        self.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"])  # from prefect.yaml, as users do
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for host in self.hosts:
            self.kill_host(host)
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for log in self._logs:
            log.close()
        # fsspec keeps filesystems by their arguments, not the environment: drop ours with its endpoint
        fsspec.get_filesystem_class("s3").clear_instance_cache()

    def submit(self, jobs: list[Path]) -> None:
        for job in jobs:
            self.run([sys.executable, "-m", "emoflow.cli", "submit", str(job)])

    def start_worker(self, host: str, pool: str = CPU_POOL, **settings: str) -> None:
        """A `prefect worker` on `pool` taking one flow run at a time, as its own host; `settings` are
        extra environment variables of that host."""
        tmp = self.workdir / host / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = (
            self.shared
            | {
                "EMOFLOW_HOME": str(self.workdir / host),
                "TMPDIR": str(tmp),
                "EMOFLOW_HOST_NAME": host,
                "EMOFLOW_WORKERS": "1",
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            }
            | settings
        )
        command = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", host]
        self._start([*command, "--limit", "1"], env, f"{host}.log")
        self.hosts.append(host)

    def kill_host(self, host: str) -> int:
        return kill_host(self.workdir / host)

    def run_deployment(self) -> None:
        """A flow run of the drain deployment, as `prefect deployment run` makes one."""
        flow, name = DEPLOYMENT.split("/")
        found = httpx.get(f"{self.api}/deployments/name/{flow}/{name}", timeout=30)
        found.raise_for_status()
        created = httpx.post(
            f"{self.api}/deployments/{found.json()['id']}/create_flow_run", json={}, timeout=30
        )
        created.raise_for_status()

    def flow_runs(self, flow: str) -> list[dict[str, Any]]:
        """The Prefect server's flow runs of `flow`, as its REST API returns them, oldest first."""
        query = {"flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_ASC"}
        response = httpx.post(f"{self.api}/flow_runs/filter", json=query, timeout=10)
        response.raise_for_status()
        return cast(list[dict[str, Any]], response.json())

    def open_store(self) -> ArtifactStore:
        """The store, from this process: it needs the same S3 settings (set them in os.environ first)."""
        return ArtifactStore(self.store_url, self.blob_root)

    def open_store_here(self, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
        """The store, from a test's own process, with the cluster's S3 settings set through `monkeypatch`
        (undone after the test)."""
        for key, value in self.s3_settings().items():
            monkeypatch.setenv(key, value)
        return self.open_store()

    def s3_settings(self) -> dict[str, str]:
        return {key: value for key, value in self.shared.items() if key.startswith("AWS_")}
