"""Batch benchmark: throughput of N short jobs on one worker and on two (threads, processes, Dask),
where the CPU goes, the re-run of a finished batch, and per-job store overhead on SQLite vs PostgreSQL.

Run: .venv/bin/python bench/batch.py [--jobs 20] [--postgres URL] [--out bench/results/batch.json]

The bench starts its own `prefect server start` (every configuration reports to it, as production
workers do). Each configuration gets a fresh store and fresh worker processes that first narrate
warm-up jobs of their own (engines load once per process), then start on a signal: "queue"
configurations drain the N jobs submitted beforehand (the submission is timed apart), "manifest"
ones run the whole manifest as `emoflow batch jobs.csv` does. CPU time is that of the workers,
their ffmpeg children and the Prefect server. Machines are noisy: compare configurations of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The ferry leaves at nine.",
    "Please bring your own lunch.",
    "The museum opens late on Fridays.",
    "We found the keys under the mat.",
    "The storm passed before midnight.",
]
READY, GO, RESULT = "BENCH-READY", "BENCH-GO", "BENCH-RESULT "


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    processes: int  # worker processes draining the queue at once
    workers: int  # jobs at once in each process
    runner: str = "threads"  # threads | dask (a cluster warmed before) | dask-cold (started by the batch)
    engine_threads: int | None = None  # None: the default budget (cores // workers)
    source: str = "queue"  # queue: drain pre-submitted jobs | manifest: `emoflow batch jobs.csv`


CONFIGS = [
    Config("one_worker", "1 worker (default: engines on every core)", 1, 1),
    Config("two_threads_shared_cores", "2 threads, engines on every core (no budget)", 1, 2, "threads", 0),
    Config("two_threads", "2 threads in one process, 1 engine thread each", 1, 2),
    Config("two_processes", "2 processes, 1 engine thread each", 2, 1, "threads", 1),
    Config("dask_2x1", "Dask LocalCluster 2 processes x 1 thread, started and warmed before", 1, 2, "dask"),
    Config("dask_2x1_cold", "Dask 2 x 1 started by the batch (--runner dask)", 1, 2, "dask-cold"),
    Config("manifest_one_worker", "manifest, 1 worker (submission and validation timed too)", 1, 1,
           source="manifest"),
    Config("manifest_two_threads", "manifest, 2 threads, 1 engine thread each (--workers 2)", 1, 2,
           source="manifest"),
    Config("one_worker_one_thread", "1 worker pinned to 1 engine thread (one-core-per-worker baseline)", 1, 1,
           "threads", 1),
]  # fmt: skip


def manifest(path: Path, jobs: int, out: Path, prefix: str = "job") -> Path:
    lines = ["id,script,portrait,output_dir"]
    for i in range(jobs):
        # distinct scripts, so no job reuses another's steps
        lines.append(f"{prefix}{i:02d},[happy 0.{(i % 9) + 1}] {SENTENCES[i % len(SENTENCES)]} "
                     f"{prefix.title()} number {i}.,skimage:astronaut,{out}/{prefix}{i:02d}")  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the coordinator -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--postgres", help="SQLAlchemy URL of an empty PostgreSQL database (it is wiped)")
    parser.add_argument("--configs", help="comma-separated subset of: " + ",".join(c.name for c in CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON of a worker's settings
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    work = Path(tempfile.mkdtemp(prefix="emoflow-bench-batch-"))
    os.environ["EMOFLOW_HOME"] = str(work / "home")
    from kernel.runtime import configure_environment

    configure_environment()
    chosen = [c for c in CONFIGS if not args.configs or c.name in args.configs.split(",")]
    server, api_url = start_prefect_server(work / "prefect")
    os.environ["PREFECT_API_URL"] = api_url
    path = manifest(work / "jobs.csv", args.jobs, work / "out")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_before": os.getloadavg()},
        "jobs": args.jobs,
    }
    try:
        for config in chosen:
            print(f"{config.label} ...", flush=True)
            results[config.name] = {"label": config.label, **run_config(config, path, work, server, None)}
            print(json.dumps(results[config.name]), flush=True)
        if "two_threads" in results:
            home = Path(results["two_threads"].pop("home"))
            print("re-running the finished batch ...", flush=True)
            results["rerun"] = rerun(path, home)
        if args.postgres:
            print(f"{args.jobs} jobs on PostgreSQL, 2 threads ...", flush=True)
            results["postgres_two_threads"] = run_config(CONFIGS[2], path, work, server, args.postgres)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for result in results.values():
        if isinstance(result, dict):
            result.pop("home", None)
    add_speedups(results, os.cpu_count() or 1)
    results["machine"]["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


SPEEDUPS = {  # baseline -> configurations compared with it
    "one_worker": ("two_threads_shared_cores", "two_threads", "two_processes", "dask_2x1", "dask_2x1_cold"),
    "manifest_one_worker": ("manifest_two_threads",),
    "one_worker_one_thread": ("two_threads", "two_processes", "dask_2x1"),
}


def add_speedups(results: dict[str, Any], cores: int) -> None:
    """Wall-time ratios against each baseline run, and the CPU-bound ceiling of each."""
    for baseline, names in SPEEDUPS.items():
        base = results.get(baseline, {}).get("wall_seconds")
        for name in names:
            if not base or name not in results:
                continue
            result = results[name]
            result[f"speedup_vs_{baseline}"] = round(base / result["wall_seconds"], 2)
            if baseline != "one_worker_one_thread":
                # the speedup had this configuration's CPU work kept every core busy all the time
                cpu = result["cpu_seconds_per_job"] * result["jobs"]
                result["cpu_bound_ceiling"] = round(base / (cpu / cores), 2)


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_url = f"http://127.0.0.1:{port}/api"
    started = time.perf_counter()
    while time.perf_counter() - started < 180:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    print(f"Prefect server up in {time.perf_counter() - started:.1f} s", flush=True)
                    return server, api_url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("prefect server start did not become healthy in 180 s")


def run_config(
    config: Config, path: Path, work: Path, server: subprocess.Popen[bytes], database_url: str | None
) -> dict[str, Any]:
    """Queue the jobs on a fresh store (queue configurations), start the workers, let them warm up,
    time the batch."""
    import psutil

    home = Path(tempfile.mkdtemp(prefix=f"{config.name}-", dir=work))
    queued_seconds = queue_jobs(path, home, database_url) if config.source == "queue" else 0.0
    workers = []
    for index in range(config.processes):
        # each process warms up on jobs of its own, which no other job can reuse
        warm = manifest(home / f"warm{index}.csv", config.workers, home / "warm-out", prefix=f"warm{index}x")
        spec = {"home": str(home), "database_url": database_url, "workers": config.workers,
                "runner": config.runner, "engine_threads": config.engine_threads, "warm": str(warm),
                "jobs_manifest": str(path) if config.source == "manifest" else None,
                "stage_cpu": config.processes == 1 and config.workers == 1}  # fmt: skip
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        workers.append(
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        )
    for process in workers:
        read_until(process.stdout, READY)
    server_tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    server_cpu = sum(sum(p.cpu_times()[:2]) for p in server_tree)
    started = time.perf_counter()
    for process in workers:
        assert process.stdin is not None
        process.stdin.write(GO + "\n")
        process.stdin.flush()
    reports = [json.loads(read_until(process.stdout, RESULT)) for process in workers]
    wall = time.perf_counter() - started
    server_cpu = sum(sum(p.cpu_times()[:2]) for p in server_tree) - server_cpu
    for process in workers:
        process.wait(timeout=120)
    return summarise(config, reports, wall, server_cpu, queued_seconds, home, database_url)


def queue_jobs(path: Path, home: Path, database_url: str | None) -> float:
    """Submit every row as a pending job (validation included); returns the seconds it took."""
    from kernel.manifest import load_manifest
    from kernel.settings import get_settings
    from tasks.context import open_store
    from tasks.intake import submit_job

    use_store(home, database_url)
    started = time.perf_counter()
    store = open_store()
    for row in load_manifest(path):
        assert row.spec is not None, row.error
        submit_job(row.spec, get_settings(), store, queued=True)
    return time.perf_counter() - started


def use_store(home: Path, database_url: str | None) -> None:
    from tasks.context import reset_stores

    os.environ["EMOFLOW_HOME"] = str(home)
    if database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        os.environ["EMOFLOW_DATABASE_URL"] = database_url
    else:
        os.environ.pop("EMOFLOW_DATABASE_URL", None)
    reset_stores()


def read_until(stream: IO[str] | None, marker: str) -> str:
    assert stream is not None
    for line in stream:
        if line.startswith(marker):
            return line[len(marker) :].strip()
    raise RuntimeError(f"a bench worker exited before {marker.strip()}")


def summarise(
    config: Config,
    reports: list[dict[str, Any]],
    wall: float,
    server_cpu: float,
    queued_seconds: float,
    home: Path,
    database_url: str | None,
) -> dict[str, Any]:
    from tasks.context import open_store

    os.environ["EMOFLOW_HOME"] = str(home)
    if database_url:
        os.environ["EMOFLOW_DATABASE_URL"] = database_url
    from tasks.context import reset_stores

    reset_stores()
    store = open_store()
    run_ids = [run_id for report in reports for run_id in report["run_ids"]]
    engine = overhead = 0.0
    stages: dict[str, float] = defaultdict(float)
    for run_id in run_ids:
        run = store.run(run_id)
        steps = sum(step.seconds or 0.0 for step in run.steps)
        engine += steps
        overhead += (run.finished_at - run.started_at).total_seconds() - steps
        for step in run.steps:
            stages[step.stage] += step.seconds or 0.0
    jobs = len(run_ids)
    worker_cpu = sum(report["cpu_seconds"] for report in reports)
    result: dict[str, Any] = {
        "processes": config.processes,
        "workers_per_process": config.workers,
        "engine_threads": reports[0]["engine_threads"],
        "jobs": jobs,
        "succeeded": sum(report["succeeded"] for report in reports),
        "queue_seconds": round(queued_seconds, 2),
        "wall_seconds": round(wall, 2),
        "jobs_per_second": round(jobs / wall, 3),
        "computed_steps": sum(report["computed_steps"] for report in reports),
        "mean_job_step_seconds": round(engine / max(1, jobs), 3),
        "mean_job_overhead_seconds": round(overhead / max(1, jobs), 3),
        "mean_stage_seconds": {stage: round(total / max(1, jobs), 3) for stage, total in stages.items()},
        "cpu_seconds": {"workers": round(worker_cpu, 1), "prefect_server": round(server_cpu, 1)},
        "cpu_seconds_per_job": round((worker_cpu + server_cpu) / max(1, jobs), 2),
        # cores kept busy by this batch on average, out of `cores`
        "busy_cores": round((worker_cpu + server_cpu) / wall, 2),
        "home": str(home),
    }
    if reports[0].get("stage_cpu"):
        result["mean_stage_cpu_seconds"] = reports[0]["stage_cpu"]
    return result


def rerun(path: Path, home: Path) -> dict[str, Any]:
    """The same jobs again as a manifest, on the store that narrated them: nothing is computed."""
    spec = {"home": str(home), "manifest": str(path), "workers": 2}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    lines = completed.stdout.splitlines()
    report = json.loads(next(line for line in lines if line.startswith(RESULT))[len(RESULT) :])
    return {key: report[key] for key in ("jobs", "succeeded", "computed_steps", "wall_seconds")}


# --- a worker process ------------------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> int:
    """Warm up on this process's own jobs, print READY, wait for GO, run the batch, print RESULT."""
    os.environ["EMOFLOW_HOME"] = spec["home"]
    if spec.get("database_url"):
        os.environ["EMOFLOW_DATABASE_URL"] = spec["database_url"]
    if spec.get("engine_threads") is not None:
        os.environ["EMOFLOW_ENGINE_THREADS"] = str(spec["engine_threads"] or os.cpu_count())
    from kernel.runtime import configure_environment

    configure_environment()
    from flows.batch import drain_queue, make_task_runner, run_manifest
    from kernel.manifest import load_manifest
    from kernel.progress import listening
    from kernel.settings import get_settings
    from kernel.threads import threads_per_worker

    if "manifest" in spec:  # the re-run of a finished batch
        started = time.perf_counter()
        outcomes = run_manifest(load_manifest(Path(spec["manifest"])), workers=spec["workers"])
        report = {"jobs": len(outcomes), "succeeded": sum(o.status == "succeeded" for o in outcomes),
                  "computed_steps": sum(o.computed_steps or 0 for o in outcomes),
                  "wall_seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
        print(RESULT + json.dumps(report), flush=True)
        return 0

    cluster = None
    runner: Any = None
    if spec["runner"] == "dask":
        from distributed import LocalCluster
        from prefect_dask import DaskTaskRunner

        # one long-lived cluster, as a Dask deployment would run: the warm-up loads its engines
        cluster = LocalCluster(n_workers=spec["workers"], threads_per_worker=1, processes=True)
        runner = DaskTaskRunner(address=cluster.scheduler_address)
    if spec["runner"] == "dask-cold":  # the batch starts its own cluster, whose workers load the engines
        runner = make_task_runner("dask", spec["workers"])
    else:
        warm = run_manifest(load_manifest(Path(spec["warm"])), workers=spec["workers"], task_runner=runner)
        assert all(o.status == "succeeded" for o in warm), warm
    print(READY, flush=True)
    sys.stdin.readline()

    watcher = StageCpu() if spec.get("stage_cpu") else None
    before = os.times()
    dask_before = dask_workers_cpu()
    started = time.perf_counter()
    with listening(watcher) if watcher is not None else contextlib.nullcontext():
        if spec["jobs_manifest"]:
            rows = load_manifest(Path(spec["jobs_manifest"]))
            outcomes = run_manifest(rows, workers=spec["workers"], task_runner=runner)
        else:
            outcomes = drain_queue(workers=spec["workers"], task_runner=runner)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = sum(after[:4]) - sum(before[:4])  # user + system, this process and its finished children
    cpu += dask_workers_cpu() - dask_before  # Dask's worker processes, while they live
    report = {
        "run_ids": [o.run_id for o in outcomes if o.run_id],
        "succeeded": sum(o.status == "succeeded" for o in outcomes),
        "computed_steps": sum(o.computed_steps or 0 for o in outcomes),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "engine_threads": threads_per_worker(spec["workers"], get_settings().engine_threads),
        "stage_cpu": watcher.means(len(outcomes)) if watcher is not None else None,
    }
    print(RESULT + json.dumps(report), flush=True)
    if cluster is not None:
        cluster.close()
    return 0


def dask_workers_cpu() -> float:
    """CPU seconds so far of this process's children (Dask's worker processes) and theirs (ffmpeg)."""
    import psutil

    total = 0.0
    for process in psutil.Process().children(recursive=True):
        times = process.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


class StageCpu:
    """Process CPU seconds (with finished children: ffmpeg) from each stage's start to its end;
    exact only when one job runs at a time."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.totals: dict[str, float] = defaultdict(float)

    @staticmethod
    def _now() -> float:
        return sum(os.times()[:4])

    def stage_started(self, stage: str) -> None:
        self.started[stage] = self._now()

    def stage_finished(self, stage: str, cache_hit: bool, seconds: float) -> None:
        self.totals[stage] += self._now() - self.started.pop(stage)

    def means(self, jobs: int) -> dict[str, float]:
        return {stage: round(total / max(1, jobs), 3) for stage, total in self.totals.items()}


if __name__ == "__main__":
    raise SystemExit(main())
