"""Every tunable number of the embedded EFP, in one place, so a later fit can replace them wholesale."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the log-linear fusion: log p(label) = sum_s weight_s * log p_s(label) + const.

    Defaults (hand-set, not fitted): the plan carries explicit user intent (tags are commands) and must win
    where it is confident; MiniLM zero-shot ranks sentences sensibly but with small margins, so it nudges;
    prosody z-scores are relative to the utterance (and the TTS already voiced the plan), so they mostly add
    within-segment fluctuation.
    """

    plan: float = 1.0
    text: float = 0.3
    prosody: float = 0.25
    # how far one unit of arousal evidence (projection of the word's z-scores on the label's acoustic
    # profile) moves intensity
    arousal_gain: float = 0.15

    def source_weights(self) -> dict[str, float]:
        return {"plan": self.plan, "text": self.text, "prosody": self.prosody}


@dataclass(frozen=True)
class EFPConfig:
    """Shape of each evidence source."""

    # plan prior: how much the planned label is believed, by where it came from
    plan_confidence: dict[str, float] = field(
        default_factory=lambda: {"tag": 0.95, "cue": 0.85, "description": 0.8, "default": 0.1}
    )
    plan_floor: float = 0.5  # mass on the planned label at intensity 0; grows linearly to 1 at intensity 1
    plan_smoothing: float = 0.02  # uniform mass mixed in so no label has probability 0 (log-linear fusion)
    # text: each word is read in a window of +-context_words inside its sentence, blended with the sentence
    context_words: int = 3
    sentence_mix: float = 0.5  # share of the whole-sentence embedding in a word's embedding
    prototype_max_mix: float = 0.5  # label score = mix * max + (1 - mix) * mean cosine over its prototypes
    lexicon_bonus: float = 0.08  # added to a label's score, times implied intensity, when the word names it
    text_temperature: float = 0.1  # cosine margins are ~0.1-0.3: 0.1 turns them into 1-3 nats
    # prosody
    prosody_temperature: float = 1.0  # p ~ exp(-d^2 / (2 T^2)) with d the distance in z units
    fmin: float = 60.0
    fmax: float = 500.0
    silence_db: float = 35.0  # a word this far below the utterance's loud frames is silent
    z_floor: dict[str, float] = field(default_factory=lambda: {"f0": 1.0, "energy": 2.0, "rate": 0.15})
    z_clip: float = 3.0


def params_digest(weights: FusionWeights, config: EFPConfig) -> str:
    """Short hash of every parameter, so fitted weights get their own cache keys."""
    blob = json.dumps({"weights": asdict(weights), "config": asdict(config)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]
