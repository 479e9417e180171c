"""Whole-process wall time of `emoflow` commands when there is nothing to do (see bench/README.md).

For one job narrated once beforehand, every step cached:
- `emoflow narrate JOB` (the default: the fast path resolves it from the store, no flow, no engines; the
  run is recorded in the home's shared Prefect server through its REST API);
- `emoflow narrate JOB --no-fast-path` (the full flow, every step a cache hit, shared server running);
- the full flow with EMOFLOW_PREFECT_SERVER=ephemeral (Prefect's own server inside the process);
- `emoflow runs` (no Prefect at all), and `python -c "import flows.narrate"` / `"import flows.fast_path"`.
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


RESOLVED = "resolved from the store"


def _wall(command: list[str], env: dict[str, str], resolved: bool | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, check=True, capture_output=True, text=True, cwd=env["EMOFLOW_BENCH_DIR"]
    )
    seconds = time.perf_counter() - started
    if resolved is not None and (RESOLVED in done.stdout) != resolved:  # timed what was meant to be timed
        raise SystemExit(f"{' '.join(command)}: expected resolved={resolved}, got:\n{done.stdout}")
    return seconds


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
            first = _wall(narrate, env, resolved=False)  # computes every step, starts the shared server
            fast = [_wall(narrate, env, resolved=True) for _ in range(args.repeat)]
            shared = [_wall([*narrate, "--no-fast-path"], env, resolved=False) for _ in range(args.repeat)]
            ephemeral_env = env | {"EMOFLOW_PREFECT_SERVER": "ephemeral"}  # no server to record in: the flow
            ephemeral = [_wall(narrate, ephemeral_env, resolved=False) for _ in range(args.repeat)]
            runs = [_wall([*emoflow, "runs"], env) for _ in range(args.repeat)]
            python = env | {"PYTHONPATH": str(ROOT)}
            imports = [
                _wall([sys.executable, "-c", "import flows.narrate"], python) for _ in range(args.repeat)
            ]
            fast_imports = [
                _wall([sys.executable, "-c", "import emoflow.cli, flows.fast_path"], python)
                for _ in range(args.repeat)
            ]
        finally:
            subprocess.run([*emoflow, "server", "stop"], env=env, capture_output=True, check=False)
    result = {
        "repeat": args.repeat,
        "first_narrate_s": round(first, 2),
        "cached_narrate_fast_path_s": round(statistics.median(fast), 2),
        "cached_narrate_full_flow_shared_server_s": round(statistics.median(shared), 2),
        "cached_narrate_ephemeral_server_s": round(statistics.median(ephemeral), 2),
        "runs_s": round(statistics.median(runs), 2),
        "import_flows_narrate_s": round(statistics.median(imports), 2),
        "import_cli_and_fast_path_s": round(statistics.median(fast_imports), 2),
        "samples": {
            "fast_path": fast,
            "full_flow_shared": shared,
            "full_flow_ephemeral": ephemeral,
            "runs": runs,
            "imports": imports,
            "fast_path_imports": fast_imports,
        },
        "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / "cli_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return result


if __name__ == "__main__":
    main()
