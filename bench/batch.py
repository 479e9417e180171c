"""Batch benchmark: throughput of N short jobs on one worker vs two, the re-run of a finished
manifest, and per-job store overhead on SQLite vs PostgreSQL.

Run: .venv/bin/python bench/batch.py [--jobs 20] [--postgres URL] [--out bench/results/batch.json]
Each configuration gets a fresh store, so only the re-run can reuse steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The ferry leaves at nine.",
    "Please bring your own lunch.",
    "The museum opens late on Fridays.",
    "We found the keys under the mat.",
    "The storm passed before midnight.",
]


def manifest(path: Path, jobs: int, out: Path) -> Path:
    lines = ["id,script,portrait,output_dir"]
    for i in range(jobs):
        # distinct scripts, so no job reuses another's steps
        lines.append(f"job{i:02d},[happy 0.{(i % 9) + 1}] {SENTENCES[i % len(SENTENCES)]} Number {i}.,"
                     f"skimage:astronaut,{out}/job{i:02d}")  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def use_store(database_url: str | None) -> Path:
    from tasks.context import reset_stores

    home = Path(tempfile.mkdtemp(prefix="emoflow-bench-batch-"))
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
    return home


def timed_batch(path: Path, workers: int) -> dict[str, Any]:
    from emoflow.manifest import load_manifest
    from flows.batch import run_manifest
    from tasks.context import open_store

    started = time.perf_counter()
    outcomes = run_manifest(load_manifest(path), workers=workers)
    wall = time.perf_counter() - started
    store = open_store()
    engine = store_overhead = 0.0
    for outcome in outcomes:
        run = store.run(outcome.run_id)
        job_wall = (run.finished_at - run.started_at).total_seconds()
        step_seconds = sum(step.seconds or 0.0 for step in run.steps)
        engine += step_seconds
        store_overhead += job_wall - step_seconds
    return {
        "workers": workers,
        "jobs": len(outcomes),
        "succeeded": sum(o.status == "succeeded" for o in outcomes),
        "wall_seconds": round(wall, 2),
        "jobs_per_minute": round(60 * len(outcomes) / wall, 2),
        "computed_steps": sum(o.computed_steps or 0 for o in outcomes),
        "mean_job_step_seconds": round(engine / len(outcomes), 3),
        "mean_job_overhead_seconds": round(store_overhead / len(outcomes), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--postgres", help="SQLAlchemy URL of an empty PostgreSQL database (it is wiped)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from emoflow.runtime import configure_environment

    configure_environment()
    work = Path(tempfile.mkdtemp(prefix="emoflow-bench-manifest-"))
    path = manifest(work / "jobs.csv", args.jobs, work / "out")
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}

    use_store(None)
    timed_batch(manifest(work / "warm.csv", 1, work / "warm"), 1)  # engines and Prefect load once
    for workers in (1, 2):
        use_store(None)
        print(f"{args.jobs} jobs on {workers} worker(s) ...", flush=True)
        results[f"sqlite_{workers}_workers"] = timed_batch(path, workers)
    print("re-running the finished manifest ...", flush=True)
    results["sqlite_rerun"] = timed_batch(path, 2)
    results["speedup_two_workers"] = round(
        results["sqlite_1_workers"]["wall_seconds"] / results["sqlite_2_workers"]["wall_seconds"], 2
    )
    if args.postgres:
        use_store(args.postgres)
        print(f"{args.jobs} jobs on PostgreSQL ...", flush=True)
        results["postgres_2_workers"] = timed_batch(path, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
