"""Benchmark of the delivery audio (issue #20 item 5): loudness normalisation, export and sentence joins.

On 60 s of the render evaluation's synthetic speech (models/evaluate/speech.py) at 22.05 kHz, at three
input levels (quiet, as generated, hot) and two targets (-16 and -23 LUFS):
- loudness: integrated loudness, true peak and LRA before and after `normalise_loudness`, the deviation
  from the target (measured on the written file), loudnorm's mode, and seconds per minute of audio;
- export:   seconds per minute to encode the normalised WAV as mp3 and m4a, and the encoded loudness;
- joins:    seconds per minute for the pydub sentence joins (`models/tts/joins.py`), 2.5 s sentences.

One run on a shared machine: timings are noisy, compare rows of one run.
Writes bench/results/delivery_audio.json and prints the Markdown table of bench/README.md.
Run: .venv/bin/python bench/delivery_audio.py [--out PATH]
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

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.evaluate.speech import synthetic_speech  # noqa: E402
from models.publish.audio import encode_speech, measure_loudness, normalise_loudness  # noqa: E402
from models.tts import joins  # noqa: E402

RATE = 22050
SECONDS = 60.0
LEVELS = {"quiet (x0.2)": 0.2, "as generated": 1.0, "hot (x2.5)": 2.5}
TARGETS = (-16.0, -23.0)


def loudness_rows(work: Path, speech: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for level, scale in LEVELS.items():
        source = work / f"in-{scale}.wav"
        sf.write(source, np.clip(scale * speech, -1, 1), RATE, subtype="PCM_16")
        for target in TARGETS:
            out = work / "out.wav"
            started = time.perf_counter()
            report = normalise_loudness(source, out, target_lufs=target)
            seconds = time.perf_counter() - started
            measured = measure_loudness(out)
            assert measured.integrated_lufs is not None
            rows.append(
                {
                    "input": level,
                    "target_lufs": target,
                    "input_lufs": report.input.integrated_lufs,
                    "input_true_peak_db": report.input.true_peak_db,
                    "input_lra": report.input.range_lu,
                    "output_lufs": measured.integrated_lufs,
                    "output_true_peak_db": measured.true_peak_db,
                    "output_lra": measured.range_lu,
                    "deviation_lu": round(measured.integrated_lufs - target, 2),
                    "normalization": report.normalization,
                    "note": report.note,
                    "seconds": round(seconds, 3),
                    "seconds_per_minute": round(seconds / (SECONDS / 60), 3),
                }
            )
    return rows


def export_rows(work: Path, speech: np.ndarray) -> list[dict[str, Any]]:
    source = work / "as-generated.wav"
    sf.write(source, speech, RATE, subtype="PCM_16")
    normalised = work / "speech.wav"
    normalise_loudness(source, normalised)
    rows = []
    for speech_format in ("mp3", "m4a"):
        started = time.perf_counter()
        out = encode_speech(normalised, work / f"speech.{speech_format}")
        seconds = time.perf_counter() - started
        measured = measure_loudness(out)
        rows.append(
            {
                "format": speech_format,
                "bytes": out.stat().st_size,
                "output_lufs": measured.integrated_lufs,
                "output_true_peak_db": measured.true_peak_db,
                "seconds_per_minute": round(seconds / (SECONDS / 60), 3),
            }
        )
    return rows


def joins_row(speech: np.ndarray) -> dict[str, Any]:
    sentence = round(2.5 * RATE)
    pieces = [speech[i : i + sentence] for i in range(0, len(speech), sentence)]
    started = time.perf_counter()
    total = 0
    for k, piece in enumerate(pieces):
        chunk = joins.sentence_chunk(
            piece, RATE, fade_in=k > 0, fade_out=k + 1 < len(pieces), pause_samples=round(0.25 * RATE)
        )
        total += len(chunk)
    seconds = time.perf_counter() - started
    return {
        "sentences": len(pieces),
        "fade_ms": joins.JOIN_FADE_MS,
        "samples_out": total,
        "samples_expected": len(speech) + len(pieces) * round(0.25 * RATE),
        "seconds_per_minute": round(seconds / (SECONDS / 60), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "delivery_audio.json")
    args = parser.parse_args()
    speech = synthetic_speech(SECONDS, RATE).samples
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-audio-") as tmp:
        work = Path(tmp)
        result = {
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "audio": {
                "seconds": SECONDS,
                "sample_rate": RATE,
                "signal": "models.evaluate.speech.synthetic_speech",
            },
            "loudness": loudness_rows(work, speech),
            "export": export_rows(work, speech),
            "joins": joins_row(speech),
        }
    partial = args.out.with_name(f".{args.out.name}.partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, args.out)

    print("| input | target | in LUFS / dBTP / LRA | out LUFS / dBTP / LRA | deviation | mode | s per min |")
    print("|---|---|---|---|---|---|---|")
    for r in result["loudness"]:
        print(
            f"| {r['input']} | {r['target_lufs']:.0f} | {r['input_lufs']:.1f} / "
            f"{r['input_true_peak_db']:.1f} / {r['input_lra']:.1f} | {r['output_lufs']:.1f} / "
            f"{r['output_true_peak_db']:.1f} / "
            f"{r['output_lra']:.1f} | {r['deviation_lu']:+.2f} | {r['normalization']} | "
            f"{r['seconds_per_minute']:.2f} |"
        )
    for r in result["export"]:
        print(
            f"export {r['format']}: {r['seconds_per_minute']:.2f} s/min, {r['bytes']} bytes, "
            f"{r['output_lufs']} LUFS, {r['output_true_peak_db']} dBTP"
        )
    print(f"joins: {result['joins']}")


if __name__ == "__main__":
    main()
