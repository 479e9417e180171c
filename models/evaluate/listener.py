"""A listener trained on human acted speech (EmoDB), and what it hears in the project's voices.

The listener is the learned EFP on audio alone (text branch off, features z-scored per speaker), trained on
every EmoDB speaker the project has. Its validity is checked first by leaving speakers out
(models/evaluate/efp_emodb.py): a listener that cannot hear emotion in people it never heard would say
nothing about a synthetic voice.

Then each engine speaks the neutral-content lines of data/listener_lines.yaml under each tag EmoDB knows
(neutral, happy, sad, angry, fear, disgust; EmoDB has no surprise) at each intensity. The engine's voice is
one "speaker": its words are normalised against all of its own clips, as a held-out EmoDB speaker's are,
so the listener judges how the emotions differ within the voice, not the voice itself. Every word of a
clip carries the clip's tag; a clip's label is the majority of its words.

Clips are heard peak-normalised, prepared as the shared EmoDB copy is (see `peak_normalised`).

Caveat written into every report: EmoDB is German, 10 sentences and 2-second cuts; the lines here are
English. A low score may partly be language and recording mismatch; a high one means the voice moves the
way German actors do.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from models.efp.dataset import MANIFEST, LabelledClip, LabelledWord, read_clip_set, write_clip_set
from models.efp.features import FrameExtractor, build_extractor
from models.efp.learned import TrainedEFP, load_model, save_model
from models.efp.train import ClipInputs, TrainConfig, clip_inputs, predict_clips, train_efp
from models.evaluate.classification import ClassificationReport, save_confusion_png, score_labels
from models.types import EmotionPlan, Speech, Timings
from models.vocabulary import load_vocabulary

LINES_PATH = Path(__file__).with_name("data") / "listener_lines.yaml"
TAGS = ("neutral", "happy", "sad", "angry", "fear", "disgust")  # EmoDB's classes (bored counts as neutral)
INTENSITIES = (0.5, 1.0)
CAVEAT = (
    "listener trained on German acted speech (EmoDB, 2 s cuts of 10 sentences); the engines speak English "
    "lines, so part of any shortfall may be language and recording mismatch"
)

Log = Callable[[str], None]


class Planner(Protocol):
    def plan(self, script: str) -> EmotionPlan: ...


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def synthesize(self, plan: EmotionPlan) -> Speech: ...


class Aligner(Protocol):
    def align(self, speech: Speech, plan: EmotionPlan) -> Timings: ...


def listener_config() -> TrainConfig:
    """The EFP configuration validated on EmoDB, audio only, per-speaker normalisation."""
    return replace(TrainConfig(), use_text=False, normalise="speaker")


def load_lines(path: Path = LINES_PATH) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    lines = [str(line) for line in data["lines"]]
    if not lines:
        raise ValueError(f"{path} holds no lines")
    return lines


@dataclass
class Listener:
    """The trained listener and what it was trained on."""

    model: TrainedEFP
    extractor: FrameExtractor
    labels: list[str]
    speakers: list[str]
    clips: int
    path: Path


def train_listener(
    emodb_dir: Path,
    work_dir: Path,
    features: str = "embedded",
    log: Log = print,
    speakers: Sequence[str] | None = None,
) -> Listener:
    """Train on every EmoDB speaker (or only `speakers`, for checks that keep some speakers out of the
    listener); kept in `work_dir` and reused while the clips and config are the same."""
    from models.efp.emodb import emodb_clip_set

    clip_dir = work_dir / "clipset"
    if not (clip_dir / MANIFEST).is_file():
        log(f"aligning EmoDB words into {clip_dir} (once) ...")
        emodb_clip_set(emodb_dir, clip_dir)
    clips = [c for c in read_clip_set(clip_dir) if c.words]
    if speakers is not None:
        known = {c.speaker for c in clips}
        missing = sorted(set(speakers) - known)
        if missing:
            raise ValueError(f"speakers {missing} are not in {clip_dir}; it has {sorted(known)}")
        clips = [c for c in clips if c.speaker in set(speakers)]
    labels = load_vocabulary().labels
    config = listener_config()
    extractor = build_extractor(features)
    inputs = clip_inputs(clips, clip_dir, extractor, labels, use_text=False, cache_dir=work_dir / "features")
    speakers = sorted({c.speaker for c in clips})
    key = hashlib.sha256(
        json.dumps(
            [
                extractor.version,
                sorted(c.clip_id for c in clips),
                [float(x.audio.sum()) for x in inputs],
                repr(config),
                _training_code_digest(),
            ]
        ).encode()
    ).hexdigest()[:16]
    path = work_dir / f"listener-{key}.safetensors"
    if path.is_file():
        model = load_model(path)
        log(f"listener: reusing {path.name}")
    else:
        log(f"listener: training on {len(clips)} clips of EmoDB speakers {' '.join(speakers)} ...")
        model = train_efp(inputs, labels, extractor, config).model
        save_model(model, path)
    return Listener(model, extractor, labels, speakers, len(clips), path)


def _training_code_digest() -> str:
    """The EFP's network, features and training code: a change retrains the listener."""
    import models.efp.features
    import models.efp.learned
    import models.efp.train

    digest = hashlib.sha256()
    for module in (models.efp.features, models.efp.learned, models.efp.train):
        with open(str(module.__file__), "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def speak_lines(
    engine: Engine,
    planner: Planner,
    aligner: Aligner,
    lines: Sequence[str],
    folder: Path,
    tags: Sequence[str] = TAGS,
    intensities: Sequence[float] = INTENSITIES,
    log: Log = print,
) -> list[LabelledClip]:
    """Every line under every tag and intensity (neutral once), as a clip set in `folder`, kept and reused
    while the engine's identity (code, voice, prosody rows) and the lines are the same."""
    import soundfile as sf

    identity = engine.identity().to_dict() if hasattr(engine, "identity") else engine.version
    stamp = {"engine": engine.name, "identity": identity, "lines": list(lines), "tags": list(tags)}
    stamp["intensities"] = list(intensities)
    stamp_path = folder / "spoken.json"
    done = (folder / MANIFEST).is_file() and stamp_path.is_file()
    if done and json.loads(stamp_path.read_text(encoding="utf-8")) == stamp:
        return read_clip_set(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[LabelledClip] = []
    takes = [(tag, 0.0 if tag == "neutral" else k) for tag in tags for k in intensities]
    takes = list(dict.fromkeys(takes))  # neutral is the same at every intensity
    for i, line in enumerate(lines):
        for tag, intensity in takes:
            plan = planner.plan(f"[{tag} {intensity:g}] {line}" if tag != "neutral" else line)
            speech = engine.synthesize(plan)
            timings = aligner.align(speech, plan)
            clip_id = f"{engine.name}-line{i:02d}-{tag}-{intensity:g}"
            sf.write(folder / f"{clip_id}.wav", speech.samples, speech.sample_rate)
            words = [
                LabelledWord(w.text, w.start, w.end, tag, intensity) for w in timings.words if w.end > w.start
            ]
            clips.append(
                LabelledClip(clip_id, f"{clip_id}.wav", words, speaker=engine.name, source=engine.name)
            )
        log(f"{engine.name}: spoke line {i + 1}/{len(lines)}")
    write_clip_set(folder, clips)
    stamp_path.write_text(json.dumps(stamp), encoding="utf-8")
    return read_clip_set(folder)


def listen(listener: Listener, clips: list[ClipInputs]) -> list[np.ndarray]:
    """The listener's label index for every word, each clip normalised against its speaker's clips."""
    return predict_clips(listener.model, clips)


def score(
    labels: list[str], clips: list[ClipInputs], predicted: list[np.ndarray], present: Sequence[str] = TAGS
) -> dict[str, ClassificationReport]:
    """Word- and clip-level reports (clip = majority of its words)."""
    truth_words = [labels[i] for x in clips for i in x.labels]
    pred_words = [labels[i] for p in predicted for i in p]
    truth_clips = [labels[int(x.labels[0])] for x in clips]
    pred_clips = [labels[Counter(p.tolist()).most_common(1)[0][0]] for p in predicted]
    order = [*present, *sorted({*pred_words, *pred_clips} - set(present))]
    return {
        "words": score_labels(truth_words, pred_words, order),
        "clips": score_labels(truth_clips, pred_clips, order),
    }


def peak_normalised(clips: list[LabelledClip], folder: Path, into: Path) -> Path:
    """Copies of the clips scaled to a peak of 1.0, as the shared EmoDB copy the listener learned from is.

    Without this the listener would judge our voices' absolute level, which its training data never had:
    peak normalisation leaves EmoDB's angry clips 3.8 dB below neutral in RMS (a crest-factor effect), so a
    louder voice reads as less angry to it. The same preparation on both sides removes that confound."""
    import soundfile as sf

    into.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        samples, rate = sf.read(folder / clip.audio, dtype="float32", always_2d=False)
        peak = float(np.abs(samples).max())
        sf.write(into / clip.audio, samples / peak if peak > 0 else samples, rate, subtype="FLOAT")
    return into


def engine_report(
    listener: Listener, clips: list[LabelledClip], folder: Path, out_dir: Path, engine: str
) -> dict[str, Any]:
    """Scores per intensity: word and clip accuracy, per-class recall, a confusion PNG for words."""
    heard = peak_normalised(clips, folder, out_dir / "heard" / engine)
    inputs = clip_inputs(clips, heard, listener.extractor, listener.labels, use_text=False)
    # the whole voice is the reference, as every clip of a held-out EmoDB speaker is
    inputs = [replace(x, speaker=engine) for x in inputs]
    predicted = listen(listener, inputs)
    by_intensity: dict[str, Any] = {}
    intensities = sorted({float(c.words[0].intensity or 0.0) for c in clips if c.words} - {0.0})
    for k in intensities:
        chosen = [i for i, c in enumerate(clips) if float(c.words[0].intensity or 0.0) in (0.0, k)]
        reports = score(listener.labels, [inputs[i] for i in chosen], [predicted[i] for i in chosen])
        png = out_dir / f"confusion_{engine}_{k:g}.png"
        save_confusion_png(reports["words"], png, f"{engine} at intensity {k:g}: EmoDB listener, words")
        words = reports["words"]
        by_intensity[f"{k:g}"] = {
            "word_accuracy": words.accuracy,
            "word_macro_f1": words.macro_f1,
            "clip_accuracy": reports["clips"].accuracy,
            "recall": {label: words.per_class[label]["recall"] for label in TAGS if label in words.per_class},
            "words": words.to_dict(),
            "clips": reports["clips"].to_dict(),
            "confusion_png": png.name,
        }
    return {"clips": len(clips), "words": int(sum(len(c.words) for c in clips)), "by_intensity": by_intensity}


def evaluate_speech(
    data_dir: Path,
    out_dir: Path,
    engines: dict[str, Engine],
    planner: Planner,
    aligner: Aligner,
    validate: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """The listener's held-out check on EmoDB, then every engine heard by it; writes report.json."""
    from models.evaluate.efp_emodb import evaluate_emodb

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "listener"
    emodb = data_dir / "emodb" if (data_dir / "emodb").is_dir() else data_dir
    report: dict[str, Any] = {"caveat": CAVEAT, "tags": list(TAGS), "intensities": list(INTENSITIES)}
    if validate:
        held_out = evaluate_emodb(emodb, work, log=log, config=listener_config())
        report["listener_held_out"] = {
            "protocol": held_out["protocol"],
            "word_accuracy": held_out["word_accuracy"],
            "clip_accuracy": held_out["clip_accuracy"],
            "per_class": held_out["per_class"],
            "folds": [
                {"speaker": f["speaker"], "word_accuracy": f["word_accuracy"]} for f in held_out["folds"]
            ],
        }
    listener = train_listener(emodb, work, log=log)
    report["listener"] = {"speakers": listener.speakers, "clips": listener.clips, "model": listener.path.name}
    lines = load_lines()
    report["lines"] = lines
    report["engines"] = {}
    for name, engine in engines.items():
        folder = out_dir / "spoken" / name
        clips = speak_lines(engine, planner, aligner, lines, folder, log=log)
        result = engine_report(listener, clips, folder, out_dir, name)
        result["version"] = engine.version
        report["engines"][name] = result
        for k, row in result["by_intensity"].items():
            recall = ", ".join(f"{label} {value:.0%}" for label, value in row["recall"].items())
            heard = f"words {row['word_accuracy']:.1%}, clips {row['clip_accuracy']:.1%}"
            log(f"{name} at {k}: {heard} ({recall})")
    report["seconds"] = round(time.perf_counter() - started, 1)
    partial = out_dir / ".report.json.part"
    partial.write_text(json.dumps(report, indent=2), encoding="utf-8")
    partial.replace(out_dir / "report.json")
    return report
