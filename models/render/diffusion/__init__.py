"""The diffusion render engine: Hallo's released model, loaded strictly, with TIE-TFG's emotion adapter."""

from models.render.diffusion.engine import DiffusionRenderer, hash_weights_dir
from models.render.diffusion.pipeline import HalloPipeline, HalloPipelineOutput, hallo_scheduler_config
from models.render.diffusion.tiny import write_tiny_weights
from models.render.diffusion.weights import WeightsReport, check_weights, load_pipeline

__all__ = [
    "DiffusionRenderer",
    "HalloPipeline",
    "HalloPipelineOutput",
    "WeightsReport",
    "check_weights",
    "hallo_scheduler_config",
    "hash_weights_dir",
    "load_pipeline",
    "write_tiny_weights",
]
