"""The diffusion render engine: the same `frame_count` / `render` interface as the preview renderer.

    DiffusionRenderer(weights).render(portrait, speech, curve) -> iterator of RGB uint8 frames

Weights are a saved `EmoTalkPipeline` directory (or a hub id, fetched by the ordinary from_pretrained
code when the hub is reachable). `build_tiny_pipeline` writes a random-weight pipeline small enough for
CPU tests; nothing here downloads anything by itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers.models import AutoencoderKL, UNet2DConditionModel  # not `diffusers`: mypy sees dummies there
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import Wav2Vec2Config, Wav2Vec2Model

from kernel.errors import EngineError, InputError
from models.identity import EngineIdentity, describe
from models.render.diffusion.modules import (
    DEFAULT_LABELS,
    AudioProjection,
    EmoTalkUNet,
    EmotionProjection,
    FaceLocator,
    GatedFusion,
)
from models.render.diffusion.pipeline import COMPONENTS, EmoTalkPipeline, hallo_scheduler_config
from models.render.inputs import check_render_inputs, frame_count
from models.types import EmotionCurve, ProgressFn, Speech
from models.vision.face import Portrait

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_HOW_TO_GET = (
    "Download an EmoTalkPipeline checkpoint (a folder with model_index.json and the subfolders "
    + ", ".join(f"{name}/" for name in COMPONENTS)
    + ") on a machine with network access, e.g. `huggingface-cli download <repo> --local-dir <dir>`, "
    "and pass that folder as the weights (CLI: --weights <dir>)."
)


# -- weights -------------------------------------------------------------------------------------------


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise EngineError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _check_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise EngineError(f"device {device!r} is not a torch device ({exc})") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was asked for, but torch sees no CUDA GPU; use device='cpu'")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise EngineError(f"device {device!r} was asked for, but MPS is not available; use device='cpu'")
    return resolved


def load_pipeline(
    weights: str | Path, device: str = "cpu", dtype: str | torch.dtype | None = None
) -> EmoTalkPipeline:
    """Load a saved EmoTalkPipeline from a local directory or a hub id; EngineError says what is missing."""
    torch_dtype = resolve_dtype(dtype)
    target = _check_device(device)
    if torch_dtype == torch.float16 and target.type == "cpu":
        # diffusers warns on every move and many CPU kernels lack float16; say so once, up front
        raise EngineError("dtype float16 needs a GPU; on device='cpu' use 'bfloat16' or 'float32'")
    path = Path(weights).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise EngineError(
                f"diffusion weights: {path} has no model_index.json, so it is not a saved pipeline. "
                f"{_HOW_TO_GET}"
            )
        missing = [name for name in COMPONENTS if not (path / name).is_dir()]
        if missing:
            raise EngineError(
                f"diffusion weights: {path} lacks the component folders {missing}. {_HOW_TO_GET}"
            )
        source: str = str(path)
    elif _HUB_ID.match(str(weights)) and not str(weights).startswith((".", "~")):
        source = str(weights)
    else:
        raise EngineError(f"diffusion weights: no directory at {path}. {_HOW_TO_GET}")
    try:
        pipeline = EmoTalkPipeline.from_pretrained(source, torch_dtype=torch_dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        where = (
            "the local folder" if path.exists() else f"hub repo {source!r} (no local folder {path} either)"
        )
        note = (
            " HF_HUB_OFFLINE is set, so nothing was fetched from the hub."
            if offline and not path.exists()
            else ""
        )
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(
            f"diffusion weights: could not load {where}: {reason}.{note} {_HOW_TO_GET}"
        ) from exc
    return pipeline.to(target)


_HASHES: dict[tuple[Any, ...], str] = {}
_HASH_LOCK = threading.Lock()


def hash_weights_dir(directory: str | Path) -> str:
    """sha256 over every file's relative path and content (hidden folders such as .cache skipped).

    For cache keys: a changed, added or removed file changes the hash. Results are memoised per
    (path, sizes, mtimes) so a multi-GB checkpoint is read once per process.
    """
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise EngineError(f"weights directory {root} does not exist")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    stamp = (str(root), *((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    with _HASH_LOCK:
        if stamp in _HASHES:
            return _HASHES[stamp]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    result = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[stamp] = result
    return result


# -- tiny random pipeline ------------------------------------------------------------------------------


def build_tiny_pipeline(
    directory: str | Path | None = None,
    size: int = 64,
    seed: int = 0,
    labels: tuple[str, ...] | list[str] = DEFAULT_LABELS,
) -> EmoTalkPipeline:
    """A random-weight EmoTalkPipeline with every component shrunk (runs in milliseconds per step on CPU).

    Every path is live: the parts that start at zero for fine-tuning (face locator output, region
    weights) get random values. With `directory`, the pipeline is also saved there (safetensors).
    `size` is the image side it is meant for (a multiple of 16).
    """
    if size % 16:
        raise InputError(f"size must be a multiple of 16 for the tiny pipeline, got {size}")
    torch.manual_seed(seed)
    dim, tokens = 32, 4
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=size,
    )
    unet_kwargs: dict[str, Any] = {
        "sample_size": size // 8,
        "block_out_channels": (16, 32),
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "layers_per_block": 1,
        "cross_attention_dim": dim,
        "attention_head_dim": 4,
        "norm_num_groups": 8,
    }
    reference_net = UNet2DConditionModel(**unet_kwargs)
    denoising_unet = EmoTalkUNet(**unet_kwargs, motion_heads=2)
    audio_config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    audio_encoder = Wav2Vec2Model(audio_config).eval()
    audio_projection = AudioProjection(window=5, layers=2, channels=16, hidden_dim=32, tokens=tokens, dim=dim)
    emotion_projection = EmotionProjection(labels=tuple(labels), hidden_dim=32, tokens=tokens, dim=dim)
    fusion = GatedFusion(dim=dim)
    face_locator = FaceLocator(block_out_channels=(4, 8, 8, 16), out_channels=16)
    face_locator.conv_out.reset_parameters()
    for processor in denoising_unet.hierarchical_processors().values():
        torch.nn.init.normal_(processor.region_logits, std=0.5)
    scheduler = DDIMScheduler(**hallo_scheduler_config())
    pipeline = EmoTalkPipeline(
        vae=vae,
        reference_net=reference_net,
        denoising_unet=denoising_unet,
        audio_encoder=audio_encoder,
        audio_projection=audio_projection,
        emotion_projection=emotion_projection,
        fusion=fusion,
        face_locator=face_locator,
        scheduler=scheduler,
    )
    if directory is not None:
        pipeline.save_pretrained(str(directory), safe_serialization=True)
    return pipeline


# -- the engine ----------------------------------------------------------------------------------------


class DiffusionRenderer:
    """Renders a talking portrait with EmoTalkPipeline, clip by clip (Hallo settings by default)."""

    name = "diffusion"
    version = "0.1.0"

    def __init__(
        self,
        weights: str | Path,
        size: int = 512,
        fps: int = 25,
        seed: int = 0,
        steps: int = 40,
        guidance: float = 3.5,
        device: str = "cpu",
        dtype: str | torch.dtype | None = None,
        clip_frames: int = 16,
        motion_frames: int = 2,
    ) -> None:
        if not 64 <= int(size) <= 2048 or int(size) % 64:
            raise InputError(f"size must be a multiple of 64 between 64 and 2048 px, got {size}")
        if not 1 <= fps <= 120:
            raise InputError(f"fps must be between 1 and 120, got {fps}")
        if steps < 1:
            raise InputError(f"steps must be at least 1, got {steps}")
        if guidance < 1.0:
            raise InputError(f"guidance must be >= 1 (1 turns classifier-free guidance off), got {guidance}")
        if clip_frames < 1 or not motion_frames >= 0:
            raise InputError(
                f"clip_frames must be >= 1 and motion_frames >= 0, got {clip_frames}, {motion_frames}"
            )
        self.weights = weights
        self.size = int(size)
        self.fps = fps
        self.seed = int(seed)
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.clip_frames = int(clip_frames)
        self.motion_frames = int(motion_frames)
        self.pipeline = load_pipeline(weights, device=device, dtype=dtype)
        self.labels: list[str] = list(self.pipeline.emotion_projection.config["labels"])
        self._sha256: str | None = None

    @property
    def weights_sha256(self) -> str:
        """Hash of the weights folder (for cache keys), computed on first use."""
        if self._sha256 is None:
            path = Path(self.weights).expanduser()
            if not path.exists():  # a hub id: hash the snapshot the loader used
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(str(self.weights), local_files_only=True))
            self._sha256 = hash_weights_dir(path)
        return self._sha256

    def identity(self) -> EngineIdentity:
        """Its code and libraries; the weights enter the cache key by content as `weights_sha256`."""
        return describe(self, packages=("torch", "diffusers", "transformers"))

    def frame_count(self, duration_s: float) -> int:
        return frame_count(duration_s, self.fps)

    def render(
        self,
        portrait: Portrait,
        speech: Speech,
        curve: EmotionCurve,
        progress: ProgressFn | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield `frame_count(speech.duration)` RGB uint8 frames, size x size, streamed clip by clip."""
        # 1. Check inputs (here, not lazily in the generator, so bad input fails at the call).
        check_render_inputs(portrait, speech)
        n_frames = self.frame_count(speech.duration)
        if n_frames == 0:
            return iter(())

        # 2. The portrait at the model's size, the curve at video frames in the model's label order.
        image, landmarks = self._resize(portrait)
        probs, intensity = self._emotion(curve, n_frames)

        # 3. Generate; the pipeline decodes each clip as soon as it is denoised.
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        output = self.pipeline(
            reference_image=image,
            landmarks=landmarks,
            audio=np.asarray(speech.samples, np.float32),
            sampling_rate=speech.sample_rate,
            emotion_probs=probs,
            emotion_intensity=intensity,
            num_frames=n_frames,
            fps=self.fps,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            clip_frames=self.clip_frames,
            motion_frames=self.motion_frames,
            generator=generator,
            callback=progress,
            stream=True,
        )
        clips = output.frames
        assert not isinstance(clips, np.ndarray)
        return (frame for clip in clips for frame in clip)

    def _resize(self, portrait: Portrait) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(portrait.image)
        scale = self.size / image.shape[0]
        if image.shape[0] != self.size:
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            image = cv2.resize(image, (self.size, self.size), interpolation=interpolation)
        return image, np.asarray(portrait.landmarks, np.float32) * scale

    def _emotion(self, curve: EmotionCurve, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame distribution over the model's labels; labels the model lacks are dropped."""
        frames = curve.per_frame(self.fps, n_frames)
        probs = np.zeros((n_frames, len(self.labels)), np.float32)
        for j, label in enumerate(frames.labels):
            if label in self.labels:
                probs[:, self.labels.index(label)] = frames.probs[:, j]
        total = probs.sum(axis=1, keepdims=True)
        fallback = np.zeros(len(self.labels), np.float32)
        fallback[self.labels.index("neutral") if "neutral" in self.labels else 0] = 1.0
        probs = np.where(total > 1e-6, probs / np.clip(total, 1e-6, None), fallback)
        return probs.astype(np.float32), np.clip(frames.intensity, 0, 1).astype(np.float32)
