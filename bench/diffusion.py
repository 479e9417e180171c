"""Figures for the diffusion renderer (Hallo + our emotion adapter) without a GPU or real weights.

1. counted: parameters per component at Hallo's real configuration (SD-1.5's UNet config, Hallo's
   inference kwargs, sd-vae-ft-mse, wav2vec2-base), built on the meta device, so nothing is allocated;
   the number of tensors net.pth must hold.
2. estimated: GPU memory at 512x512, one 16-frame clip (+2 motion frames), fp16, guidance (batch 2):
   weights (counted x 2 bytes) plus the peak of live activation tensors of one clip's work (VAE encode,
   ReferenceNet pass, ONE denoising step, VAE decode), simulated on the meta device: every op's output
   is tracked until its last reference dies. Attention is modelled as a fused (flash / memory-efficient)
   kernel, which never holds the [queries x keys] score matrix. Not measured on a GPU.
3. measured: seconds per frame of `HalloPipeline.__call__` and seconds per adapter training step on the
   tiny random weights folder (`write_tiny_weights`), on this CPU: a smoke figure, not a speed claim.

Writes bench/results/diffusion.json and prints the tables for bench/README.md.
Run: .venv/bin/python bench/diffusion.py [--frames 16] [--size 512] [--skip-timing]
The GPU counterpart (real size, random weights, measured) is bench/diffusion_gpu.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusers.models import AutoencoderKL  # noqa: E402
from diffusers.schedulers.scheduling_ddim import DDIMScheduler  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers import Wav2Vec2Config, Wav2Vec2Model  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from models.render.diffusion.conditions import EmotionAdapter  # noqa: E402
from models.render.diffusion.masks import LEVELS, HalloMasks  # noqa: E402
from models.render.diffusion.pipeline import HalloPipeline, hallo_scheduler_config  # noqa: E402
from models.render.diffusion.weights import (  # noqa: E402
    NET_PARTS,
    SD15_UNET_CONFIG,
    UNET_CONFIG,
    WAV2VEC_DIR,
    HalloNet,
    NetConfig,
    build_net,
    expected_tensors,
    net_config,
)

# stabilityai/sd-vae-ft-mse: AutoencoderKL's SD layout (the fine-tune changed weights, not shapes)
SD15_VAE: dict[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}
NET_PTH_TENSORS = 2656  # Hallo's Net state dict, listed by bench/hallo_fixtures/make_fixtures.py
# Hallo's paper (arXiv:2406.08801), Table 7, as quoted in fudan-generative-vision/hallo issue #28;
# the GPU is the A100 the issue names. Not re-measured here.
HALLO_REPORTED: dict[str, Any] = {
    "source": "Hallo paper (arXiv:2406.08801) Table 7, quoted in fudan-generative-vision/hallo#28",
    "gpu": "A100",
    "512": {"memory_gb": 9.77, "seconds_per_frame": 1.63},
    "256": {"memory_gb": 6.62, "seconds_per_frame": 0.46},
    "1024": {"memory_gb": 20.66, "seconds_per_frame": 10.29},
}
GB = 1e9


# -- the real configuration ----------------------------------------------------------------------------


def real_config(directory: Path) -> NetConfig:
    """Hallo's configuration read the way a weights folder is read: SD-1.5's UNet config, wav2vec2-base."""
    (directory / UNET_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (directory / UNET_CONFIG).write_text(json.dumps(SD15_UNET_CONFIG))
    (directory / WAV2VEC_DIR).mkdir(parents=True, exist_ok=True)
    Wav2Vec2Config().to_json_file(directory / WAV2VEC_DIR / "config.json")  # defaults = wav2vec2-base
    return net_config(directory)


@dataclass
class RealModel:
    config: NetConfig
    net: HalloNet
    vae: AutoencoderKL
    audio_encoder: Wav2Vec2Model
    emotion_adapter: EmotionAdapter


def real_model(device: str | torch.device = "meta") -> RealModel:
    """Every module at full size; on "meta" nothing is allocated, elsewhere the weights are random."""
    with tempfile.TemporaryDirectory() as directory:
        config = real_config(Path(directory))
    net = build_net(config, device)
    with torch.device(device):
        vae = AutoencoderKL(**SD15_VAE)
        adapter = EmotionAdapter(**config.emotion_adapter)
    # transformers ignores a torch.device context: meta needs accelerate's, elsewhere it is moved after
    if str(device) == "meta":
        with init_empty_weights():
            audio_encoder = Wav2Vec2Model(Wav2Vec2Config())
    else:
        audio_encoder = Wav2Vec2Model(Wav2Vec2Config()).to(device)
    return RealModel(config, net, vae, audio_encoder.eval(), adapter)


def assemble(model: RealModel) -> HalloPipeline:
    """The pipeline around the modules, as weights.load_pipeline assembles it."""
    net = model.net
    return HalloPipeline(
        vae=model.vae,
        reference_unet=net.reference_unet,
        denoising_unet=net.denoising_unet,
        face_locator=net.face_locator,
        image_proj=net.imageproj,
        audio_proj=net.audioproj,
        emotion_adapter=model.emotion_adapter,
        audio_encoder=model.audio_encoder,
        scheduler=DDIMScheduler(**hallo_scheduler_config()),
    )


def count(module: nn.Module, contains: str | None = None) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if contains is None or contains in name)


# -- 1. parameter counts -------------------------------------------------------------------------------


def parameter_counts(model: RealModel) -> dict[str, Any]:
    net, unet = model.net, model.net.denoising_unet
    motion, audio = count(unet, ".motion_modules."), count(unet, ".audio_modules.")
    # DownBlock3D / UpBlock3D (no cross-attention) hold motion modules that Hallo's released code path
    # never runs (see unet.py); net.pth still holds their tensors
    idle_motion = sum(
        count(block.motion_modules)
        for block in (*unet.down_blocks, *unet.up_blocks)
        if block.attentions is None
    )
    parts = {name: count(getattr(net, name)) for name in NET_PARTS}
    others = {
        "vae (sd-vae-ft-mse)": count(model.vae),
        "wav2vec2-base": count(model.audio_encoder),
        "emotion_adapter (ours)": count(model.emotion_adapter),
    }
    tensors = len(expected_tensors(model.config))
    total = sum(parts.values()) + sum(others.values())
    return {
        "what": "counted on the meta device at Hallo's configuration",
        "net_pth_tensors": tensors,
        "net_pth_tensors_expected": NET_PTH_TENSORS,
        "net": parts,
        "net_total": sum(parts.values()),
        "denoising_unet_parts": {
            "spatial (SD-1.5 layers)": count(unet) - motion - audio,
            "motion_modules": motion,
            "of which never run (in DownBlock3D / UpBlock3D)": idle_motion,
            "audio_modules": audio,
        },
        "other": others,
        "total": total,
        "trainable": others["emotion_adapter (ours)"],
        "frozen": total - others["emotion_adapter (ours)"],
    }


# -- 2. memory estimate --------------------------------------------------------------------------------


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of live tensors made inside it (views share their base's storage) and the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage id -> [bytes, live tensors on it]

    def phase(self) -> int:
        """The peak since the last call (what was live before counts), then start a new phase."""
        peak, self.peak = self.peak, self.live
        return peak

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
    """Stand-in for a flash / memory-efficient kernel: its output only, no score matrix."""
    del key  # its size does not matter to a fused kernel's memory
    return query.new_empty(*query.shape[:-1], value.shape[-1])


@contextmanager
def simulated() -> Iterator[LiveBytes]:
    """no_grad, fused attention and the live-bytes tracker, as an fp16 CUDA inference run would see it."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = fused_attention  # type: ignore[assignment]
    try:
        with torch.no_grad(), LiveBytes() as mode:
            yield mode
    finally:
        F.scaled_dot_product_attention = original  # type: ignore[assignment]


def module_bytes(pipe: HalloPipeline) -> int:
    return sum(
        t.numel() * t.element_size()
        for m in pipe.components.values()
        if isinstance(m, nn.Module)
        for t in (*m.parameters(), *m.buffers())
    )


def memory_estimate(model: RealModel, frames: int, size: int, motion_frames: int = 2) -> dict[str, Any]:
    """One clip's work in denoise_clip's order, on meta tensors, with one denoising step of the 40."""
    pipe = assemble(model)
    pipe.to(dtype=torch.float16)
    meta = {"device": torch.device("meta"), "dtype": torch.float16}
    latent = size // 8
    adapter = pipe.emotion_adapter.config
    peaks: dict[str, int] = {}
    with simulated() as mode:
        sides = [size // (8 * 2**level) for level in range(LEVELS)]
        masks = HalloMasks(
            face_region=torch.empty(3, size, size, **meta),
            full=[torch.empty(1, n * n, **meta) for n in sides],
            face=[torch.empty(1, n * n, **meta) for n in sides],
            lip=[torch.empty(1, n * n, **meta) for n in sides],
        )
        audio = model.config.audio_proj
        windows = torch.empty(1, frames, audio["seq_len"], audio["blocks"], audio["channels"], **meta)
        probs = torch.empty(frames, len(adapter["labels"]), **meta)
        tokens = pipe.audio_tokens(windows, probs, torch.empty(frames, **meta))
        conditions = pipe.clip_conditions(
            torch.empty(1 + motion_frames, 3, size, size, **meta),
            torch.empty(model.config.image_proj["clip_embeddings_dim"], **meta),
            masks.face_region,
            masks,
            tokens,
            guidance=True,
        )
        del tokens, windows, probs
        peaks["conditions"] = mode.phase()

        reference = pipe.encode_pixels(conditions.reference)
        peaks["vae_encode"] = mode.phase()
        reference = torch.cat([reference, reference])  # guidance, as denoise_clip
        pipe.bank.clear()
        pipe.reference_unet(
            reference,
            torch.zeros((), device="meta"),
            encoder_hidden_states=conditions.face_tokens,
            return_dict=False,
        )
        del reference
        peaks["reference_unet"] = mode.phase()
        bank = sum(t.untyped_storage().nbytes() for t in pipe.bank.states.values())

        latents = torch.empty(1, 4, frames, latent, latent, **meta)
        model_input = torch.cat([latents, latents])
        prediction = pipe.denoising_unet(
            model_input,
            500,
            encoder_hidden_states=conditions.face_tokens,
            audio=conditions.audio,
            reference=pipe.bank,
            guidance=True,
            face_features=conditions.face_features,
        ).sample
        uncond, cond = prediction.chunk(2)
        latents = uncond + 3.5 * (cond - uncond)
        del model_input, prediction, uncond, cond
        peaks["denoising_step"] = mode.phase()
        pipe.bank.clear()

        video = pipe.decode_latents(latents)  # 16 one-frame decodes and their concatenation
        del video
        peaks["vae_decode"] = mode.phase()
    weights = module_bytes(pipe)
    activations = max(peaks.values())
    return {
        "what": (
            "estimated: fp16 weights counted; live activation bytes simulated on the meta device "
            "(no_grad, fused attention, guidance batch 2, one denoising step); not measured on a GPU; "
            "excludes the CUDA context, allocator caching / fragmentation, cuBLAS / cuDNN workspaces, "
            "the wav2vec2 pass and the face-analysis models"
        ),
        "size": size,
        "frames": frames,
        "motion_frames": motion_frames,
        "weights_fp16_gb": weights / GB,
        "peak_gb_by_phase": {name: value / GB for name, value in peaks.items()},
        "reference_bank_gb": bank / GB,
        "activations_peak_gb": activations / GB,
        "total_estimate_gb": (weights + activations) / GB,
    }


# -- 3. tiny CPU smoke timings -------------------------------------------------------------------------


def tiny_timings(frames: int = 32, steps: int = 2, train_steps: int = 10) -> dict[str, Any]:
    import skimage.data

    from models.render.diffusion.tiny import write_tiny_weights
    from models.render.diffusion.training import TrainConfig, TrainingClip, train
    from models.render.diffusion.weights import load_pipeline
    from models.vision.face import prepare_portrait

    torch.set_num_threads(1)  # tiny tensors run slower on contended threads
    size, fps = 64, 25
    portrait = prepare_portrait(skimage.data.astronaut(), size)
    rng = np.random.default_rng(0)
    labels = 7
    probs = np.zeros((frames, labels), np.float32)
    probs[:, 1] = 1.0
    intensity = np.full(frames, 0.8, np.float32)
    with tempfile.TemporaryDirectory() as directory:
        pipe = load_pipeline(write_tiny_weights(directory))
    parameters = sum(count(m) for m in pipe.components.values() if isinstance(m, nn.Module))
    audio = rng.normal(0, 0.1, frames * 16_000 // fps).astype(np.float32)  # 2 clips of 16 frames
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        out = pipe(
            portrait.image,
            portrait.landmarks,
            audio,
            16_000,
            np.zeros(512, np.float32),
            emotion_probs=probs,
            emotion_intensity=intensity,
            num_inference_steps=steps,
            guidance_scale=3.5,
        )
        runs.append(time.perf_counter() - start)
    assert isinstance(out.frames, np.ndarray) and len(out.frames) == frames

    n = 16
    clip = TrainingClip(
        portrait=portrait.image,
        landmarks=portrait.landmarks,
        frames=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        audio=rng.normal(0, 0.1, n * 16_000 // fps).astype(np.float32),
        sampling_rate=16_000,
        emotion_probs=probs[:n],
        emotion_intensity=intensity[:n],
    )
    stamps: list[float] = []
    train(
        pipe,
        [clip],
        TrainConfig(steps=train_steps, learning_rate=1e-3),
        lambda *_: stamps.append(time.perf_counter()),
    )
    return {
        "what": "measured on tiny random weights on this CPU (1 thread): a smoke figure, not a speed claim",
        "parameters": parameters,
        "size": size,
        "frames": frames,
        "clip_frames": 16,
        "steps": steps,
        "guidance": 3.5,
        "seconds_per_frame_median": float(np.median(runs)) / frames,
        "train_frames": n,
        # between the first and last step's end: the clip's one-off encoding is left out
        "train_seconds_per_step": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
    }


# -- report --------------------------------------------------------------------------------------------


def print_tables(results: dict[str, Any]) -> None:
    params, memory = results["parameters"], results["memory"]
    m = 1e6
    print(f"net.pth tensors: {params['net_pth_tensors']} (expected {params['net_pth_tensors_expected']})\n")
    print("| component | parameters | in training |\n|---|---|---|")
    for name, n in params["net"].items():
        print(f"| {name} | {n / m:.1f} M | frozen |")
        if name == "denoising_unet":
            for part, k in params["denoising_unet_parts"].items():
                indent = "&nbsp;" * (4 if part.startswith("of which") else 2)
                print(f"| {indent}{part} | {k / m:.1f} M | frozen |")
    print(f"| **net.pth (Hallo's Net)** | **{params['net_total'] / m:.1f} M** | frozen |")
    for name, n in params["other"].items():
        print(f"| {name} | {n / m:.1f} M | {'trained' if 'adapter' in name else 'frozen'} |")
    print(f"| **total** | **{params['total'] / m:.1f} M** | **{params['trainable'] / m:.1f} M trained** |\n")

    labels = {
        "conditions": "conditions (identity, face locator, audio tokens, masks)",
        "vae_encode": "VAE encode of portrait + motion frames",
        "reference_unet": "ReferenceNet pass (2 x 3 images), bank written",
        "denoising_step": "one denoising step (2 x 16 frames), bank live",
        "vae_decode": "VAE decode, 16 frames one at a time",
    }
    print("| part | GB |\n|---|---|")
    print(f"| weights, fp16 (counted x 2 bytes) | {memory['weights_fp16_gb']:.2f} |")
    for name, value in memory["peak_gb_by_phase"].items():
        print(f"| peak live activations: {labels[name]} | {value:.2f} |")
    bank = memory["reference_bank_gb"]
    print(f"| reference bank, live through the clip's steps (inside the peaks above) | {bank:.2f} |")
    print(f"| **total estimate** (weights + largest peak) | **{memory['total_estimate_gb']:.1f}** |")
    reported = HALLO_REPORTED.get(str(memory["size"]))
    if reported:
        print(f"| Hallo, reported ({HALLO_REPORTED['gpu']}, paper Table 7) | {reported['memory_gb']} |")
    if "tiny_cpu" in results:
        tiny = results["tiny_cpu"]
        print("\n| figure | value |\n|---|---|")
        print(f"| seconds per frame (median of 3) | {tiny['seconds_per_frame_median']:.3f} |")
        print(f"| adapter training, seconds per step ({tiny['train_frames']}-frame clip) | "
              f"{tiny['train_seconds_per_step']:.3f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # the fp16 cast on meta warns per component, harmlessly
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    model = real_model("meta")
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "parameters": parameter_counts(model),
        "memory": memory_estimate(model, args.frames, args.size),
        "hallo_reported": HALLO_REPORTED,
    }
    if not args.skip_timing:
        results["tiny_cpu"] = tiny_timings()
    results["seconds"] = time.perf_counter() - started
    out = ROOT / "bench" / "results" / "diffusion.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)
    print(f"\nwrote {out.relative_to(ROOT)} in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
