"""Re-running a finished 20-job manifest: every step is cached, so what is timed is orchestration.

A CSV of --jobs one-sentence jobs (espeak, 128 px, one shared portrait) is narrated once with
`emoflow batch`, then re-run --repeat times, each time as a whole `emoflow batch jobs.csv` process
against the home's shared Prefect server: by default (every row resolved from the store by the fast
path) and with `--no-fast-path` (every row through the batch flow). Reported: the median wall time, per
job, and the same minus the process's fixed start (the median of `python -c "import ..."` of what the
path imports), which is what a longer manifest pays per job; the ratio of the two paths; and, since
this machine's two cores are shared with other work, the CPU seconds each re-run took in its own
process and in the Prefect server's (both barely move with the load, where wall times do), with the
load average before and after. One run on one machine: read the figures against each other.

--tree DIR times a copy of the packages (kernel, models, stores, tasks, flows, emoflow, prompts) put
on PYTHONPATH, so edits made to the checkout meanwhile cannot change what is timed; the engines'
remembered identities follow that copy.

Writes bench/results/manifest_rerun.json (or --out). Run: .venv/bin/python bench/manifest_rerun.py [--jobs 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernel", "models", "stores", "tasks", "flows", "emoflow", "prompts")


@dataclass
class Timed:
    wall: float  # seconds
    cpu: float  # CPU seconds of the process (and its children)
    server_cpu: float  # CPU seconds of the home's Prefect server meanwhile


def _run(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    resolved: int | None = None,
    server: Path | None = None,
) -> Timed:
    before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), _server_cpu(server)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd, check=False)
    seconds = time.perf_counter() - started
    after, server_after = resource.getrusage(resource.RUSAGE_CHILDREN), _server_cpu(server)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    found = re.search(r"(\d+) of them resolved from the store", done.stdout)
    if resolved is not None and (int(found.group(1)) if found else 0) != resolved:
        raise SystemExit(f"{' '.join(command)}: expected {resolved} rows resolved, got:\n{done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(seconds, cpu, server_after - server_before)


def _wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    return _run(command, env, cwd).wall


def _server_cpu(state: Path | None) -> float:
    """CPU seconds the home's Prefect server (its pid in emoflow-server.json) has used so far; 0 if none."""
    if state is None:
        return 0.0
    try:
        pid = int(json.loads(state.read_text())["pid"])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, KeyError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


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
    parser.add_argument("--tree", type=Path, help="time a copy of the packages made from this folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "manifest_rerun.json")
    args = parser.parse_args(argv)
    emoflow = [sys.executable, "-m", "emoflow.cli"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-rerun-") as tmp:
        folder = Path(tmp)
        write_manifest(folder / "jobs.csv", args.jobs)
        own = ("EMOFLOW_", "PREFECT_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
        env |= {"EMOFLOW_HOME": str(folder / "home")}
        packages = ROOT
        if args.tree is not None:
            packages = folder / "tree"
            for package in PACKAGES:
                shutil.copytree(
                    args.tree / package, packages / package, ignore=shutil.ignore_patterns("__pycache__")
                )
            env |= {"PYTHONPATH": str(packages)}
        server = folder / "home" / "prefect" / "emoflow-server.json"
        batch = [*emoflow, "batch", "jobs.csv"]
        try:
            first = _wall(batch, env, folder)  # computes every step, starts the home's Prefect server
            reruns = [_run(batch, env, folder, args.jobs, server) for _ in range(args.repeat)]
            full = [_run([*batch, "--no-fast-path"], env, folder, 0, server) for _ in range(args.repeat)]
            python = env | {"PYTHONPATH": str(packages)}
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
    load_after = os.getloadavg()
    rerun, start = statistics.median(t.wall for t in reruns), statistics.median(fast_starts)
    rerun_full, start_full = statistics.median(t.wall for t in full), statistics.median(starts)

    def cpu_per_job(timed: list[Timed]) -> dict[str, float]:
        return {
            "process": round(statistics.median(t.cpu for t in timed) / args.jobs, 3),
            "prefect_server": round(statistics.median(t.server_cpu for t in timed) / args.jobs, 3),
        }

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
        "fast_path_vs_full_flow": round(rerun / rerun_full, 3),
        "cpu_per_job_s": {"fast_path": cpu_per_job(reruns), "full_flow": cpu_per_job(full)},
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "samples": {
            "fast_path": [t.wall for t in reruns],
            "full_flow": [t.wall for t in full],
            "fast_path_cpu": [[round(t.cpu, 3), round(t.server_cpu, 3)] for t in reruns],
            "full_flow_cpu": [[round(t.cpu, 3), round(t.server_cpu, 3)] for t in full],
            "imports": starts,
            "fast_path_imports": fast_starts,
        },
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    main()
