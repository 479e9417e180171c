"""Hallo's full-size pipeline with random weights on a GPU: seconds per frame and peak memory (measured).

Speed does not depend on the weights' values, so the real architecture with random weights times
what the released weights would: one 16-frame clip at 512x512, 40 DDIM steps, guidance 3.5, fp16,
after a 2-step warm-up, through `HalloPipeline.denoise_clip` (ReferenceNet pass, denoising loop, VAE
decode). Its conditions come from `clip_conditions` on random inputs of the right shapes: portrait and
motion-frame pixels, identity embedding, speech (through wav2vec2 and the audio projection) and masks
(`hallo_masks` on random landmarks). Hallo's paper reports 1.63 s per frame and 9.77 GB at 512x512 on
an A100 (Table 7, as quoted in fudan-generative-vision/hallo#28).

    python3 bench/diffusion_gpu.py                  # on a GPU machine (expected: about a minute on an H200)
    .venv/bin/python bench/diffusion_gpu.py --tiny  # the same code path on tiny weights, CPU, 64 px, 2 steps

Writes $OUT/diffusion_gpu.json when $OUT is set, else bench/results/diffusion_gpu.json (--tiny: only
$OUT/diffusion_gpu_tiny.json, and only when $OUT is set). Nothing is fetched: the weights are random,
the configurations are the ones written in bench/diffusion.py.

It needs the project's Python dependencies. A bare PyTorch image with transformers, accelerate, opencv
and scipy still lacks diffusers and pydantic / pydantic-settings (kernel.settings, imported through
models.render.diffusion); as wheels for Python 3.12, for example:
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .whl diffusers==0.42.1 importlib_metadata==10.2.0 \
        pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
        annotated-types==0.8.0 typing-inspection==0.4.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from bench.diffusion import HALLO_REPORTED, assemble, count, real_model  # noqa: E402
from models.render.diffusion.audio import AUDIO_SAMPLE_RATE, hallo_audio_features  # noqa: E402
from models.render.diffusion.masks import hallo_masks  # noqa: E402
from models.render.diffusion.pipeline import MOTION_FRAMES, HalloPipeline  # noqa: E402
from models.render.diffusion.tiny import write_tiny_weights  # noqa: E402
from models.render.diffusion.weights import load_pipeline  # noqa: E402

FPS = 25
FRAMES = 16  # Hallo's clip
GUIDANCE = 3.5


def full_pipeline(device: torch.device, dtype: torch.dtype) -> HalloPipeline:
    """The real architecture, random weights, built on the device itself (no 10 GB fp32 copy on the host)."""
    torch.manual_seed(0)
    pipe = assemble(real_model(device))  # fp32 on the GPU (~10 GB, briefly), then halved in place
    pipe.to(dtype=dtype)
    return pipe


def tiny_pipeline(device: torch.device, dtype: torch.dtype, directory: str) -> HalloPipeline:
    """The tests' tiny random weights folder, loaded by the code that loads the real release."""
    return load_pipeline(write_tiny_weights(directory), device, dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(pipe: HalloPipeline, size: int, steps: int, device: torch.device) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    # conditions from random inputs; their values do not change the work done
    start = time.perf_counter()
    torch.set_grad_enabled(False)  # inference only: no autograd graph through the condition encoders
    audio = rng.normal(0, 0.1, FRAMES * AUDIO_SAMPLE_RATE // FPS).astype(np.float32)
    windows, _ = hallo_audio_features(pipe.audio_encoder, audio, AUDIO_SAMPLE_RATE, FPS, FRAMES)
    labels = len(pipe.emotion_adapter.config["labels"])
    probs = torch.softmax(torch.randn(FRAMES, labels), dim=1)
    tokens = pipe.audio_tokens(windows[None], probs, torch.rand(FRAMES))
    landmarks = (size * rng.uniform(0.3, 0.7, (468, 2))).astype(np.float32)
    masks = hallo_masks(landmarks, size)
    reference = torch.rand(1 + MOTION_FRAMES, 3, size, size) * 2 - 1
    embedding = torch.randn(pipe.image_proj.config["clip_embeddings_dim"])
    conditions = pipe.clip_conditions(
        reference, embedding, masks.face_region, masks, tokens, guidance=GUIDANCE > 1
    )
    synchronize(device)
    conditions_s = time.perf_counter() - start

    generator = torch.Generator(device).manual_seed(0)
    pipe.denoise_clip(conditions, FRAMES, 2, GUIDANCE, generator=generator)  # warm-up: kernels, cuDNN
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    allocated = torch.cuda.memory_allocated(device) if device.type == "cuda" else None

    stamps: list[float] = []

    def step_done(_: int) -> None:
        synchronize(device)  # so each stamp is the step's end, not its launch
        stamps.append(time.perf_counter())

    synchronize(device)
    start = time.perf_counter()
    video = pipe.denoise_clip(conditions, FRAMES, steps, GUIDANCE, generator=generator, callback=step_done)
    synchronize(device)
    total = time.perf_counter() - start
    result: dict[str, Any] = {
        "size": size,
        "frames": FRAMES,
        "motion_frames": MOTION_FRAMES,
        "steps": steps,
        "guidance": GUIDANCE,
        "dtype": str(pipe.denoising_unet.dtype),
        "conditions_seconds": conditions_s,
        "clip_seconds": total,
        "seconds_per_frame": total / FRAMES,
        # the loop alone: from the first step's end to the last's, over steps - 1 steps
        "seconds_per_step": (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None,
        # the rest: VAE encode + ReferenceNet, the first step, VAE decode
        "reference_first_step_decode_seconds": total - (stamps[-1] - stamps[0]) if stamps else None,
        "output_shape": list(video.shape),
        "output_finite_fraction": float(torch.isfinite(video).float().mean()),  # random weights: any value
    }
    if device.type == "cuda":
        result |= {
            "allocated_before_clip_gb": (allocated or 0) / 1e9,  # weights + conditions
            "max_memory_allocated_gb": torch.cuda.max_memory_allocated(device) / 1e9,
            "max_memory_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "max_memory_reserved_gb": torch.cuda.max_memory_reserved(device) / 1e9,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random weights, 64 px, 2 steps (CPU smoke)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 40; --tiny: 2)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # the dtype move warns per component
    transformers_logging.disable_progress_bar()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not args.tiny and device.type != "cuda":
        sys.exit("the full-size run needs a CUDA GPU; use --tiny for the CPU smoke run")
    dtype = torch.float32 if args.tiny and device.type == "cpu" else torch.float16
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors run slower on contended threads
    size = 64 if args.tiny else 512
    steps = args.steps or (2 if args.tiny else 40)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        pipe = tiny_pipeline(device, dtype, directory) if args.tiny else full_pipeline(device, dtype)
    build_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "what": (
            "measured: HalloPipeline.denoise_clip, one clip, "
            + (
                "TINY random weights (a smoke run of the code path)"
                if args.tiny
                else "full size, random weights"
            )
        ),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "parameters": sum(count(m) for m in pipe.components.values() if isinstance(m, torch.nn.Module)),
        "build_seconds": build_s,
        **measure(pipe, size, steps, device),
        "hallo_reported": HALLO_REPORTED,
        "wall_seconds": time.perf_counter() - started,
    }
    print(json.dumps({k: v for k, v in results.items() if k != "hallo_reported"}, indent=1))
    # the tiny smoke run leaves no results file behind unless $OUT asks for one
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out_dir is None and not args.tiny:
        out_dir = ROOT / "bench" / "results"
    if out_dir is not None:
        out = out_dir / ("diffusion_gpu_tiny.json" if args.tiny else "diffusion_gpu.json")
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
