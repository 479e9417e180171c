"""The facial-emotion judge against labelled real faces: CK+ stills, and MEAD talking clips through the
pseudo-labeller (the frame judge as it labels videos).

CK+ (`ckplus48`: 48x48 grayscale peak-frame face crops).

The crops are already faces, so the judge classifies each whole image (no detection). CK+ names map to
the judge's classes: anger -> angry, sadness -> sad; disgust, fear, happy and surprise are the same.
Contempt has no FER2013 class: its crops are left out of every score and reported separately as what the
judge called them. CK+ has no neutral images, but the judge may still answer neutral, which counts as an
error. The judge is pretrained (FER2013) and never saw CK+, so a subject split does not apply: all crops
are scored.

MEAD (`mead`: silent frontal talking clips, one acted emotion per clip). Every frame with a face is
judged as the pseudo-labeller judges it (face crop, judge, temporal smoothing) and scored against its
clip's label: per-emotion recall is the frame agreement. The pseudo-labeller's word-free output (one label
per 0.5 s window) is scored the same way. Contempt clips are left out (no judge class).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kernel.errors import InputError
from models.evaluate.classification import ClassificationReport, score_labels
from models.vision.judge import LABELS, FaceEmotionJudge

CK_MAP: dict[str, str] = {
    "anger": "angry",
    "sadness": "sad",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "surprise": "surprise",
}
UNSCORED = "contempt"
MEAD_MAP: dict[str, str] = {
    "angry": "angry",
    "disgusted": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprised": "surprise",
}


@dataclass(frozen=True)
class CkplusJudgement:
    emotions: list[str]  # CK+ label of every crop, as written in labels.csv
    subjects: list[str]
    predicted: list[str]  # the judge's label of every crop

    def scored(self) -> tuple[list[str], list[str]]:
        """(truth, predicted) in judge labels over the crops that have a judge class."""
        pairs = [(CK_MAP[e], p) for e, p in zip(self.emotions, self.predicted, strict=True) if e in CK_MAP]
        return [t for t, _ in pairs], [p for _, p in pairs]

    def report(self) -> ClassificationReport:
        truth, predicted = self.scored()
        return score_labels(truth, predicted, labels=list(LABELS))

    def contempt_judged_as(self) -> dict[str, int]:
        counts = Counter(p for e, p in zip(self.emotions, self.predicted, strict=True) if e == UNSCORED)
        return dict(counts.most_common())

    def summary(self) -> dict[str, Any]:
        """Accuracy over the six scored classes, balanced accuracy and per-class recall, as bench/render.py
        has always reported them."""
        per_class: dict[str, dict[str, Any]] = {}
        for source, label in CK_MAP.items():
            hits = [p == label for e, p in zip(self.emotions, self.predicted, strict=True) if e == source]
            per_class[label] = {"n": len(hits), "accuracy": float(np.mean(hits)) if hits else float("nan")}
        scored = sum(v["n"] for v in per_class.values())
        correct = sum(v["accuracy"] * v["n"] for v in per_class.values() if v["n"])
        return {
            "images": len(self.emotions),
            "accuracy": correct / scored if scored else float("nan"),
            "balanced_accuracy": float(np.mean([v["accuracy"] for v in per_class.values() if v["n"]])),
            "per_class": per_class,
            "contempt_judged_as": self.contempt_judged_as(),
            "subjects": len(set(self.subjects)),
        }


def judge_ckplus(data_dir: Path, judge: FaceEmotionJudge | None = None) -> CkplusJudgement:
    """Run the judge over every crop listed in `data_dir/labels.csv` (columns path, emotion, subject)."""
    labels = data_dir / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{data_dir} is not a CK+ folder: labels.csv is missing")
    with labels.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    known = set(CK_MAP) | {UNSCORED}
    images = []
    for number, row in enumerate(rows, start=2):
        if row.get("emotion") not in known or "path" not in row:
            raise InputError(f"{labels}:{number}: needs a path and one of the emotions {sorted(known)}")
        image = cv2.imread(str(data_dir / row["path"]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise InputError(f"{labels}:{number}: cannot read image {row['path']!r}")
        images.append(image)
    if not any(row["emotion"] in CK_MAP for row in rows):
        raise InputError(f"{labels} lists no crops of an emotion the judge knows")
    judge = judge or FaceEmotionJudge.shared()
    probs = judge.classify(images, detect=False)  # crops already
    return CkplusJudgement(
        emotions=[r["emotion"] for r in rows],
        subjects=[r.get("subject", "") for r in rows],
        predicted=[LABELS[i] for i in probs.argmax(axis=1)],
    )


@dataclass(frozen=True)
class MeadClipJudgement:
    path: str
    speaker: str
    emotion: str  # judge label
    frame_labels: list[str]  # smoothed judge label of every frame with a face
    window_labels: list[str]  # the pseudo-labeller's word-free output: one label per window
    frames_without_face: int

    @property
    def agreement(self) -> float:
        return float(np.mean([x == self.emotion for x in self.frame_labels]))

    @property
    def window_agreement(self) -> float:
        return float(np.mean([x == self.emotion for x in self.window_labels]))

    @property
    def majority(self) -> str:
        return Counter(self.frame_labels).most_common(1)[0][0]


def judge_mead(
    data_dir: Path, crop: str = "mediapipe", log: Callable[[str], None] = print
) -> list[MeadClipJudgement]:
    """Judge every frame of the clips listed in `data_dir/labels.csv` (columns path, speaker, emotion)."""
    from models.vision.pseudo_labels import judge_video, label_spans, window_spans

    labels = data_dir / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{data_dir} is not a MEAD folder: labels.csv is missing")
    with labels.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    clips = []
    judge = FaceEmotionJudge.shared()
    for number, row in enumerate(rows, start=2):
        if "path" not in row or "emotion" not in row:
            raise InputError(f"{labels}:{number}: needs the columns path and emotion")
        label = MEAD_MAP.get(row["emotion"])
        if label is None:  # contempt: no judge class
            continue
        frames = judge_video(data_dir / row["path"], judge=judge, crop=crop)
        clip = MeadClipJudgement(
            path=row["path"],
            speaker=row.get("speaker", ""),
            emotion=label,
            frame_labels=[x for x in frames.frame_labels() if x is not None],
            window_labels=[w.label for w in label_spans(frames, window_spans(frames.duration)).words],
            frames_without_face=frames.frames_without_face,
        )
        log(f"mead: {row['path']}: {label}, frame agreement {clip.agreement:.0%}, majority {clip.majority}")
        clips.append(clip)
    if not clips:
        raise InputError(f"{labels} lists no clips of an emotion the judge knows")
    return clips


def mead_report(clips: list[MeadClipJudgement]) -> ClassificationReport:
    """Frame-level scores: every judged frame against its clip's label."""
    truth = [c.emotion for c in clips for _ in c.frame_labels]
    predicted = [x for c in clips for x in c.frame_labels]
    return score_labels(truth, predicted, labels=list(LABELS))
