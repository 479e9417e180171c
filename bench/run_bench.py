"""End-to-end benchmark of `narrate` on the embedded engines.

For the demo job and a ~30 s script it measures, in one process:
- wall time of the flow over speech duration (real-time factor);
- seconds per stage (engine work, as the tasks time it);
- orchestration overhead: flow wall time minus engine work (Prefect + store + artifact I/O);
- the wall time of an identical re-run (every step should be a cache hit).

Writes bench/results/narrate.json and prints a Markdown table for bench/README.md.
Run: .venv/bin/python bench/run_bench.py [--out bench/results/narrate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LONG_SCRIPT = (
    "[neutral] Good morning, and welcome to the quarterly update from the harbour office. "
    "This season we repaired the north pier, replaced forty lamps along the promenade, "
    "and opened the new ferry terminal two weeks ahead of schedule. "
    "[happy 0.8] Visitor numbers rose by a third, and the summer market was the busiest we have ever had. "
    "[angry 0.8] But the storm in October flooded the warehouses again, and the promised sea wall "
    "has still not been funded. We were told it would be built this year. It was not. "
    "[sad 0.7] Two of our oldest boats were lost, and the families who ran them for generations "
    "have had to leave the harbour. [neutral] The full report is available at the office."
)


class StageTimer:
    """A kernel.progress listener that records engine seconds per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cache_hits: dict[str, bool] = {}

    def stage_started(self, stage: str) -> None: ...

    def stage_progress(self, stage: str, done: int, total: int) -> None: ...

    def stage_finished(self, stage: str, cache_hit: bool, seconds: float) -> None:
        self.seconds[stage], self.cache_hits[stage] = seconds, cache_hit

    def stage_failed(self, stage: str, error: str) -> None:
        raise RuntimeError(f"{stage} failed during the benchmark: {error}")


def narrate_timed(spec: Any) -> dict[str, Any]:
    from flows.narrate import narrate_here
    from kernel.progress import listening
    from kernel.settings import get_settings
    from tasks.context import open_store
    from tasks.intake import submit_job

    timer = StageTimer()
    started = time.perf_counter()
    job_id = submit_job(spec, get_settings(), open_store())
    submitted = time.perf_counter()
    with listening(timer):
        result = narrate_here(job_id)
    wall = time.perf_counter() - submitted
    record = open_store().run(result.run_id)
    speak = next(s for s in record.steps if s.stage == "speak")
    speech_s = float(speak.outputs["speech"].metadata["seconds"])
    engine_s = sum(timer.seconds.values())
    return {
        "run_id": result.run_id,
        "speech_seconds": round(speech_s, 3),
        "submit_seconds": round(submitted - started, 3),
        "flow_wall_seconds": round(wall, 3),
        "real_time_factor": round(wall / speech_s, 3),
        "stage_seconds": {k: round(v, 3) for k, v in timer.seconds.items()},
        "steps_computed": sum(1 for hit in timer.cache_hits.values() if not hit),
        "engine_seconds": round(engine_s, 3),
        "orchestration_seconds": round(wall - engine_s, 3),
        "orchestration_share": round((wall - engine_s) / wall, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "narrate.json")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="emoflow-bench-"))
    os.environ["EMOFLOW_HOME"] = str(home)
    os.environ["EMOFLOW_OUTPUT_DIR"] = str(home / "outputs")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from kernel.jobs import load_job_file, parse_job
    from kernel.runtime import configure_environment

    configure_environment()
    from prefect import flow

    @flow
    def empty() -> None:
        return None

    started = time.perf_counter()
    empty()  # pays the ephemeral Prefect server's start once, outside the measured jobs
    prefect_start = time.perf_counter() - started

    demo = load_job_file(ROOT / "examples" / "demo" / "job.yaml", {"output_dir": str(home / "demo")})
    long_job = parse_job(
        {
            "name": "long",
            "script": LONG_SCRIPT,
            "portrait": "skimage:astronaut",
            "output_dir": str(home / "long"),
        },
        ROOT,
    )
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "prefect_ephemeral_start_seconds": round(prefect_start, 2),
        "jobs": {},
    }
    for name, spec in (("demo", demo), ("long", long_job)):
        print(f"narrating {name} ...", flush=True)
        first = narrate_timed(spec)
        print(f"re-running {name} ...", flush=True)
        again = narrate_timed(spec)
        results["jobs"][name] = {"first": first, "rerun": again}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    stages = ("plan", "speak", "align", "feel", "render", "publish")
    lines = [
        "| job | speech s | flow wall s | RTF | "
        + " | ".join(stages)
        + " | orchestration s (share) | re-run wall s "
        "| re-run steps computed |",
        "|---|---|---|---|" + "---|" * len(stages) + "---|---|---|",
    ]
    for name, job in results["jobs"].items():
        first, again = job["first"], job["rerun"]
        per_stage = " | ".join(f"{first['stage_seconds'].get(s, 0):.2f}" for s in stages)
        lines.append(
            f"| {name} | {first['speech_seconds']:.1f} | {first['flow_wall_seconds']:.1f} "
            f"| {first['real_time_factor']:.2f} | {per_stage} "
            f"| {first['orchestration_seconds']:.2f} ({first['orchestration_share']:.0%}) "
            f"| {again['flow_wall_seconds']:.2f} | {again['steps_computed']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
