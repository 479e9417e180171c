"""Re-running a finished 20-job manifest: every step is cached, so what is timed is orchestration.

A CSV of --jobs one-sentence jobs (espeak, 128 px, one shared portrait) is narrated once with
`emoflow batch`, then re-run --repeat times, each time as a whole `emoflow batch jobs.csv` process
against the home's shared Prefect server: by default (every row resolved from the store by the fast
path) and with `--no-fast-path` (every row through the batch flow). Reported: the median wall time, per
job, and the same minus the process's fixed start (the median of `python -c "import ..."` of what the
path imports), which is what a longer manifest pays per job. One run on one machine: read the per-job
figures against each other.

Writes bench/results/manifest_rerun.json. Run: .venv/bin/python bench/manifest_rerun.py [--jobs 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _wall(command: list[str], env: dict[str, str], cwd: Path, resolved: int | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found = re.search(r"(\d+) of them resolved from the store", done.stdout)
    if resolved is not None and (int(found.group(1)) if found else 0) != resolved:
        raise SystemExit(f"{' '.join(command)}: expected {resolved} rows resolved, got:\n{done.stdout}")
    return seconds


def write_manifest(path: Path, jobs: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "script", "portrait", "tts_engine", "size", "output_dir"])
        for n in range(jobs):
            script = f"Job number {n} is finished already."
            writer.writerow([f"rerun-{n}", script, "skimage:astronaut", "espeak", 128, f"out/{n}"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/manifest_rerun.py", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    emoflow = [sys.executable, "-m", "emoflow.cli"]
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-rerun-") as tmp:
        folder = Path(tmp)
        write_manifest(folder / "jobs.csv", args.jobs)
        own = ("EMOFLOW_", "PREFECT_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
        env |= {"EMOFLOW_HOME": str(folder / "home")}
        batch = [*emoflow, "batch", "jobs.csv"]
        try:
            first = _wall(batch, env, folder)  # computes every step, starts the home's Prefect server
            reruns = [_wall(batch, env, folder, resolved=args.jobs) for _ in range(args.repeat)]
            full = [_wall([*batch, "--no-fast-path"], env, folder, resolved=0) for _ in range(args.repeat)]
            python = env | {"PYTHONPATH": str(ROOT)}
            starts = [
                _wall([sys.executable, "-c", "import flows.batch"], python, folder)
                for _ in range(args.repeat)
            ]
            fast_starts = [
                _wall([sys.executable, "-c", "import emoflow.cli, flows.fast_path"], python, folder)
                for _ in range(args.repeat)
            ]
        finally:
            subprocess.run(
                [*emoflow, "server", "stop"], env=env, capture_output=True, check=False, cwd=folder
            )
    rerun, start = statistics.median(reruns), statistics.median(fast_starts)
    rerun_full, start_full = statistics.median(full), statistics.median(starts)
    result = {
        "jobs": args.jobs,
        "repeat": args.repeat,
        "first_batch_s": round(first, 1),
        "rerun_fast_path_s": round(rerun, 2),
        "rerun_fast_path_per_job_s": round(rerun / args.jobs, 3),
        "import_cli_and_fast_path_s": round(start, 2),
        "rerun_fast_path_per_job_after_start_s": round((rerun - start) / args.jobs, 3),
        "rerun_full_flow_s": round(rerun_full, 2),
        "rerun_full_flow_per_job_s": round(rerun_full / args.jobs, 3),
        "import_flows_batch_s": round(start_full, 2),
        "rerun_full_flow_per_job_after_start_s": round((rerun_full - start_full) / args.jobs, 3),
        "samples": {
            "fast_path": reruns,
            "full_flow": full,
            "imports": starts,
            "fast_path_imports": fast_starts,
        },
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / "manifest_rerun.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    main()
