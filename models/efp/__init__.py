"""Word-level emotion-fluctuation predictors (EFP): speech + timings + plan -> EmotionCurve."""

from models.efp.engine import EmbeddedEFP, Evidence
from models.efp.lexicon import LexiconEvidence
from models.efp.params import HAND_SET, EFPConfig, FusionWeights, fitted_weights
from models.efp.text import load_text_model

__all__ = [
    "HAND_SET",
    "EFPConfig",
    "EmbeddedEFP",
    "Evidence",
    "FusionWeights",
    "LexiconEvidence",
    "fitted_weights",
    "load_text_model",
]
