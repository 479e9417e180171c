"""The learned EFP on EmoDB, speaker-held-out: leave-one-speaker-out cross-validation.

Each of the six speakers is held out once; a model is trained on the other five (early stopping on one of
them, then refit on all five) and labels every word of the held-out speaker's clips. Every word of a clip
carries the clip's acted emotion, so word-level accuracy is the paper's measure (TIE-TFG's EFP: 68.28 %);
clip-level accuracy takes the majority of a clip's words.

Labels: EmoDB's `bored` is mapped to `neutral` (models/efp/emodb.py: no FER class for boredom), so six
classes remain: angry, disgust, fear, happy, neutral (incl. bored), sad. The text branch is off: all
emotions speak the same ten German sentences, so text carries no label information here.

Word spans come from models/efp/emodb.py (German espeak + DTW); the clip set and the per-clip features are
cached under `out_dir`, so a second run only trains. Speed (`ms_per_word`) is the full predict path on
the held-out clips, timed without the cache: frame features from audio, word pooling, the network.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.efp.dataset import MANIFEST, read_clip_set
from models.efp.features import build_extractor
from models.efp.learned import word_inputs
from models.efp.train import TrainConfig, clip_inputs, predict_clips, train_efp
from models.evaluate.classification import save_confusion_png, score_labels
from models.vocabulary import load_vocabulary

LABEL_NOTE = "EmoDB 'bored' is mapped to 'neutral'; 'surprise' never occurs"


def evaluate_emodb(
    data_dir: Path,
    out_dir: Path,
    features: str = "embedded",
    log: Callable[[str], None] = print,
    emotion2vec_dir: Path | None = None,
    config: TrainConfig | None = None,
    normalise: str = "speaker",
) -> dict[str, Any]:
    """Leave-one-speaker-out scores; writes report.json and confusion PNGs into `out_dir`.

    `normalise="speaker"` standardises each speaker's word vectors against that speaker's own words
    (for the held-out speaker: its unlabelled test words, the usual speaker normalisation in speech
    emotion recognition); "global" uses the training words' statistics only.
    """
    from models.efp.emodb import emodb_clip_set

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    clip_dir = out_dir / "clipset"
    if not (clip_dir / MANIFEST).is_file():
        log(f"aligning EmoDB words into {clip_dir} (once) ...")
        emodb_clip_set(data_dir, clip_dir, progress=_every(log, 50, "aligned"))
    all_clips = read_clip_set(clip_dir)
    clips = [c for c in all_clips if c.words]
    skipped = len(all_clips) - len(clips)
    labels = load_vocabulary().labels
    config = replace(config or TrainConfig(), use_text=False, normalise=normalise)
    extractor = build_extractor(features, emotion2vec_dir)
    log(f"features ({extractor.version}) for {len(clips)} clips ...")
    inputs = clip_inputs(
        clips, clip_dir, extractor, labels, use_text=False, cache_dir=out_dir / "features", log=log
    )
    speakers = sorted({c.speaker for c in clips})
    truth_words: list[str] = []
    pred_words: list[str] = []
    truth_clips: list[str] = []
    pred_clips: list[str] = []
    folds: list[dict[str, Any]] = []
    timed_words = 0
    timed_seconds = 0.0
    for speaker in speakers:
        train = [x for x in inputs if x.speaker != speaker]
        test_idx = [i for i, x in enumerate(inputs) if x.speaker == speaker]
        test = [inputs[i] for i in test_idx]
        result = train_efp(train, labels, extractor, config)
        predicted = predict_clips(result.model, test)
        fold_truth = np.concatenate([x.labels for x in test])
        fold_pred = np.concatenate(predicted)
        for x, p in zip(test, predicted, strict=True):
            truth_words += [labels[i] for i in x.labels]
            pred_words += [labels[i] for i in p]
            truth_clips.append(labels[int(x.labels[0])])
            pred_clips.append(labels[Counter(p.tolist()).most_common(1)[0][0]])
        # the whole predict path, from audio, for this speaker's clips
        words, seconds = _time_predict(result.model, extractor, clip_dir, [clips[i] for i in test_idx])
        timed_words += words
        timed_seconds += seconds
        fold = {
            "speaker": speaker,
            "clips": len(test),
            "words": len(fold_truth),
            "word_accuracy": round(float((fold_truth == fold_pred).mean()), 4),
            **{f"train_{k}": v for k, v in result.summary().items()},
        }
        folds.append(fold)
        log(f"speaker {speaker}: word accuracy {fold['word_accuracy']:.1%} ({fold['words']} words)")
    present = [label for label in labels if label in set(truth_words) | set(pred_words)]
    words_report = score_labels(truth_words, pred_words, present)
    clips_report = score_labels(truth_clips, pred_clips, present)
    save_confusion_png(words_report, out_dir / "confusion_words.png", "learned EFP on EmoDB, words (LOSO)")
    save_confusion_png(clips_report, out_dir / "confusion_clips.png", "learned EFP on EmoDB, clips (LOSO)")
    report: dict[str, Any] = {
        "protocol": "leave-one-speaker-out over speakers " + " ".join(speakers),
        "features": extractor.version,
        "text_branch": "off (same sentences in every emotion)",
        "normalise": normalise,
        "label_mapping": LABEL_NOTE,
        "clips": len(clips),
        "clips_without_words_skipped": skipped,
        "word_accuracy": words_report.accuracy,
        "word_macro_f1": words_report.macro_f1,
        "clip_accuracy": clips_report.accuracy,
        "clip_macro_f1": clips_report.macro_f1,
        "per_class": words_report.per_class,
        "words": words_report.to_dict(),
        "clips_scores": clips_report.to_dict(),
        "ms_per_word": round(1000.0 * timed_seconds / max(timed_words, 1), 3),
        "folds": folds,
        "train_config": {k: v for k, v in vars(config).items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=list), encoding="utf-8")
    log(
        f"EmoDB LOSO: word accuracy {words_report.accuracy:.2%}, macro-F1 {words_report.macro_f1:.3f}, "
        f"clip accuracy {clips_report.accuracy:.2%}, {report['ms_per_word']} ms/word"
    )
    return report


def _time_predict(model: Any, extractor: Any, folder: Path, clips: list[Any]) -> tuple[int, float]:
    import soundfile as sf

    words = 0
    seconds = 0.0
    for clip in clips:
        samples, rate = sf.read(folder / clip.audio, dtype="float32", always_2d=False)
        spans = [(w.start, w.end) for w in clip.words]
        start = time.perf_counter()
        audio, text = word_inputs(extractor, samples, int(rate), spans, [w.text for w in clip.words], False)
        model.predict_words(audio, text)
        seconds += time.perf_counter() - start
        words += len(clip.words)
    return words, seconds


def _every(log: Callable[[str], None], n: int, what: str) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        if done % n == 0 or done == total:
            log(f"{what} {done}/{total}")

    return progress
