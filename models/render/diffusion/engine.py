"""The diffusion render engine: Hallo's released model behind the renderer interface.

    DiffusionRenderer(weights).render(portrait, speech, curve) -> iterator of RGB uint8 frames

`weights` is a folder in Hallo's `pretrained_models/` layout (models/render/diffusion/weights.py).
The emotion curve reaches the video two ways:
- without training: each 16-frame clip's ReferenceNet sees the portrait with the clip's mean expression,
  applied by the preview rig at `reference_expression` (1.0) of its strength;
- with a trained emotion adapter in the folder: through the gated fusion on the audio tokens as well.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from kernel.errors import EngineError, InputError
from models.identity import EngineIdentity, describe
from models.render.diffusion.identity import EMBEDDING_DIM, FaceEmbedder, PrecomputedEmbedding, load_embedder
from models.render.diffusion.pipeline import CLIP_FRAMES, MOTION_FRAMES, HalloPipeline
from models.render.diffusion.weights import (
    ADAPTER_DIR,
    FACE_ANALYSIS_DIR,
    OVERRIDES,
    RELEASES,
    UNET_CONFIG,
    VAE_DIR,
    WAV2VEC_DIR,
    load_pipeline,
    overrides,
    release,
)
from models.render.inputs import check_render_inputs, frame_count
from models.render.preview import PreviewRenderer
from models.types import EmotionCurve, ProgressFn, Speech
from models.vision.face import Portrait

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_READ = (
    *(item.net for item in RELEASES.values()),
    UNET_CONFIG,
    VAE_DIR,
    WAV2VEC_DIR,
    FACE_ANALYSIS_DIR,
    ADAPTER_DIR,
    OVERRIDES,
)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise EngineError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def check_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise EngineError(f"device {device!r} is not a torch device ({exc})") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} was asked for, but torch sees no CUDA GPU; use device='cpu'")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise EngineError(f"device {device!r} was asked for, but MPS is not available; use device='cpu'")
    return resolved


_HASHES: dict[tuple[Any, ...], str] = {}
_HASH_LOCK = threading.Lock()


def hash_weights_dir(directory: str | Path) -> str:
    """sha256 over the path and content of every file the renderer reads (see weights.py).

    For cache keys: a changed, added or removed file among them changes the hash; files the renderer
    never reads (SD-1.5's UNet weights, the motion module, the audio separator) do not. Memoised per
    (path, sizes, mtimes), so a multi-GB folder is read once per process.
    """
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise EngineError(f"weights directory {root} does not exist")
    files = sorted(
        path
        for part in _READ
        for path in ([root / part] if (root / part).is_file() else sorted((root / part).rglob("*")))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
    )
    stamp = (str(root), *((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    with _HASH_LOCK:
        if stamp in _HASHES:
            return _HASHES[stamp]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    result = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[stamp] = result
    return result


class DiffusionRenderer:
    """Renders a talking portrait with Hallo's model, 16 frames a clip, emotion via the reference image."""

    name = "diffusion"
    # 1.0.0: Hallo's released architecture, loaded strictly from its net.pth; emotion adapter zero at load
    version = "1.0.0"

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
        # the whole expression: since preview 2.0 the rig plays real actors' motion, within human range
        # (1.3.0's hand-tuned rows caricatured at a half, hence the quarter used before)
        reference_expression: float = 1.0,
    ) -> None:
        if not 64 <= int(size) <= 2048 or int(size) % 64:
            raise InputError(f"size must be a multiple of 64 between 64 and 2048 px, got {size}")
        if not 1 <= fps <= 120:
            raise InputError(f"fps must be between 1 and 120, got {fps}")
        if steps < 1:
            raise InputError(f"steps must be at least 1, got {steps}")
        if guidance < 1.0:
            raise InputError(f"guidance must be >= 1 (1 turns classifier-free guidance off), got {guidance}")
        if not 0.0 <= reference_expression <= 1.0:
            raise InputError(f"reference_expression must be between 0 and 1, got {reference_expression}")
        target = check_device(device)
        # Hallo's inference dtype on a GPU; float32 elsewhere, where float16 kernels are missing
        torch_dtype = (
            resolve_dtype(dtype)
            if dtype is not None
            else (torch.float16 if target.type == "cuda" else torch.float32)
        )
        if torch_dtype == torch.float16 and target.type == "cpu":
            raise EngineError("dtype float16 needs a GPU; on device='cpu' use 'bfloat16' or 'float32'")
        self.weights = Path(weights).expanduser()
        self.size = int(size)
        self.fps = fps
        self.seed = int(seed)
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.reference_expression = float(reference_expression)
        self.release = release(self.weights)
        self.pipeline: HalloPipeline = load_pipeline(self.weights, target, torch_dtype)
        self.embedder = _embedder(self.weights)
        self.labels: list[str] = list(self.pipeline.emotion_adapter.config["labels"])
        self.rig = PreviewRenderer(size=self.size, fps=fps, seed=seed, head_motion=0.0)
        self._sha256: str | None = None

    @property
    def weights_sha256(self) -> str:
        """Hash of the files the renderer reads (for cache keys), computed on first use."""
        if self._sha256 is None:
            self._sha256 = hash_weights_dir(self.weights)
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

        # 2. The portrait at the model's size; the curve per frame in the adapter's label order.
        face = self._resized(portrait)
        probs, intensity = self._emotion(curve, n_frames)
        embedding = self.embedder.embed(face.image)

        # 3. Training-free emotion: every clip's reference carries the clip's mean expression.
        clips = -(-n_frames // CLIP_FRAMES)
        references = [self._clip_reference(face, probs, intensity, clip) for clip in range(clips)]

        # 4. Generate; each clip is decoded as soon as it is denoised.
        output = self.pipeline(
            portrait=face.image,
            landmarks=face.landmarks,
            audio=np.asarray(speech.samples, np.float32),
            sample_rate=speech.sample_rate,
            face_embedding=embedding,
            fps=self.fps,
            emotion_probs=probs,
            emotion_intensity=intensity,
            clip_references=references,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            clip_frames=CLIP_FRAMES,
            motion_frames=MOTION_FRAMES,
            motion_mask_rate=self.release.motion_mask_rate,
            audio_segment_seconds=self.release.audio_segment_seconds,
            generator=torch.Generator(device="cpu").manual_seed(self.seed),
            stream=True,
        )
        assert not isinstance(output.frames, np.ndarray)
        return _exactly(output.frames, n_frames)

    def _resized(self, portrait: Portrait) -> Portrait:
        image = np.ascontiguousarray(portrait.image)
        if image.shape[0] == self.size:
            return portrait
        scale = self.size / image.shape[0]
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resized = cv2.resize(image, (self.size, self.size), interpolation=interpolation)
        depth = None if portrait.depth is None else np.asarray(portrait.depth) * scale
        return Portrait(image=resized, landmarks=np.asarray(portrait.landmarks) * scale, depth=depth)

    def _emotion(self, curve: EmotionCurve, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame distribution over the adapter's labels; labels it lacks are dropped."""
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

    def _clip_reference(
        self, face: Portrait, probs: np.ndarray, intensity: np.ndarray, clip: int
    ) -> np.ndarray:
        """The portrait with the clip's mean expression; the untouched portrait when the clip is neutral."""
        window = slice(clip * CLIP_FRAMES, (clip + 1) * CLIP_FRAMES)
        weights = (probs[window] * intensity[window, None]).mean(axis=0) * self.reference_expression
        if "neutral" in self.labels:
            weights[self.labels.index("neutral")] = 0.0
        if float(weights.max(initial=0.0)) < 1e-3:
            return np.asarray(face.image)
        return self.rig.expression_still(face, self.labels, weights)


def _embedder(root: Path) -> FaceEmbedder:
    """InsightFace over the folder's face_analysis/, or, where emoflow.json says identity "none",
    Hallo's own no-face vector (zeros): the identity tokens then carry nothing."""
    if overrides(root).get("identity") == "none":
        return PrecomputedEmbedding(np.zeros(EMBEDDING_DIM, np.float32))
    return load_embedder(root / FACE_ANALYSIS_DIR)


def _exactly(clips: Iterator[np.ndarray], n_frames: int) -> Iterator[np.ndarray]:
    """The first n_frames frames; the last one repeated if the audio's rounding gave one fewer."""
    done = 0
    last: np.ndarray | None = None
    for clip in clips:
        for frame in clip:
            if done == n_frames:
                return
            last = frame
            done += 1
            yield frame
    while last is not None and done < n_frames:
        done += 1
        yield last
