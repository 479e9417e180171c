"""Every tunable number of the embedded EFP in one place: fitted fusion weights and fixed source shapes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kernel.errors import EngineError

FITTED_FILE = Path(__file__).with_name("fitted_fusion.json")
SOURCES = ("plan", "text", "lexicon", "prosody")


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the log-linear fusion: log p(label) = sum_s weight_s * log p_s(label) + const.

    The values that run are fitted on data (models/efp/fit.py, bench/efp_fit.py) and read from
    fitted_fusion.json by `fitted_weights()`. A source's temperature is absorbed by its weight
    (w * log softmax(s / T) = (w / T) * s + const), so only weights are fitted.
    """

    plan: float  # plan prior where the plan is explicit (inline tag, description, temporal cue)
    plan_default: float  # plan prior where nothing was asked (the default neutral)
    text: float  # MiniLM zero-shot
    lexicon: float  # NRC / vocabulary hit on the word itself
    lexicon_context: float  # hits borrowed from neighbouring words
    prosody: float  # per-word F0 / energy / rate, times the word's audio usability factor
    # how far one unit of arousal evidence (projection of the word's z-scores on the label's acoustic
    # profile) moves intensity; hand-set: the fitting data has labels, not intensities
    arousal_gain: float = 0.15

    def source_weights(self) -> dict[str, float]:
        return {
            "plan": self.plan,
            "plan_default": self.plan_default,
            "text": self.text,
            "lexicon": self.lexicon,
            "lexicon_context": self.lexicon_context,
            "prosody": self.prosody,
        }


# The hand-set weights that ran before the fit (no lexicon source then), kept to report the fit against.
HAND_SET = FusionWeights(
    plan=1.0, plan_default=1.0, text=0.3, lexicon=0.0, lexicon_context=0.0, prosody=0.25, arousal_gain=0.15
)


def fitted_weights(path: Path = FITTED_FILE) -> FusionWeights:
    """The fitted weights shipped with the package; EngineError if the file is missing or malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return FusionWeights(**{k: float(v) for k, v in data["weights"].items()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"cannot read the fitted EFP fusion weights from {path}: {exc}") from exc


@dataclass(frozen=True)
class EFPConfig:
    """Shape of each evidence source."""

    # plan prior: how much the planned label is believed, by where it came from
    plan_confidence: dict[str, float] = field(
        default_factory=lambda: {"tag": 0.95, "cue": 0.85, "description": 0.8, "default": 0.1}
    )
    # Label shift for words the plan leaves open: the fit's text set is class-balanced (1/7 neutral), but in
    # narration most such words are plain statements, so the deployed prior puts this share on neutral.
    # Chosen on six scripts, not fitted: greetings stay neutral while emotional lines keep their label.
    unplanned_neutral_share: float = 0.8
    plan_floor: float = 0.5  # mass on the planned label at intensity 0; grows linearly to 1 at intensity 1
    plan_smoothing: float = 0.02  # uniform mass mixed in so no label has probability 0 (log-linear fusion)
    # text: each word is read in a window of +-context_words inside its sentence, blended with the sentence
    context_words: int = 3
    sentence_mix: float = 0.5  # share of the whole-sentence embedding in a word's embedding
    prototype_max_mix: float = 0.5  # label score = mix * max + (1 - mix) * mean cosine over its prototypes
    text_temperature: float = 0.1  # cosine margins are ~0.1-0.3: 0.1 turns them into 1-3 nats
    # lexicon: a word without a hit borrows the hits this many words either side, inside its sentence
    lexicon_window: int = 2
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
