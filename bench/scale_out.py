"""Throughput through the deployment path: N jobs drained by one `prefect worker` vs two (bench/README.md).

Each configuration gets a fresh loopback cluster (tests/reliability/cluster.py: a Prefect server and the
store on PostgreSQL, moto's S3 as the blob root, prefect.yaml's deployment), the N jobs submitted
beforehand, then one drain run per worker; timed from the first deployment run to the last job's success.
Each worker takes one flow run at a time with one engine thread pool (EMOFLOW_WORKERS=1), as one
machine's worker slot would. On this 2-core machine two workers share the same two cores, so the figure
says what the deployment path costs, not what a second machine would add.

Run: .venv/bin/python bench/scale_out.py --postgres URL [--jobs 20]
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
sys.path.insert(0, str(ROOT))

from stores.status import JobStatus  # noqa: E402
from tests.reliability.cluster import Cluster, wait_for  # noqa: E402
from tests.reliability.helpers import FAST_JOB  # noqa: E402

SENTENCES = ["The ferry leaves at nine.", "Please bring your own lunch.", "The storm passed before midnight."]


def measure(postgres: str, jobs: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emoflow-scale-") as tmp:
        workdir = Path(tmp)
        files = []
        for n in range(jobs):
            files.append(workdir / f"job{n}.yaml")
            files[-1].write_text(f"name: scale-{n}\nscript: '{SENTENCES[n % 3]} Number {n}.'\n{FAST_JOB}")
        with Cluster(workdir, postgres, lease_seconds=60) as cluster:
            os.environ.update(cluster.s3_settings())
            store = cluster.open_store()
            cluster.submit(files)
            for n in range(workers):
                cluster.start_worker(f"host-{n}")
            started = time.perf_counter()
            for _ in range(workers):
                cluster.run_deployment()

            def done() -> bool:
                return sum(run.job.status == JobStatus.SUCCEEDED for run in store.list_runs(jobs * 2)) >= jobs

            wait_for(done, 3600, f"{jobs} jobs on {workers} worker(s)")
            seconds = time.perf_counter() - started
            store.close()
    return {
        "workers": workers,
        "jobs": jobs,
        "seconds": round(seconds, 1),
        "jobs_per_minute": round(60 * jobs / seconds, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/scale_out.py", description=__doc__)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server URL (bash .ci/postgres.sh)")
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args(argv)
    configurations = [measure(args.postgres, args.jobs, workers) for workers in (1, 2)]
    result = {
        "configurations": configurations,
        "two_over_one": round(configurations[0]["seconds"] / configurations[1]["seconds"], 2),
        "cpus": os.cpu_count(),
    }
    (ROOT / "bench" / "results" / "scale_out.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
