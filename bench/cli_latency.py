"""Whole-process wall time of `emoflow` commands when there is nothing to do (see bench/README.md).

For one job narrated once beforehand, every step cached:
- `emoflow narrate JOB` with the home's shared Prefect server already running (the default);
- the same with EMOFLOW_PREFECT_SERVER=ephemeral (Prefect's own server inside the process, as before);
- `emoflow runs` (no Prefect at all).
Each figure is the median of --repeat runs (5) in fresh processes, on the same machine in one run, so
their ratios are what to read: the machine is noisy.

Writes bench/results/cli_latency.json. Run: .venv/bin/python bench/cli_latency.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
JOB = "name: cached\nscript: 'Nothing is left to do.'\nportrait: skimage:astronaut\ntts_engine: espeak\n"
JOB += "size: 128\noutput_dir: out\n"


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=env["EMOFLOW_BENCH_DIR"])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/cli_latency.py", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    emoflow = [sys.executable, "-m", "emoflow.cli"]
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-cli-") as tmp:
        folder = Path(tmp)
        (folder / "job.yaml").write_text(JOB)
        own = ("EMOFLOW_", "PREFECT_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
        env |= {"EMOFLOW_HOME": str(folder / "home"), "EMOFLOW_BENCH_DIR": str(folder)}
        narrate = [*emoflow, "narrate", "job.yaml"]
        try:
            first = _wall(narrate, env)  # computes every step and starts the shared server
            shared = [_wall(narrate, env) for _ in range(args.repeat)]
            ephemeral_env = env | {"EMOFLOW_PREFECT_SERVER": "ephemeral"}
            ephemeral = [_wall(narrate, ephemeral_env) for _ in range(args.repeat)]
            runs = [_wall([*emoflow, "runs"], env) for _ in range(args.repeat)]
            imports = [
                _wall([sys.executable, "-c", "import flows.narrate"], env | {"PYTHONPATH": str(ROOT)})
                for _ in range(args.repeat)
            ]
        finally:
            subprocess.run([*emoflow, "server", "stop"], env=env, capture_output=True, check=False)
    result = {
        "repeat": args.repeat,
        "first_narrate_s": round(first, 2),
        "cached_narrate_shared_server_s": round(statistics.median(shared), 2),
        "cached_narrate_ephemeral_server_s": round(statistics.median(ephemeral), 2),
        "runs_s": round(statistics.median(runs), 2),
        "import_flows_narrate_s": round(statistics.median(imports), 2),
        "samples": {"shared": shared, "ephemeral": ephemeral, "runs": runs, "imports": imports},
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / "cli_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    main()
