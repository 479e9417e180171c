"""Plain data passed between engines. No Prefect, no SQL: JSON round-trips only."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# (done, total) callback that long-running engines call; the CLI turns it into a progress bar.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PlannedWord:
    """One spoken word of the clean script with the emotion the plan asks for."""

    index: int
    text: str
    char_start: int  # offsets into EmotionPlan.script
    char_end: int
    label: str
    intensity: float  # 0..1
    source: str  # "tag", "cue", "description" or "default"


@dataclass(frozen=True)
class PlanSegment:
    """A run of consecutive words that share label and intensity (words[first:stop])."""

    label: str
    intensity: float
    first: int
    stop: int
    text: str


@dataclass(frozen=True)
class PlanReading:
    """How the planner understood one part of the description, so a user can check it.

    e.g. phrase "creepy for the storm part", label "fear", intensity 0.6,
    how 'lexicon "creepy"' or '"eerie" by similarity 0.71 (confidence 0.64)',
    where 'sentences 2-3, matched "the storm part" (similarity 0.58)', words 18.
    """

    phrase: str  # the description part, as written
    label: str  # the emotion it was read as
    intensity: float
    how: str  # how the emotion was read
    where: str  # which words it asks for, in words a user can check
    words: int = 0  # how many words it holds in the final plan (0: overridden or placed nowhere)


@dataclass
class EmotionPlan:
    script: str  # the script with inline tags removed, as it will be spoken
    words: list[PlannedWord]
    warnings: list[str] = field(default_factory=list)
    readings: list[PlanReading] = field(default_factory=list)

    def segments(self) -> list[PlanSegment]:
        segments: list[PlanSegment] = []
        start = 0
        for i in range(1, len(self.words) + 1):
            boundary = i == len(self.words) or (
                (self.words[i].label, self.words[i].intensity)
                != (self.words[start].label, self.words[start].intensity)
            )
            if boundary:
                first, last = self.words[start], self.words[i - 1]
                segments.append(
                    PlanSegment(
                        label=first.label,
                        intensity=first.intensity,
                        first=start,
                        stop=i,
                        text=self.script[first.char_start : last.char_end],
                    )
                )
                start = i
        return segments

    def to_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "words": [asdict(w) for w in self.words],
            "warnings": self.warnings,
            "readings": [asdict(r) for r in self.readings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmotionPlan:
        return cls(
            script=data["script"],
            words=[PlannedWord(**w) for w in data["words"]],
            warnings=list(data.get("warnings", [])),
            readings=[PlanReading(**r) for r in data.get("readings", [])],
        )


@dataclass(frozen=True)
class WordTiming:
    index: int  # index of the PlannedWord this timing belongs to
    text: str
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class PhonemeTiming:
    phoneme: str  # IPA as the engine reports it
    start: float
    end: float
    word_index: int | None


@dataclass
class Timings:
    words: list[WordTiming]
    phonemes: list[PhonemeTiming] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"words": [asdict(w) for w in self.words], "phonemes": [asdict(p) for p in self.phonemes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timings:
        return cls(
            words=[WordTiming(**w) for w in data["words"]],
            phonemes=[PhonemeTiming(**p) for p in data.get("phonemes", [])],
        )


def word_spans(timings: Timings, words: list[PlannedWord]) -> list[tuple[float, float]]:
    """(start, end) per planned word from timings; a word with no timing sits at its predecessor's end."""
    by_index = {t.index: t for t in timings.words}
    spans: list[tuple[float, float]] = []
    last = 0.0
    for word in words:
        t = by_index.get(word.index)
        start = float(t.start) if t is not None and math.isfinite(t.start) else last
        end = float(t.end) if t is not None and math.isfinite(t.end) else start
        spans.append((start, max(start, end)))
        last = spans[-1][1]
    return spans


@dataclass
class Speech:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    timings: Timings

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class CurvePoint:
    """The EFP's judgement for one word, with what each evidence source said."""

    index: int
    text: str
    start: float
    end: float
    label: str  # argmax of distribution
    intensity: float  # 0..1
    distribution: dict[str, float]  # label -> probability, sums to 1
    sources: dict[str, dict[str, float]]  # source name -> its own label distribution
    weights: dict[str, float]  # source name -> weight it had in the fusion


@dataclass
class EmotionCurve:
    labels: list[str]
    points: list[CurvePoint]
    engine: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "engine": self.engine, "points": [asdict(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmotionCurve:
        return cls(
            labels=list(data["labels"]),
            points=[CurvePoint(**p) for p in data["points"]],
            engine=data.get("engine", ""),
        )

    def per_frame(self, fps: float, n_frames: int, smoothing_s: float = 0.12) -> FrameCurve:
        """Resample word points to video frames; between words the last emotion holds.

        A Gaussian of `smoothing_s` seconds blends neighbouring words so the face never snaps.
        """
        n_labels = len(self.labels)
        probs = np.zeros((n_frames, n_labels), dtype=np.float32)
        intensity = np.zeros(n_frames, dtype=np.float32)
        neutral = self.labels.index("neutral") if "neutral" in self.labels else 0
        probs[:, neutral] = 1.0
        times = np.arange(n_frames) / fps
        ordered = sorted(self.points, key=lambda p: p.start)
        for i, point in enumerate(ordered):
            # hold each word's emotion until the next word starts
            stop = ordered[i + 1].start if i + 1 < len(ordered) else times[-1] + 1 if n_frames else 0
            mask = (times >= point.start) & (times < stop)
            probs[mask] = [point.distribution.get(label, 0.0) for label in self.labels]
            intensity[mask] = point.intensity
        if ordered:  # before the first word, ease in from the first emotion at zero intensity
            mask = times < ordered[0].start
            probs[mask] = [ordered[0].distribution.get(label, 0.0) for label in self.labels]
        sigma = smoothing_s * fps
        if sigma > 0 and n_frames > 1:
            radius = max(1, int(3 * sigma))
            kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
            kernel /= kernel.sum()
            pad_p = np.pad(probs, ((radius, radius), (0, 0)), mode="edge")
            probs = np.stack(
                [np.convolve(pad_p[:, j], kernel, mode="valid") for j in range(n_labels)], axis=1
            ).astype(np.float32)
            pad_i = np.pad(intensity, radius, mode="edge")
            intensity = np.convolve(pad_i, kernel, mode="valid").astype(np.float32)
        probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-8, None)
        return FrameCurve(labels=list(self.labels), fps=fps, probs=probs, intensity=intensity)


@dataclass
class FrameCurve:
    labels: list[str]
    fps: float
    probs: np.ndarray  # [frames, labels]
    intensity: np.ndarray  # [frames]
