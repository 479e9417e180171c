"""The embedded word-level emotion-fluctuation predictor (EFP): plan prior x MiniLM text x prosody."""

from __future__ import annotations

import math

import numpy as np

from models.efp import prosody
from models.efp.params import EFPConfig, FusionWeights, params_digest
from models.efp.text import TextEvidence, softmax
from models.types import CurvePoint, EmotionCurve, EmotionPlan, PlannedWord, Speech, Timings
from models.vocabulary import Vocabulary, load_vocabulary

SOURCES = ("plan", "text", "prosody")


class EmbeddedEFP:
    """Per spoken word: a label distribution and an intensity, with each source's own opinion recorded.

    `predict` is deterministic for given inputs and parameters; `version` changes with the code (BASE_VERSION)
    and with any non-default weights or config, so it can go into cache keys.
    """

    name = "embedded-efp"
    BASE_VERSION = "1"

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        weights: FusionWeights | None = None,
        config: EFPConfig | None = None,
    ) -> None:
        self.vocabulary = vocabulary or load_vocabulary()
        self.weights = weights or FusionWeights()
        self.config = config or EFPConfig()
        self.text = TextEvidence(self.vocabulary, self.config)

    @property
    def version(self) -> str:
        if self.weights == FusionWeights() and self.config == EFPConfig():
            return self.BASE_VERSION
        return f"{self.BASE_VERSION}+{params_digest(self.weights, self.config)}"

    @property
    def engine(self) -> str:
        return f"{self.name}@{self.version}"

    # ---- evidence sources -------------------------------------------------------------------------

    def plan_distributions(self, plan: EmotionPlan) -> np.ndarray:
        """[words, labels] prior from the plan, peaked on the planned label, sharper with intensity."""
        return np.array([self._plan_prior(w) for w in plan.words]).reshape(len(plan.words), -1)

    def _plan_prior(self, word: PlannedWord) -> np.ndarray:
        labels = self.vocabulary.labels
        k = len(labels)
        cfg = self.config
        uniform = np.full(k, 1.0 / k)
        label = word.label if word.label in labels else None
        if label is None:
            hit = self.vocabulary.lookup(word.label)  # a plan from a vocabulary with other names
            label = hit[0] if hit else None
        if label is None:
            return uniform
        j, nj = labels.index(label), labels.index(self.vocabulary.neutral)
        target = np.zeros(k)
        if j == nj:
            target[j] = 1.0
        else:
            level = min(1.0, max(0.0, float(word.intensity)))
            mass = cfg.plan_floor + (1 - cfg.plan_floor) * level
            target[j] = mass
            # a weak emotion sits near neutral: the leftover leans on neutral as intensity falls
            target[nj] = (1 - mass) * (1 - level)
            others = [i for i in range(k) if i not in (j, nj)]
            if others:
                target[others] = (1 - mass) * level / len(others)
            else:
                target[nj] += (1 - mass) * level
        confidence = cfg.plan_confidence.get(word.source, cfg.plan_confidence.get("default", 0.25))
        prior = confidence * target + (1 - confidence) * uniform
        return (1 - cfg.plan_smoothing) * prior + cfg.plan_smoothing * uniform

    def text_distributions(self, plan: EmotionPlan) -> np.ndarray:
        """[words, labels] MiniLM zero-shot distributions."""
        return self.text.distributions(plan)

    def prosody_evidence(
        self, speech: Speech, timings: Timings, plan: EmotionPlan
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distributions [words, labels], per-word weight factor [words], z-scores [words, 3]).

        Words without usable audio (zero duration, silence) borrow the mean of their nearest usable
        neighbours at half weight; with no usable word at all the factor is 0 (plan + text decide).
        """
        spans = self.spans(timings, plan)
        units = self._units(timings, plan, spans)
        raw = prosody.measure(speech.samples, speech.sample_rate, spans, units, self.config)
        z = prosody.zscores(raw, self.config)
        probs = prosody.score(z, prosody.profiles(self.vocabulary), self.config.prosody_temperature)
        factor = np.ones(len(plan.words))
        usable = np.isfinite(probs).all(axis=1)
        k = len(self.vocabulary.labels)
        for i in np.flatnonzero(~usable):
            before = [p for p in range(i - 1, -1, -1) if usable[p]][:1]
            after = [p for p in range(i + 1, len(usable)) if usable[p]][:1]
            near = before + after
            if near:
                probs[i] = probs[near].mean(axis=0)
                factor[i] = 0.5
            else:
                probs[i] = 1.0 / k
                factor[i] = 0.0
        return probs, factor, z

    # ---- timing helpers ---------------------------------------------------------------------------

    @staticmethod
    def spans(timings: Timings, plan: EmotionPlan) -> list[tuple[float, float]]:
        """(start, end) per plan word from timings; a word with no timing sits at its predecessor's end."""
        by_index = {t.index: t for t in timings.words}
        out: list[tuple[float, float]] = []
        last = 0.0
        for word in plan.words:
            t = by_index.get(word.index)
            start = float(t.start) if t is not None and math.isfinite(t.start) else last
            end = float(t.end) if t is not None and math.isfinite(t.end) else start
            end = max(start, end)
            out.append((start, end))
            last = end
        return out

    @staticmethod
    def _units(timings: Timings, plan: EmotionPlan, spans: list[tuple[float, float]]) -> list[float]:
        """Phonemes per word when the aligner gave them for every timed word, else letters and digits."""
        counts: dict[int, int] = {}
        for p in timings.phonemes:
            if p.word_index is not None:
                counts[p.word_index] = counts.get(p.word_index, 0) + 1
        timed = [w.index for w, (a, b) in zip(plan.words, spans, strict=True) if b > a]
        if timed and all(counts.get(i, 0) > 0 for i in timed):
            return [float(counts.get(w.index, 0)) for w in plan.words]
        return [float(sum(ch.isalnum() for ch in w.text)) for w in plan.words]

    # ---- fusion -----------------------------------------------------------------------------------

    def predict(self, speech: Speech, timings: Timings, plan: EmotionPlan) -> EmotionCurve:
        labels = self.vocabulary.labels
        if not plan.words:
            return EmotionCurve(labels=labels, points=[], engine=self.engine)
        spans = self.spans(timings, plan)
        p_plan = self.plan_distributions(plan)
        p_text = self.text_distributions(plan)
        p_prosody, factor, z = self.prosody_evidence(speech, timings, plan)

        w = self.weights
        weights = np.stack(
            [np.full(len(plan.words), w.plan), np.full(len(plan.words), w.text), w.prosody * factor], axis=1
        )
        eps = 1e-6  # keeps log finite if a source ever says exactly 0
        logits = (
            weights[:, :1] * np.log(p_plan + eps)
            + weights[:, 1:2] * np.log(p_text + eps)
            + weights[:, 2:3] * np.log(p_prosody + eps)
        )
        fused = softmax(logits)

        profile = prosody.profiles(self.vocabulary)
        points: list[CurvePoint] = []
        for i, word in enumerate(plan.words):
            j = int(np.argmax(fused[i]))
            points.append(
                CurvePoint(
                    index=word.index,
                    text=word.text,
                    start=spans[i][0],
                    end=spans[i][1],
                    label=labels[j],
                    intensity=self._intensity(word, labels[j], float(fused[i, j]), z[i], profile[j]),
                    distribution=_as_dict(labels, fused[i]),
                    sources={
                        "plan": _as_dict(labels, p_plan[i]),
                        "text": _as_dict(labels, p_text[i]),
                        "prosody": _as_dict(labels, p_prosody[i]),
                    },
                    weights={name: float(weights[i, s]) for s, name in enumerate(SOURCES)},
                )
            )
        return EmotionCurve(labels=labels, points=points, engine=self.engine)

    def _intensity(
        self, word: PlannedWord, label: str, probability: float, z_row: np.ndarray, direction: np.ndarray
    ) -> float:
        """Plan intensity (or evidence strength when the EFP overrules the plan) moved by arousal."""
        if label == self.vocabulary.neutral:
            return 0.0  # neutral has no strength, matching the planner's convention
        if label == word.label and word.source != "default":
            base = float(word.intensity)
        else:
            k = len(self.vocabulary.labels)
            confidence = max(0.0, (probability - 1.0 / k) / (1.0 - 1.0 / k))
            base = self.vocabulary.emotions[label].default_intensity * confidence
        # louder/higher than the utterance (along this emotion's profile) -> stronger, and vice versa
        lift = self.weights.arousal_gain * max(-2.0, min(2.0, prosody.arousal(z_row, direction)))
        return round(min(1.0, max(0.0, base + lift)), 4)


def _as_dict(labels: list[str], values: np.ndarray) -> dict[str, float]:
    return {label: float(v) for label, v in zip(labels, values, strict=True)}
