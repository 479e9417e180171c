"""The diffusion render engine (TIE-TFG on Hallo's architecture) as a diffusers pipeline."""

from models.render.diffusion.convert import HalloConversion, load_hallo_state_dict, map_hallo_key
from models.render.diffusion.engine import (
    DiffusionRenderer,
    build_tiny_pipeline,
    hash_weights_dir,
    load_pipeline,
)
from models.render.diffusion.modules import (
    AudioProjection,
    EmoTalkUNet,
    EmotionProjection,
    FaceLocator,
    GatedFusion,
    HierarchicalCrossAttnProcessor,
    ReferenceAttnProcessor,
    TemporalAttention,
)
from models.render.diffusion.pipeline import EmoTalkPipeline, EmoTalkPipelineOutput, hallo_scheduler_config

__all__ = [
    "AudioProjection",
    "DiffusionRenderer",
    "EmoTalkPipeline",
    "EmoTalkPipelineOutput",
    "EmoTalkUNet",
    "EmotionProjection",
    "FaceLocator",
    "GatedFusion",
    "HalloConversion",
    "HierarchicalCrossAttnProcessor",
    "ReferenceAttnProcessor",
    "TemporalAttention",
    "build_tiny_pipeline",
    "hallo_scheduler_config",
    "hash_weights_dir",
    "load_hallo_state_dict",
    "load_pipeline",
    "map_hallo_key",
]
