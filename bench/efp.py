"""Emotion-understanding figures of issue #3 in one run.

- `emoflow evaluate efp` on the shared data: the learned EFP on EmoDB (leave one speaker out), the FER
  judge on CK+, the planner on the description case set, and the pseudo-labeller on MEAD;
- EFP milliseconds per word for the embedded engine on a ~30 s Piper narration (warm, median of 5),
  next to the learned engine's figure from its EmoDB run (features + network, per word).

Writes bench/results/efp.json and copies the confusion PNGs to bench/results/efp/.
Run: .venv/bin/python bench/efp.py --data ../shared/data   (about 10 minutes on the 2-core machine)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_bench import LONG_SCRIPT  # noqa: E402


def embedded_ms_per_word(repeats: int = 5) -> dict[str, Any]:
    from models.align.engine_timings import EngineTimingAligner
    from models.efp import EmbeddedEFP
    from models.plan.rules import RulePlanner
    from models.tts.piper_engine import PiperEngine

    plan = RulePlanner().plan(LONG_SCRIPT)
    speech = PiperEngine().synthesize(plan)
    timings = EngineTimingAligner().align(speech, plan)
    efp = EmbeddedEFP()
    efp.predict(speech, timings, plan)  # warm: MiniLM and librosa load on the first call
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        efp.predict(speech, timings, plan)
        seconds.append(time.perf_counter() - start)
    words = len(plan.words)
    return {
        "engine": efp.engine,
        "words": words,
        "speech_s": round(speech.duration, 2),
        "median_ms_per_word": round(1000 * statistics.median(seconds) / words, 2),
        "best_ms_per_word": round(1000 * min(seconds) / words, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="shared data root (emodb/, ckplus48/, mead/)"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "efp")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "efp.json")
    args = parser.parse_args()

    started = time.perf_counter()
    command = [str(ROOT / ".venv" / "bin" / "emoflow"), "evaluate", "efp", "--data", str(args.data)]
    subprocess.run([*command, "--out", str(args.work)], check=True)
    report = json.loads((args.work / "report.json").read_text(encoding="utf-8"))
    evaluate_s = time.perf_counter() - started

    pictures = args.out.parent / "efp"
    pictures.mkdir(parents=True, exist_ok=True)
    for png in sorted(args.work.rglob("*.png")):
        name = png.name if png.parent == args.work else f"{png.parent.name}_{png.name}"
        shutil.copy(png, pictures / name)

    emodb = report["evaluations"].get("emodb", {})
    result = {
        "machine": platform.platform(),
        "evaluate_efp_seconds": round(evaluate_s, 1),
        "evaluations": report["evaluations"],
        "speed": {
            "embedded": embedded_ms_per_word(),
            "learned_emodb_ms_per_word": emodb.get("result", {}).get("ms_per_word"),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(result["speed"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
