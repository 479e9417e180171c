"""Generate Hallo reference fixtures by running Hallo's ORIGINAL code (not run in CI).

This script imports Hallo (fudan-generative-vision/hallo, MIT; written against commit 8fd7c57) from a
checkout given with ``--hallo`` and writes, under ``--out``:

* ``hallo_tensors.json``: every tensor of Hallo's ``Net`` state dict (the layout of the released
  ``net.pth``), built on the meta device from SD-1.5's public UNet config and the checkout's
  ``configs/inference/default.yaml``; no weights are read.
* ``tiny_config.json``, ``tiny_net.safetensors``, ``tiny_vae.safetensors``, ``tiny_reference.safetensors``:
  a tiny random-weight configuration of the same architecture and the inputs / outputs of Hallo's own
  modules and pipeline on it (described in the README.md next to them).

It needs a throwaway environment, never the project's venv (Hallo pins an old diffusers)::

    python3.11 -m venv /tmp/hallo-env
    /tmp/hallo-env/bin/pip install torch==2.13.0
    /tmp/hallo-env/bin/pip install diffusers==0.27.2 transformers==4.39.2 "huggingface_hub<0.25" \\
        einops omegaconf accelerate==0.28.0 numpy safetensors

and is run as::

    HF_HOME=/tmp/hallo-work/hf /tmp/hallo-env/bin/python bench/hallo_fixtures/make_fixtures.py \\
        --hallo /tmp/hallo --out tests/fixtures/hallo

Only ``hallo.models.*`` and ``hallo.animate.face_animate`` are imported (not ``hallo.datasets``, which
needs insightface / mediapipe / audio-separator). Hallo imports ``xformers`` unconditionally but only
uses it on CUDA, so an empty stand-in module is registered first. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import os
import sys
import types
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # build everything from configs; never reach a model hub

import torch
from torch import nn

HALLO_COMMIT = "8fd7c57"

# runwayml/stable-diffusion-v1-5 unet/config.json (public), the base_model_path of Hallo's inference.
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# The module kwargs scripts/inference.py uses (image proj's cross_attention_dim comes from the UNet).
FULL_FACE_LOCATOR: dict[str, Any] = {"conditioning_embedding_channels": 320}
FULL_IMAGE_PROJ: dict[str, Any] = {"clip_embeddings_dim": 512, "clip_extra_context_tokens": 4}
FULL_AUDIO_PROJ: dict[str, Any] = {
    "seq_len": 5,
    "blocks": 12,
    "channels": 768,
    "intermediate_dim": 512,
    "output_dim": 768,
    "context_tokens": 32,
}

# The tiny configuration: the same four-level architecture, small widths. Every channel count is 32
# because Hallo's motion-module GroupNorm has a hard-coded 32 groups.
TINY_UNET_OVERRIDES: dict[str, Any] = {
    "block_out_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "attention_head_dim": 2,  # diffusers' legacy name: this is the number of heads
    "cross_attention_dim": 24,
    "norm_num_groups": 8,
    "sample_size": 16,
}
TINY_MOTION_OVERRIDES: dict[str, Any] = {"num_attention_heads": 4}
TINY_AUDIO_ATTENTION_DIM = 16
TINY_FACE_LOCATOR: dict[str, Any] = {
    "conditioning_embedding_channels": 32,
    "conditioning_channels": 3,
    "block_out_channels": [4, 8, 8, 16],
}
TINY_IMAGE_PROJ: dict[str, Any] = {"clip_embeddings_dim": 20, "clip_extra_context_tokens": 4}
TINY_AUDIO_PROJ: dict[str, Any] = {
    "seq_len": 5,
    "blocks": 3,
    "channels": 8,
    "intermediate_dim": 32,
    "output_dim": TINY_AUDIO_ATTENTION_DIM,
    "context_tokens": 6,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 128,
}
TINY_PIPELINE: dict[str, Any] = {
    "image_size": 128,  # width == height; Hallo's audio modules need square latents
    "clip_length": 4,  # data.n_sample_frames
    "n_motion_frames": 2,  # data.n_motion_frames
    "num_clips": 2,
    "inference_steps": 3,
    "cfg_scale": 3.5,
    "motion_scale": [0.8, 1.2, 1.5],  # [pose_weight, face_weight, lip_weight]
    "generator_seed": 42,  # generator = torch.manual_seed(42), as in scripts/inference.py
}
WEIGHT_SEED = 1234
INPUT_SEED = 5678


class HalloModules(types.SimpleNamespace):
    """The Hallo classes this script uses, imported from the checkout."""


def import_hallo(checkout: Path) -> HalloModules:
    """Import Hallo's model modules and pipeline from ``checkout`` (with an xformers stand-in)."""
    import diffusers  # noqa: F401  (first: its import-time xformers probe must not see the stand-in)

    if "xformers" not in sys.modules:
        xformers = types.ModuleType("xformers")
        xformers_ops = types.ModuleType("xformers.ops")
        xformers.ops = xformers_ops  # type: ignore[attr-defined]
        sys.modules["xformers"] = xformers
        sys.modules["xformers.ops"] = xformers_ops
    sys.path.insert(0, str(checkout.resolve()))

    from hallo.animate.face_animate import FaceAnimatePipeline
    from hallo.models.attention import BasicTransformerBlock
    from hallo.models.audio_proj import AudioProjModel
    from hallo.models.face_locator import FaceLocator
    from hallo.models.image_proj import ImageProjModel
    from hallo.models.unet_2d_condition import UNet2DConditionModel
    from hallo.models.unet_3d import UNet3DConditionModel

    return HalloModules(
        FaceAnimatePipeline=FaceAnimatePipeline,
        BasicTransformerBlock=BasicTransformerBlock,
        AudioProjModel=AudioProjModel,
        FaceLocator=FaceLocator,
        ImageProjModel=ImageProjModel,
        UNet2DConditionModel=UNet2DConditionModel,
        UNet3DConditionModel=UNet3DConditionModel,
    )


class Net(nn.Module):
    """The container scripts/inference.py loads net.pth into; same attribute names, so same keys."""

    # Hallo's diffusers ModelMixin subclasses (untyped).
    reference_unet: Any
    denoising_unet: Any
    face_locator: Any
    imageproj: Any
    audioproj: Any

    def __init__(
        self,
        reference_unet: nn.Module,
        denoising_unet: nn.Module,
        face_locator: nn.Module,
        imageproj: nn.Module,
        audioproj: nn.Module,
    ) -> None:
        super().__init__()
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.face_locator = face_locator
        self.imageproj = imageproj
        self.audioproj = audioproj


def load_inference_yaml(checkout: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    config: Any = OmegaConf.to_container(OmegaConf.load(checkout / "configs/inference/default.yaml"))
    assert isinstance(config, dict)
    return config


def to_3d_config(unet_2d_config: dict[str, Any]) -> dict[str, Any]:
    """The edits UNet3DConditionModel.from_pretrained_2d makes to the 2D config (use_landmark=False)."""
    config = copy.deepcopy(unet_2d_config)
    config["_class_name"] = "UNet3DConditionModel"
    config["down_block_types"] = ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"]
    config["up_block_types"] = ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3
    config["mid_block_type"] = "UNetMidBlock3DCrossAttn"
    return config


def build_net(
    hallo: HalloModules,
    unet_2d_config: dict[str, Any],
    unet_additional_kwargs: dict[str, Any],
    face_locator_kwargs: dict[str, Any],
    image_proj_kwargs: dict[str, Any],
    audio_proj_kwargs: dict[str, Any],
) -> Net:
    """Construct the five modules the way scripts/inference.py does, without reading any weights."""
    reference_unet = hallo.UNet2DConditionModel.from_config(copy.deepcopy(unet_2d_config))
    denoising_unet = hallo.UNet3DConditionModel.from_config(
        to_3d_config(unet_2d_config), **copy.deepcopy(unet_additional_kwargs)
    )
    face_locator = hallo.FaceLocator(**face_locator_kwargs)
    image_proj = hallo.ImageProjModel(
        cross_attention_dim=denoising_unet.config.cross_attention_dim, **image_proj_kwargs
    )
    audio_proj = hallo.AudioProjModel(**audio_proj_kwargs)
    return Net(reference_unet, denoising_unet, face_locator, image_proj, audio_proj)


def write_tensor_list(hallo: HalloModules, yaml_config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the full-size Net state-dict layout (names, shapes, dtypes, persistent buffers)."""
    with torch.device("meta"):
        net = build_net(
            hallo,
            SD15_UNET_CONFIG,
            yaml_config["unet_additional_kwargs"],
            FULL_FACE_LOCATOR,
            FULL_IMAGE_PROJ,
            FULL_AUDIO_PROJ,
        )
    state = net.state_dict()
    buffers = dict(net.named_buffers())
    names = sorted(state)
    listing = {
        "source": (
            f"fudan-generative-vision/hallo@{HALLO_COMMIT}: scripts/inference.py's Net built on the meta "
            "device from runwayml/stable-diffusion-v1-5 unet/config.json and configs/inference/default.yaml "
            "(unet_additional_kwargs), by bench/hallo_fixtures/make_fixtures.py; diffusers 0.27.2, "
            f"torch {torch.__version__}. Keys are net.state_dict() keys, i.e. those of the released net.pth."
        ),
        "count": len(names),
        "counts": dict(sorted(Counter(name.split(".")[0] for name in names).items())),
        "parameters": sum(state[name].numel() for name in names if name not in buffers),
        "dtype_note": "dtypes are as constructed; the released net.pth may store another dtype",
        "dtypes": dict(Counter(str(state[name].dtype).removeprefix("torch.") for name in names)),
        "tensors": {name: list(state[name].shape) for name in names},
        "buffers": {
            "note": (
                "persistent buffers that are part of the state dict (and so of net.pth): the motion "
                "modules' sinusoidal positional encodings, shape [1, max_len, dim]"
            ),
            "names": sorted(buffers),
        },
    }
    (out / "hallo_tensors.json").write_text(dump_json(listing))
    return listing


def dump_json(data: dict[str, Any]) -> str:
    """JSON with one line per entry of each dict and lists kept on one line (readable diffs)."""

    def render(value: Any, indent: int) -> str:
        if isinstance(value, dict) and value:
            pad = " " * (indent + 1)
            items = [f"{pad}{json.dumps(key)}: {render(item, indent + 1)}" for key, item in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        return json.dumps(value)

    return render(data, 0) + "\n"


def randomize_(module: nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded, non-trivial values that float16 represents exactly.

    Norm weights are 1 + 0.1 N(0, 1) and norm biases 0.1 N(0, 1); other weights N(0, 1 / fan_in); other
    biases 0.1 N(0, 1). Zero-initialised layers (motion-module proj_out, audio zero convs, face-locator
    conv_out) are therefore non-zero. Buffers (the positional encodings) keep their computed values.
    """
    generator = torch.Generator().manual_seed(seed)
    norm_params = {
        f"{name}.{param_name}"
        for name, sub in module.named_modules()
        if isinstance(sub, nn.GroupNorm | nn.LayerNorm)
        for param_name, _ in sub.named_parameters(recurse=False)
    }
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name in norm_params:
                value = 1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise
            elif param.ndim >= 2:
                value = noise / math.sqrt(param[0].numel())
            else:
                value = 0.1 * noise
            param.copy_(value.half().float())


def make_masks(image_size: int, generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """Full / face / lip attention masks at the four latent levels (image/8 .. image/64), shape (1, HW)."""
    masks: dict[str, list[torch.Tensor]] = {}
    for kind in ("full", "face", "lip"):
        masks[kind] = [
            torch.rand(1, (image_size // factor) ** 2, generator=generator) for factor in (8, 16, 32, 64)
        ]
    return masks


def window_audio(features: torch.Tensor) -> torch.Tensor:
    """scripts/inference.py's process_audio_emb: frame i gets frames i-2..i+2, clamped to the ends."""
    last = features.shape[0] - 1
    windows = [
        torch.stack([features[min(max(i + j, 0), last)] for j in range(-2, 3)])
        for i in range(features.shape[0])
    ]
    return torch.stack(windows)


class Recorder:
    """Collects tensors (cloned, float32 / int64, contiguous) under flat names."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def put(self, name: str, value: torch.Tensor | float | int | list[float]) -> None:
        assert name not in self.tensors, name
        tensor = torch.as_tensor(value).detach().clone().cpu().contiguous()
        if tensor.is_floating_point():
            tensor = tensor.float()
        self.tensors[name] = tensor

    def put_masks(self, prefix: str, masks: list[torch.Tensor]) -> None:
        for level, mask in enumerate(masks):
            self.put(f"{prefix}.{level}", mask)


def run_single_module_checks(net: Net, rec: Recorder, generator: torch.Generator) -> None:
    """Checks 1-3: face locator, image projection, audio projection on their own inputs."""
    face_cfg, image_cfg, audio_cfg = TINY_FACE_LOCATOR, TINY_IMAGE_PROJ, TINY_AUDIO_PROJ
    with torch.no_grad():
        mask = torch.rand(1, face_cfg["conditioning_channels"], 2, 64, 64, generator=generator)
        rec.put("face_locator.input", mask)
        rec.put("face_locator.output", net.face_locator(mask))

        embeds = torch.randn(2, image_cfg["clip_embeddings_dim"], generator=generator)
        rec.put("imageproj.input", embeds)
        rec.put("imageproj.output", net.imageproj(embeds))

        shape = (2, 3, audio_cfg["seq_len"], audio_cfg["blocks"], audio_cfg["channels"])
        audio = torch.randn(shape, generator=generator)
        rec.put("audioproj.input", audio)
        rec.put("audioproj.output", net.audioproj(audio))


class PipelineProbe:
    """Hooks on Hallo's own modules that record what FaceAnimatePipeline computes, call by call."""

    def __init__(self, hallo: HalloModules, pipeline: Any) -> None:
        self.hallo = hallo
        self.pipeline = pipeline
        self.reference_calls: list[dict[str, Any]] = []
        self.denoise_calls: list[dict[str, Any]] = []
        self.step_calls: list[dict[str, torch.Tensor]] = []
        self.initial_latents: list[torch.Tensor] = []
        self.handles = [
            pipeline.reference_unet.register_forward_hook(self._on_reference, with_kwargs=True),
            pipeline.denoising_unet.register_forward_hook(self._on_denoise, with_kwargs=True),
        ]
        self._wrap_prepare_latents()
        self._wrap_scheduler_step()

    def _wrap_prepare_latents(self) -> None:
        original = self.pipeline.prepare_latents

        @functools.wraps(original)
        def prepare_latents(*args: Any, **kwargs: Any) -> torch.Tensor:
            latents = original(*args, **kwargs)
            self.initial_latents.append(latents.detach().clone())
            return latents

        self.pipeline.prepare_latents = prepare_latents

    def _wrap_scheduler_step(self) -> None:
        scheduler = self.pipeline.scheduler
        original = scheduler.step

        @functools.wraps(original)  # keeps the signature prepare_extra_step_kwargs inspects
        def step(
            model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any
        ) -> Any:
            result = original(model_output, timestep, sample, *args, **kwargs)
            self.step_calls.append(
                {
                    "noise_pred": model_output.clone(),
                    "latents_in": sample.clone(),
                    "latents_out": result[0].clone(),
                }
            )
            return result

        scheduler.step = step

    def _on_reference(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        banks = [
            (name, [entry.clone() for entry in sub.bank])
            for name, sub in module.named_modules()
            if isinstance(sub, self.hallo.BasicTransformerBlock)
        ]
        self.reference_calls.append(
            {
                "sample": args[0].clone(),
                "timestep": torch.as_tensor(args[1]).clone(),
                "encoder_hidden_states": kwargs["encoder_hidden_states"].clone(),
                "banks": banks,
            }
        )

    def _on_denoise(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.denoise_calls.append(
            {
                "sample": args[0].clone(),
                "timestep": torch.as_tensor(args[1]).clone(),
                "encoder_hidden_states": kwargs["encoder_hidden_states"].clone(),
                "mask_cond_fea": kwargs["mask_cond_fea"].clone(),
                "full_mask": [m.clone() for m in kwargs["full_mask"]],
                "face_mask": [m.clone() for m in kwargs["face_mask"]],
                "lip_mask": [m.clone() for m in kwargs["lip_mask"]],
                "audio_embedding": kwargs["audio_embedding"].clone(),
                "motion_scale": list(kwargs["motion_scale"]),
                "output": output[0].clone(),
            }
        )

    def reset(self) -> None:
        for calls in (self.reference_calls, self.denoise_calls, self.step_calls, self.initial_latents):
            calls.clear()


def run_clips(
    net: Net,
    pipeline: Any,
    inputs: dict[str, Any],
    settings: dict[str, Any],
    probe: PipelineProbe,
    num_clips: int,
) -> list[dict[str, Any]]:
    """scripts/inference.py's clip loop (from "times = ..." on), one record per clip."""
    clip_length, n_motion = settings["clip_length"], settings["n_motion_frames"]
    source_pixels = inputs["source_image_pixels"].unsqueeze(0)  # (1, 3, H, W)
    face_region = inputs["face_region"].unsqueeze(0)  # (1, 3, H, W)
    masks = {kind: [m.repeat(clip_length, 1) for m in levels] for kind, levels in inputs["masks"].items()}
    audio_windows = inputs["audio_windows"]

    generator = torch.manual_seed(settings["generator_seed"])  # the global generator, as inference.py
    videos: list[torch.Tensor] = []
    records: list[dict[str, Any]] = []
    for clip in range(num_clips):
        probe.reset()
        if not videos:
            motion = source_pixels.repeat(n_motion, 1, 1, 1)
        else:
            motion = videos[-1][0].permute(1, 0, 2, 3)[-n_motion:] * 2.0 - 1.0
        pixel_values_ref_img = torch.cat([source_pixels, motion], dim=0).unsqueeze(0)

        audio_tensor = audio_windows[clip * clip_length : (clip + 1) * clip_length].unsqueeze(0)
        with torch.no_grad():
            audio_tensor = net.audioproj(audio_tensor)

        output = pipeline(
            ref_image=pixel_values_ref_img,
            audio_tensor=audio_tensor,
            face_emb=inputs["face_emb"],
            face_mask=face_region,
            pixel_values_full_mask=masks["full"],
            pixel_values_face_mask=masks["face"],
            pixel_values_lip_mask=masks["lip"],
            width=settings["image_size"],
            height=settings["image_size"],
            video_length=clip_length,
            num_inference_steps=settings["inference_steps"],
            guidance_scale=settings["cfg_scale"],
            generator=generator,
            motion_scale=settings["motion_scale"],
        )
        videos.append(output.videos)
        records.append(
            {
                "audio_tensor": audio_tensor,
                "video": output.videos,
                "timesteps": pipeline.scheduler.timesteps.clone(),
                "initial_latents": probe.initial_latents[0],
                "reference": probe.reference_calls[0],
                "denoise": list(probe.denoise_calls),
                "steps": list(probe.step_calls),
            }
        )
    return records


def make_pipeline_inputs(generator: torch.Generator) -> dict[str, Any]:
    settings = TINY_PIPELINE
    size = settings["image_size"]
    frames = settings["clip_length"] * settings["num_clips"]
    audio_features = torch.randn(
        frames, TINY_AUDIO_PROJ["blocks"], TINY_AUDIO_PROJ["channels"], generator=generator
    )
    return {
        "source_image_pixels": torch.rand(3, size, size, generator=generator) * 2.0 - 1.0,
        "face_region": (torch.rand(3, size, size, generator=generator) > 0.5).float(),
        "face_emb": torch.randn(1, TINY_IMAGE_PROJ["clip_embeddings_dim"], generator=generator),
        "masks": make_masks(size, generator),
        "audio_features": audio_features,
        "audio_windows": window_audio(audio_features),
    }


def record_step_check(rec: Recorder, clip: dict[str, Any], cfg_scale: float) -> None:
    """Check 4 (reference banks) and check 5 (one denoising step): clip 0, first timestep."""
    reference = clip["reference"]
    rec.put("reference.sample", reference["sample"])
    rec.put("reference.timestep", reference["timestep"])
    rec.put("reference.encoder_hidden_states", reference["encoder_hidden_states"])
    for index, (name, bank) in enumerate(reference["banks"]):
        assert len(bank) == 1, (name, len(bank))
        rec.put(f"reference_bank.{index:02d}.{name}", bank[0])

    call, step = clip["denoise"][0], clip["steps"][0]
    half = reference["sample"].shape[0] // 2
    rec.put("step.ref_image_latents", reference["sample"][:half])
    rec.put("step.sample", call["sample"])
    rec.put("step.timestep", call["timestep"])
    rec.put("step.encoder_hidden_states", call["encoder_hidden_states"])
    rec.put("step.mask_cond_fea", call["mask_cond_fea"])
    rec.put_masks("step.full_mask", call["full_mask"])
    rec.put_masks("step.face_mask", call["face_mask"])
    rec.put_masks("step.lip_mask", call["lip_mask"])
    rec.put("step.audio_embedding", call["audio_embedding"])
    rec.put("step.motion_scale", call["motion_scale"])
    rec.put("step.noise_pred", call["output"])
    uncond, cond = call["output"].chunk(2)
    guided = uncond + cfg_scale * (cond - uncond)
    assert torch.equal(guided, step["noise_pred"])
    rec.put("step.noise_pred_guided", guided)
    rec.put("step.latents", step["latents_in"])
    rec.put("step.latents_next", step["latents_out"])


def record_pipeline(rec: Recorder, inputs: dict[str, Any], clips: list[dict[str, Any]]) -> None:
    """Check 6: the two-clip run, inputs and per-clip intermediates and outputs."""
    rec.put("pipeline.source_image_pixels", inputs["source_image_pixels"])
    rec.put("pipeline.face_region", inputs["face_region"])
    rec.put("pipeline.face_emb", inputs["face_emb"])
    for kind, levels in inputs["masks"].items():
        rec.put_masks(f"pipeline.{kind}_mask", levels)
    rec.put("pipeline.audio_features", inputs["audio_features"])
    rec.put("pipeline.audio_windows", inputs["audio_windows"])
    for index, clip in enumerate(clips):
        prefix = f"pipeline.clip{index}"
        half = clip["reference"]["sample"].shape[0] // 2
        rec.put(f"{prefix}.audio_tensor", clip["audio_tensor"])
        rec.put(f"{prefix}.ref_image_latents", clip["reference"]["sample"][:half])
        rec.put(f"{prefix}.timesteps", clip["timesteps"])
        rec.put(f"{prefix}.initial_latents", clip["initial_latents"])
        for step_index, (call, step) in enumerate(zip(clip["denoise"], clip["steps"], strict=True)):
            rec.put(f"{prefix}.step{step_index}.noise_pred", call["output"])
            rec.put(f"{prefix}.step{step_index}.latents_next", step["latents_out"])
        rec.put(f"{prefix}.video", clip["video"])


def check_global_noise(clips: list[dict[str, Any]], seed: int) -> bool:
    """Whether each clip's initial latents are the next torch.randn draw of a fresh generator(seed)."""
    generator = torch.Generator().manual_seed(seed)
    return all(
        torch.equal(clip["initial_latents"], torch.randn(clip["initial_latents"].shape, generator=generator))
        for clip in clips
    )


def save_safetensors(
    path: Path,
    tensors: dict[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    keep: frozenset[str] = frozenset(),
) -> None:
    """Save sorted tensors, casting floating ones to ``dtype`` except the names in ``keep``."""
    from safetensors.torch import save_file

    prepared = {
        name: (
            t.to(dtype) if dtype is not None and t.is_floating_point() and name not in keep else t
        ).contiguous()
        for name, t in sorted(tensors.items())
    }
    save_file(prepared, str(path), metadata={"generator": "bench/hallo_fixtures/make_fixtures.py"})


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("torch", "diffusers", "transformers", "huggingface_hub", "accelerate", "einops", "omegaconf")
    return {name: version(name) for name in names} | {"python": sys.version.split()[0]}


def tiny_unet_config() -> dict[str, Any]:
    return SD15_UNET_CONFIG | TINY_UNET_OVERRIDES


def tiny_additional_kwargs(yaml_config: dict[str, Any]) -> dict[str, Any]:
    kwargs = copy.deepcopy(yaml_config["unet_additional_kwargs"])
    kwargs["motion_module_kwargs"].update(TINY_MOTION_OVERRIDES)
    kwargs["audio_attention_dim"] = TINY_AUDIO_ATTENTION_DIM
    return kwargs


def plain_config(config: Any) -> dict[str, Any]:
    """A diffusers config as JSON data, without the set-ordered `_use_default_values` bookkeeping."""
    data: dict[str, Any] = json.loads(json.dumps(dict(config)))
    data.pop("_use_default_values", None)
    return data


def scheduler_kwargs(yaml_config: dict[str, Any]) -> dict[str, Any]:
    """DDIM kwargs exactly as scripts/inference.py forms them (enable_zero_snr applied)."""
    kwargs = dict(yaml_config["noise_scheduler_kwargs"])
    if yaml_config.get("enable_zero_snr"):
        kwargs.update(
            rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"
        )
    return kwargs


def eval_mode_difference(net: Net, pipeline: Any, inputs: dict[str, Any], probe: PipelineProbe) -> dict:
    """How far clip 0 moves if the denoising UNet ran in eval mode instead (a negative control, not saved)."""
    train_clip = run_clips(net, pipeline, inputs, TINY_PIPELINE, probe, num_clips=1)[0]
    net.denoising_unet.eval()
    try:
        eval_clip = run_clips(net, pipeline, inputs, TINY_PIPELINE, probe, num_clips=1)[0]
    finally:
        net.denoising_unet.train()
    train_pred, eval_pred = train_clip["denoise"][0]["output"], eval_clip["denoise"][0]["output"]
    return {
        "step0_noise_pred_relative_l2": float((train_pred - eval_pred).norm() / train_pred.norm()),
        "video_mean_abs": float((train_clip["video"] - eval_clip["video"]).abs().mean()),
    }


def write_tiny(
    hallo: HalloModules, yaml_config: dict[str, Any], out: Path, weights_dtype: torch.dtype
) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler

    unet_config, additional = tiny_unet_config(), tiny_additional_kwargs(yaml_config)
    net = build_net(hallo, unet_config, additional, TINY_FACE_LOCATOR, TINY_IMAGE_PROJ, TINY_AUDIO_PROJ)
    randomize_(net, WEIGHT_SEED)
    vae: Any = AutoencoderKL(**TINY_VAE)
    randomize_(vae, WEIGHT_SEED + 1)

    # The module states scripts/inference.py ends up with: from_pretrained() puts the reference UNet and
    # the VAE in eval mode; from_pretrained_2d() builds the denoising UNet with from_config(), which leaves
    # it in TRAINING mode, and enable_gradient_checkpointing() is then called on both UNets. The 3D blocks
    # take their `self.training and self.gradient_checkpointing` branch, which is the one that feeds the
    # reference motion frames to the motion modules and motion_scale to the audio modules.
    vae.eval()
    net.reference_unet.eval()
    net.denoising_unet.train()
    for module in (
        vae,
        net.reference_unet,
        net.denoising_unet,
        net.face_locator,
        net.imageproj,
        net.audioproj,
    ):
        module.requires_grad_(False)
    net.reference_unet.enable_gradient_checkpointing()
    net.denoising_unet.enable_gradient_checkpointing()

    sched_kwargs = scheduler_kwargs(yaml_config)
    pipeline = hallo.FaceAnimatePipeline(
        vae=vae,
        reference_unet=net.reference_unet,
        denoising_unet=net.denoising_unet,
        face_locator=net.face_locator,
        scheduler=DDIMScheduler(**sched_kwargs),
        image_proj=net.imageproj,
    )
    pipeline.to(device="cpu", dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    probe = PipelineProbe(hallo, pipeline)

    rec = Recorder()
    run_single_module_checks(net, rec, torch.Generator().manual_seed(INPUT_SEED))
    inputs = make_pipeline_inputs(torch.Generator().manual_seed(INPUT_SEED + 1))
    clips = run_clips(net, pipeline, inputs, TINY_PIPELINE, probe, TINY_PIPELINE["num_clips"])
    record_step_check(rec, clips[0], TINY_PIPELINE["cfg_scale"])
    record_pipeline(rec, inputs, clips)
    noise_is_fresh_generator = check_global_noise(clips, TINY_PIPELINE["generator_seed"])
    eval_difference = eval_mode_difference(net, pipeline, inputs, probe)

    buffers = frozenset(name for name, _ in net.named_buffers())  # pos_encoder.pe: not float16-exact
    save_safetensors(out / "tiny_net.safetensors", net.state_dict(), weights_dtype, keep=buffers)
    save_safetensors(out / "tiny_vae.safetensors", vae.state_dict(), weights_dtype)
    save_safetensors(out / "tiny_reference.safetensors", rec.tensors)

    bank_layers = [name for name, _ in clips[0]["reference"]["banks"]]
    config = {
        "source": f"fudan-generative-vision/hallo@{HALLO_COMMIT}, bench/hallo_fixtures/make_fixtures.py",
        "versions": versions(),
        "reference_unet": {
            "class": "hallo.models.unet_2d_condition.UNet2DConditionModel",
            "from_config": unet_config,
            "mode": "eval (from_pretrained); enable_gradient_checkpointing() called (no effect in eval)",
        },
        "denoising_unet": {
            "class": "hallo.models.unet_3d.UNet3DConditionModel",
            "from_config": to_3d_config(unet_config),
            "unet_additional_kwargs": additional,
            "resolved_config": plain_config(net.denoising_unet.config),
            "mode": "TRAINING (from_config) with enable_gradient_checkpointing(), as in scripts/inference.py",
        },
        "face_locator": {"class": "hallo.models.face_locator.FaceLocator", "kwargs": TINY_FACE_LOCATOR},
        "imageproj": {
            "class": "hallo.models.image_proj.ImageProjModel",
            "kwargs": {"cross_attention_dim": unet_config["cross_attention_dim"], **TINY_IMAGE_PROJ},
        },
        "audioproj": {"class": "hallo.models.audio_proj.AudioProjModel", "kwargs": TINY_AUDIO_PROJ},
        "vae": {
            "class": "diffusers.AutoencoderKL",
            "kwargs": TINY_VAE,
            "resolved_config": plain_config(vae.config),
            "latent_scale": 0.18215,
        },
        "scheduler": {"class": "diffusers.DDIMScheduler", "kwargs": sched_kwargs},
        "pipeline": TINY_PIPELINE | {"eta": 0.0, "latent_size": TINY_PIPELINE["image_size"] // 8},
        "weights": {
            "seed": WEIGHT_SEED,
            "scheme": "norm weight 1+0.1N, norm bias 0.1N, other weights N(0,1/fan_in), other biases 0.1N; "
            "values rounded to float16-representable floats; buffers (pos_encoder.pe) as computed",
            "stored_dtype": str(weights_dtype).removeprefix("torch.") + " (buffers pos_encoder.pe: float32)",
            "compute_dtype": "float32",
        },
        "reference_bank_layers": bank_layers,
        "observations": {
            "initial_latents_are_fresh_generator_draws": noise_is_fresh_generator,
            "clip0_change_if_denoising_unet_were_in_eval_mode": eval_difference,
        },
        "reference_tensors": {name: list(t.shape) for name, t in sorted(rec.tensors.items())},
    }
    (out / "tiny_config.json").write_text(dump_json(config))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hallo", type=Path, required=True, help="a checkout of fudan-generative-vision/hallo"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (tests/fixtures/hallo)")
    parser.add_argument(
        "--weights-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="storage dtype of tiny_net / tiny_vae (the values are float16-exact either way)",
    )
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    args.out.mkdir(parents=True, exist_ok=True)

    hallo = import_hallo(args.hallo)
    yaml_config = load_inference_yaml(args.hallo)
    listing = write_tensor_list(hallo, yaml_config, args.out)
    print(f"hallo_tensors.json: {listing['count']} tensors {listing['counts']}")
    config = write_tiny(hallo, yaml_config, args.out, getattr(torch, args.weights_dtype))
    print(f"tiny fixtures: {len(config['reference_tensors'])} reference tensors; {config['observations']}")


if __name__ == "__main__":
    main()
