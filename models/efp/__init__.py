"""Word-level emotion-fluctuation predictors (EFP): speech + timings + plan -> EmotionCurve."""

from models.efp.engine import EmbeddedEFP
from models.efp.params import EFPConfig, FusionWeights
from models.efp.text import load_text_model

__all__ = ["EFPConfig", "EmbeddedEFP", "FusionWeights", "load_text_model"]
