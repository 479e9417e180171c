"""Benchmark of the parler engine in its own environment (issue #20 item 4), on tiny random weights.

What it measures, through the same protocol a job uses (`RemoteSpeechEngine`):
- the environment: its install record (seconds, lock) and its size on disk;
- start-up: the child's imports, the engine's identity (which hashes the checkpoint's files) and its hello;
- the first synthesis (it loads the checkpoint with parler-tts's `from_pretrained`) and warm ones:
  seconds, audio seconds, real-time factor, over a two-sentence plan whose emotion changes (3 pieces).

With the tiny checkpoint (models/tts/parler_fixture.py) the figures are those of the code path: one
layer of encoder and decoder, and the full-size DAC codec, which dominates. They say nothing about a
real checkpoint's speed (Parler-TTS Mini is 880 M parameters; that needs a GPU to be practical).
One run on a shared 2-core machine: compare rows of one run.

Run: .venv/bin/python bench/neural_tts.py --engines-dir DIR [--model CHECKPOINT] [--out PATH]
(DIR as `emoflow engines install parler` built it; the default model is the tiny one its check wrote).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.tts.environments import SMOKE_MODEL_DIR, environment  # noqa: E402
from models.tts.remote import RemoteSpeechEngine  # noqa: E402
from models.types import EmotionPlan, PlannedWord  # noqa: E402

SCRIPT = "Hello there, my friends. This must never happen again! We miss them every day."
WARM_RUNS = 3


def plan() -> EmotionPlan:
    import re

    labels = ["neutral"] * 4 + ["angry"] * 5 + ["sad"] * 5
    words = [
        PlannedWord(
            i, m.group(), m.start(), m.end(), labels[i], 0.0 if labels[i] == "neutral" else 0.9, "tag"
        )
        for i, m in enumerate(re.finditer(r"[\w']+", SCRIPT))
    ]
    return EmotionPlan(script=SCRIPT, words=words)


def disk_mb(path: Path) -> float:
    done = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "neural_tts.json")
    args = parser.parse_args()

    env = environment("parler", root=args.engines_dir)
    if env.status() != "installed":
        print(f"parler environment in {env.root} is {env.status()}; run `emoflow engines install parler`")
        return 1
    model = args.model or env.root / SMOKE_MODEL_DIR
    engine = RemoteSpeechEngine(
        env, timeout_s=600, environment_overrides={"EMOFLOW_PARLER_MODEL": str(model)}
    )
    the_plan = plan()
    try:
        started = time.perf_counter()
        identity = engine.identity()
        startup_s = time.perf_counter() - started

        runs: list[dict[str, float]] = []
        for _ in range(1 + WARM_RUNS):
            started = time.perf_counter()
            speech = engine.synthesize(the_plan)
            seconds = time.perf_counter() - started
            runs.append({"seconds": round(seconds, 2), "audio_s": round(speech.duration, 2)})
    finally:
        engine.close()

    warm = sorted(run["seconds"] / run["audio_s"] for run in runs[1:])
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "model": str(model),
        "model_mb": round(disk_mb(model), 1),
        "environment_mb": round(disk_mb(env.venv), 1),
        "install": env.record(),
        "engine": identity.label,
        "pieces": 3,
        "startup_s": round(startup_s, 2),
        "first_synthesis": runs[0],
        "warm_syntheses": runs[1:],
        "warm_rtf_median": round(warm[len(warm) // 2], 2),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print()
    print("| figure | tiny checkpoint |")
    print("|---|---|")
    install = result["install"] or {}
    print(f"| install from the lock, seconds (warm pip cache) | {install.get('seconds')} |")
    print(f"| environment on disk | {result['environment_mb'] / 1024:.1f} GB |")
    print(f"| checkpoint on disk | {result['model_mb']:.0f} MB |")
    print(f"| start-up to hello (imports, identity) | {result['startup_s']} s |")
    first = result["first_synthesis"]
    print(
        f"| first synthesis (loads the checkpoint) | {first['seconds']} s for {first['audio_s']} s of audio |"
    )
    print(f"| warm synthesis, real-time factor (median of {WARM_RUNS}) | {result['warm_rtf_median']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
