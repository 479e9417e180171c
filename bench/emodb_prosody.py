"""What EmoDB's actors do to their voices per emotion, relative to their own neutral reading of the sentence.

The rows of `prompts/emotions.yaml`'s `prosody` come from this table (median over the six speakers, each
speaker's median over its clips). Writes bench/results/emodb_prosody.json and prints the table.

Run: .venv/bin/python bench/emodb_prosody.py --data ../shared/data \
        [--clipset outputs/evaluate/speech/listener/clipset]
(about 3 minutes; `--clipset` adds the speaking rate from the words `emoflow evaluate speech` aligned)
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.prosody import ClipProsody, emodb_profile, measure  # noqa: E402

CACHE = ROOT / "outputs" / "bench" / "emodb_prosody_clips.json"


@functools.cache
def _cache() -> dict[str, dict[str, float] | None]:
    """CACHE as read once per run; `_measured` adds to it and writes it back."""
    return json.loads(CACHE.read_text(encoding="utf-8")) if CACHE.is_file() else {}


def _measured(path: Path) -> ClipProsody:
    """One clip's prosody, kept in CACHE by file name and size (EmoDB's files do not change)."""
    cache = _cache()
    key = f"{path.name}:{path.stat().st_size}"
    if key not in cache:
        samples, rate = sf.read(path, dtype="float32", always_2d=False)
        try:
            cache[key] = measure(samples, int(rate)).as_dict()
        except ValueError:
            cache[key] = None
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        CACHE.write_text(json.dumps(cache), encoding="utf-8")
    if cache[key] is None:
        raise ValueError("under 0.2 s of voiced speech")
    return ClipProsody(**cache[key])


def _word_spans(clipset: Path) -> dict[str, list[tuple[float, float]]]:
    from models.efp.dataset import read_clip_set

    return {Path(c.audio).name: [(w.start, w.end) for w in c.words] for c in read_clip_set(clipset)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--clipset", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "emodb_prosody.json")
    args = parser.parse_args()
    folder = args.data / "emodb" if (args.data / "emodb").is_dir() else args.data
    started = time.perf_counter()
    spans = _word_spans(args.clipset) if args.clipset else None

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"measured {done}/{total}", flush=True)

    profile = emodb_profile(folder, _measured, spans, progress)
    profile["seconds"] = round(time.perf_counter() - started, 1)
    profile["machine"] = platform.platform()
    args.out.write_text(json.dumps(profile, indent=2), encoding="utf-8")
    keys = sorted({k for row in profile["emotions"].values() for k in row})
    print("| emotion | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for emotion, row in profile["emotions"].items():
        cells = [
            f"{row[k]['median']:+.2f} ({row[k]['min']:+.1f}..{row[k]['max']:+.1f})" if k in row else "-"
            for k in keys
        ]
        print(f"| {emotion} | " + " | ".join(cells) + " |")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
