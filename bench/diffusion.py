"""Figures for the diffusion renderer without a GPU or real weights (see bench/README.md).

1. measured: seconds per frame of the tiny random pipeline on this CPU (a smoke figure, not a speed claim);
   seconds per training step of the tiny pipeline.
2. counted: parameters per component at the real config (SD-1.5 UNets and VAE, wav2vec2-base, Hallo-size
   projections), built on the meta device, so nothing is allocated; trainable vs frozen as training.py
   splits them.
3. estimated: GPU memory at 512x512, 16 frames, fp16: weights (counted x 2 bytes) plus the peak of live
   activation tensors, simulated on the meta device (every op's output size tracked until its last
   reference dies), with attention modelled as a fused (flash / memory-efficient) kernel, which never
   holds the [queries x keys] score matrix. Not measured on a GPU.

Writes bench/results/diffusion.json and prints the tables for bench/README.md.
Run: .venv/bin/python bench/diffusion.py [--frames 16] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers import Wav2Vec2Config, Wav2Vec2Model  # noqa: E402

from models.render.diffusion import (  # noqa: E402
    AudioProjection,
    EmoTalkPipeline,
    EmoTalkUNet,
    EmotionProjection,
    FaceLocator,
    GatedFusion,
    build_tiny_pipeline,
    hallo_scheduler_config,
)
from models.render.diffusion.training import TrainConfig, TrainingClip, train, trainable_parameters  # noqa: E402

HALLO_INFERENCE_GB = 9.77  # Hallo's reported inference memory, as the brief quotes it (not re-measured)
SD15_UNET = {
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}


# -- 1. tiny CPU timings -------------------------------------------------------------------------------


def tiny_timings(frames: int = 8, steps: int = 4) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from test_diffusion import make_portrait, make_speech  # the tests' synthetic face and speech

    torch.set_num_threads(1)
    pipe = build_tiny_pipeline(size=64)
    portrait = make_portrait(64)
    probs = np.zeros((frames, 7), np.float32)
    probs[:, 1] = 1.0
    inputs = {
        "reference_image": portrait.image,
        "landmarks": portrait.landmarks,
        "audio": make_speech(frames / 25).samples,
        "sampling_rate": 16_000,
        "emotion_probs": probs,
        "emotion_intensity": np.full(frames, 0.8, np.float32),
        "num_frames": frames,
    }
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        pipe(**inputs, num_inference_steps=steps, guidance_scale=3.5, clip_frames=4, motion_frames=2)
        runs.append(time.perf_counter() - start)
    clip = TrainingClip(
        portrait.image,
        portrait.landmarks,
        np.stack([portrait.image] * 4),
        make_speech(4 / 25).samples,
        16_000,
        probs[:4],
        np.full(4, 0.8, np.float32),
    )
    result = train(pipe, [clip], TrainConfig(steps=10, learning_rate=1e-3))
    return {
        "what": "measured, tiny random pipeline (64 px, 1 CPU thread), not a speed claim for real weights",
        "size": 64,
        "frames": frames,
        "steps": steps,
        "guidance": 3.5,
        "seconds_per_frame_median": float(np.median(runs)) / frames,
        "train_seconds_per_step_4_frames": result.seconds / 10,
    }


# -- 2. parameter counts at the real config ------------------------------------------------------------


def real_pipeline(device_dtype: torch.dtype = torch.float16) -> EmoTalkPipeline:
    """The full-size pipeline with meta tensors (no memory): Hallo's component sizes."""
    with init_empty_weights():
        pipe = EmoTalkPipeline(
            vae=AutoencoderKL(**SD15_VAE),
            reference_net=UNet2DConditionModel(**SD15_UNET),
            denoising_unet=EmoTalkUNet(**SD15_UNET),
            audio_encoder=Wav2Vec2Model(Wav2Vec2Config()),  # = wav2vec2-base-960h's shape
            audio_projection=AudioProjection(),
            emotion_projection=EmotionProjection(),
            fusion=GatedFusion(),
            face_locator=FaceLocator(),
            scheduler=DDIMScheduler(**hallo_scheduler_config()),
        )
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.to(device_dtype)
    return pipe


def parameter_counts(pipe: EmoTalkPipeline) -> dict[str, Any]:
    per_component = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    unet = pipe.denoising_unet
    trainable = trainable_parameters(pipe, train_temporal=True)
    groups = {
        "denoising_unet.spatial (SD-1.5, frozen except attn2)": sum(p.numel() for p in unet.unet.parameters())
        - sum(p.numel() for k, p in unet.unet.named_parameters() if ".processor." in k),
        "denoising_unet.region_processors": sum(
            p.numel() for k, p in unet.unet.named_parameters() if ".processor." in k
        ),
        "denoising_unet.motion_modules": sum(p.numel() for p in unet.motion_modules.parameters()),
        "denoising_unet.attn2 (q/k/v/out, trainable)": sum(
            p.numel() for k, p in unet.unet.named_parameters() if ".attn2.to_" in k
        ),
    }
    no_temporal = sum(
        p.numel()
        for k, p in trainable_parameters(pipe, train_temporal=False).items()
        if "motion_modules" not in k
    )
    return {
        "what": "counted on the meta device at the real config",
        "per_component": per_component,
        "denoising_unet_parts": groups,
        "total": sum(per_component.values()),
        "trainable": sum(p.numel() for p in trainable.values()),
        "trainable_without_temporal": no_temporal,
    }


# -- 3. memory estimate --------------------------------------------------------------------------------


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of live tensors made inside it (views share their base's storage) and the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage id -> [bytes, live tensors on it]

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, list | tuple) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key not in self._storages:
                self._storages[key] = [storage.nbytes(), 0]
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self._storages[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


def fused_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **_: Any) -> torch.Tensor:
    """Stand-in for a flash / memory-efficient kernel: output (and a small log-sum-exp), no score matrix."""
    lse = query.new_empty(query.shape[:-1], dtype=torch.float32)  # what flash attention keeps per query
    del lse
    return query.new_empty(*query.shape[:-1], value.shape[-1])


def peak_bytes(fn: Callable[[], Any]) -> int:
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = fused_attention  # type: ignore[assignment]
    try:
        with torch.no_grad(), LiveBytes() as mode:
            out = fn()
            del out
        return mode.peak
    finally:
        F.scaled_dot_product_attention = original  # type: ignore[assignment]


def memory_estimate(pipe: EmoTalkPipeline, frames: int, size: int, motion_frames: int = 2) -> dict[str, Any]:
    meta, half = torch.device("meta"), torch.float16
    latent = size // 8
    cfg = 2  # classifier-free guidance doubles the denoiser's batch
    weights_bytes = sum(
        p.numel() * p.element_size()
        for m in pipe.components.values()
        if isinstance(m, torch.nn.Module)
        for p in m.parameters()
    )

    def reference() -> Any:
        n_ref = 1 + motion_frames
        bank: dict[str, torch.Tensor] = {}
        pipe.reference_net(
            torch.empty(n_ref, 4, latent, latent, device=meta, dtype=half),
            torch.zeros(n_ref, device=meta, dtype=torch.long),
            encoder_hidden_states=torch.empty(n_ref, 1, 768, device=meta, dtype=half),
            cross_attention_kwargs={"reference_bank": bank},
            return_dict=False,
        )
        return {k: v.reshape(1, -1, v.shape[-1]).expand(cfg, -1, -1) for k, v in bank.items()}

    bank_peak = peak_bytes(reference)
    with torch.no_grad():
        bank = reference()
    bank_bytes = sum(v[0].numel() * 2 for v in bank.values())

    def denoise() -> Any:
        pyramid = {
            (latent // 2**i) ** 2: {
                r: torch.empty(1, (latent // 2**i) ** 2, 1, device=meta, dtype=half)
                for r in pipe.denoising_unet.config.regions
            }
            for i in range(4)
        }
        return pipe.denoising_unet(
            torch.empty(cfg, 4, frames, latent, latent, device=meta, dtype=half),
            torch.tensor(500, device=meta),
            torch.empty(cfg, frames, 32, 768, device=meta, dtype=half),
            reference_bank=bank,
            region_masks=pyramid,
            face_features=torch.empty(cfg, 320, latent, latent, device=meta, dtype=half),
        )

    unet_peak = peak_bytes(denoise)

    def decode() -> Any:
        return pipe.vae.decode(torch.empty(1, 4, latent, latent, device=meta, dtype=half)).sample

    vae_peak = peak_bytes(decode)
    activations = max(bank_peak, unet_peak + bank_bytes, vae_peak + bank_bytes)
    gib = 1024**3
    return {
        "what": (
            "estimated: fp16 weights counted; activation peak simulated on the meta device "
            "(inference, no_grad, fused attention, CFG batch 2); not measured on a GPU; excludes the CUDA "
            "context (~0.5 GB), allocator fragmentation and cuDNN workspaces"
        ),
        "size": size,
        "frames": frames,
        "motion_frames": motion_frames,
        "weights_fp16_gb": weights_bytes / gib,
        "reference_net_peak_gb": bank_peak / gib,
        "reference_bank_gb": bank_bytes / gib,
        "denoising_unet_peak_gb": unet_peak / gib,
        "vae_decode_one_frame_peak_gb": vae_peak / gib,
        "total_estimate_gb": (weights_bytes + activations) / gib,
        "hallo_reported_gb": HALLO_INFERENCE_GB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # the meta .to(fp16) warns once per component, harmlessly
    pipe = real_pipeline()
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__,
        },
        "parameters": parameter_counts(pipe),
        "memory": memory_estimate(pipe, args.frames, args.size),
    }
    if not args.skip_timing:
        results["tiny_cpu"] = tiny_timings()
    out = ROOT / "bench" / "results" / "diffusion.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    params, memory = results["parameters"], results["memory"]
    print("| component | parameters |\n|---|---|")
    for name, n in {**params["per_component"], **params["denoising_unet_parts"]}.items():
        print(f"| {name} | {n / 1e6:.1f} M |")
    print(f"| total | {params['total'] / 1e6:.1f} M |")
    print(
        f"| trainable (with / without temporal) | {params['trainable'] / 1e6:.1f} M / "
        f"{params['trainable_without_temporal'] / 1e6:.1f} M |"
    )
    print()
    for k, v in memory.items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    if "tiny_cpu" in results:
        print(json.dumps(results["tiny_cpu"], indent=1))


if __name__ == "__main__":
    main()
