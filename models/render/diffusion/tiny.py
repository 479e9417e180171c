"""A tiny random-weight weights folder in Hallo's layout, for tests and CPU smoke runs.

Every file the renderer reads is there, in the place Hallo's release puts it, with the architecture
shrunk through `emoflow.json`; the loading code is the one that reads the real release. Its video is
noise: the weights are random.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.models import AutoencoderKL  # not `diffusers`: mypy sees dummies there
from transformers import Wav2Vec2Config, Wav2Vec2Model

from models.render.diffusion.unet import HALLO_UNET_KWARGS
from models.render.diffusion.weights import (
    NET,
    OVERRIDES,
    UNET_CONFIG,
    VAE_DIR,
    WAV2VEC_DIR,
    build_net,
    net_config,
)

TINY_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 2,
    "block_out_channels": [32, 32, 64, 64],  # the motion modules' GroupNorm fixes 32 groups
    "cross_attention_dim": 32,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 8,
}
TINY_OVERRIDES: dict[str, Any] = {
    "unet_additional_kwargs": {
        "motion_module_kwargs": HALLO_UNET_KWARGS["motion_module_kwargs"] | {"num_attention_heads": 2},
        "audio_attention_dim": 16,
    },
    "face_locator": {"block_out_channels": [8, 8, 8, 16]},
    "audio_proj": {"intermediate_dim": 32, "output_dim": 16, "context_tokens": 4},
    "emotion_adapter": {"hidden_dim": 32},
    "identity": "none",  # no face-analysis models: Hallo's no-face embedding (zeros)
}
TINY_WAV2VEC: dict[str, Any] = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": (8,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def write_tiny_weights(directory: str | Path, seed: int = 0) -> Path:
    """Write the folder (a few MB) and return it."""
    root = Path(directory)
    torch.manual_seed(seed)
    (root / UNET_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (root / UNET_CONFIG).write_text(json.dumps(TINY_UNET, indent=2))
    (root / OVERRIDES).write_text(json.dumps(TINY_OVERRIDES, indent=2))
    Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC)).save_pretrained(root / WAV2VEC_DIR)
    AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
    ).save_pretrained(root / VAE_DIR)
    net = build_net(net_config(root))
    (root / NET).parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), root / NET)
    return root
