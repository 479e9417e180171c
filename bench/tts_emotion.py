"""How much of the planned emotion Piper's speech carries, read back by the learned EFP from audio alone.

Issue #4 asked for "the planned emotion recovered by #3's acoustic model". The 140 hand-written lines of
models/efp/data/text_set.yaml are each spoken by the project's Piper engine three times, under three
different inline tags at intensity 0.7 (so every label is spoken equally often and a line's wording says
nothing about its tag). The learned EFP is trained on the audio only (text branch off) and scored on
lines it never heard: lines with index % 10 in {0, 3, 6} are held out, so every word of a held-out line
is new to the model in all three emotions. Chance is 1/7.

Writes bench/results/tts_emotion.json and bench/results/tts_emotion_confusion.png.
Run: .venv/bin/python bench/tts_emotion.py   (about 5 minutes on the 2-core machine)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INTENSITY = 0.7
TAKES = 3  # tags per line
HELD_OUT = {0, 3, 6}  # line index % 10


def spoken_clip_set(folder: Path) -> list[Any]:
    """Speak every line under TAKES tags; a clip set in `folder` (wav + clips.jsonl), read back."""
    import soundfile as sf

    from models.align.engine_timings import EngineTimingAligner
    from models.efp.dataset import LabelledClip, LabelledWord, read_clip_set, write_clip_set
    from models.plan.rules import RulePlanner
    from models.tts.piper_engine import PiperEngine
    from models.vocabulary import load_vocabulary

    if (folder / "clips.jsonl").is_file():
        return read_clip_set(folder)
    labels = load_vocabulary().labels
    data = yaml.safe_load((ROOT / "models" / "efp" / "data" / "text_set.yaml").read_text(encoding="utf-8"))
    lines = [line for label in labels for line in data["lines"][label]]
    planner, engine, aligner = RulePlanner(), PiperEngine(), EngineTimingAligner()
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, line in enumerate(lines):
        for take in range(TAKES):
            tag = labels[(i + 3 * take) % len(labels)]  # three different labels per line, balanced overall
            plan = planner.plan(f"[{tag} {INTENSITY}] {line}")
            speech = engine.synthesize(plan)
            timings = aligner.align(speech, plan)
            name = f"line{i:03d}_{tag}.wav"
            sf.write(folder / name, speech.samples, speech.sample_rate)
            words = [
                LabelledWord(w.text, w.start, w.end, tag, INTENSITY) for w in timings.words if w.end > w.start
            ]
            # the "speaker" is the line, so validation inside training also holds out whole lines
            clips.append(
                LabelledClip(f"line{i:03d}_{tag}", name, words, speaker=f"line{i:03d}", source="piper")
            )
        if (i + 1) % 20 == 0:
            print(f"spoken {i + 1}/{len(lines)} lines", flush=True)
    write_clip_set(folder, clips)
    return read_clip_set(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench" / "tts_emotion")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tts_emotion.json")
    args = parser.parse_args()

    from models.efp.features import build_extractor
    from models.efp.train import TrainConfig, clip_inputs, predict_clips, train_efp
    from models.evaluate.classification import save_confusion_png, score_labels
    from models.vocabulary import load_vocabulary

    started = time.perf_counter()
    labels = load_vocabulary().labels
    clip_dir = args.work / "clipset"
    clips = spoken_clip_set(clip_dir)
    extractor = build_extractor("embedded", None)
    inputs = clip_inputs(clips, clip_dir, extractor, labels, use_text=False, cache_dir=args.work / "features")
    held_out = [x for x in inputs if int(x.speaker.removeprefix("line")) % 10 in HELD_OUT]
    train = [x for x in inputs if int(x.speaker.removeprefix("line")) % 10 not in HELD_OUT]
    result = train_efp(train, labels, extractor, TrainConfig(use_text=False, normalise="global"))
    predicted = predict_clips(result.model, held_out)
    truth = [labels[i] for x in held_out for i in x.labels]
    guess = [labels[i] for p in predicted for i in p]
    report = score_labels(truth, guess, labels)
    picture = args.out.with_name("tts_emotion_confusion.png")
    save_confusion_png(report, picture, "learned EFP reading Piper's planned emotion (held-out lines)")
    document = {
        "machine": platform.platform(),
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "clips": {"train": len(train), "held_out": len(held_out)},
        "words_held_out": report.n,
        "word_accuracy": round(report.accuracy, 4),
        "macro_f1": round(report.macro_f1, 4),
        "per_class_recall": {k: round(v["recall"], 3) for k, v in report.per_class.items()},
        "training": result.summary(),
        "report": report.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: document[k] for k in ("word_accuracy", "macro_f1", "per_class_recall")}, indent=2))
    print(f"wrote {args.out} and {picture}")


if __name__ == "__main__":
    main()
