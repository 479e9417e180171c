"""Training of TIE-TFG's emotion adapter on top of Hallo's released, frozen model.

What trains: `emotion_adapter` only (the projection of the emotion curve to f_emo, and the gate).
Everything of Hallo's (both UNets, VAE, wav2vec2, face locator, projections) stays as released.

Objective: v-prediction MSE on noised VAE latents of a clip's frames, conditioned as at inference:
the ReferenceNet bank of the portrait (+ motion frames), the identity tokens, the face-locator features,
the region masks and c = f_a + sigmoid(W f_a + b) * f_emo per frame. With probability `condition_drop`
c is zeroed, which is what the unconditional half of guidance sees.

Data: `TrainingClip`, saved as one .npz per clip (`save_clip` / `load_clip`). No Prefect, no SQL here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler  # not `diffusers`: mypy sees a dummy there
from safetensors.torch import load_file, save_file

from models.render.diffusion.audio import hallo_audio_features
from models.render.diffusion.masks import hallo_masks
from models.render.diffusion.pipeline import ClipConditions, HalloPipeline, _to_pixels
from models.render.diffusion.reference import ReferenceBank

TRAINED_COMPONENT = "emotion_adapter"  # the prefix of every key in a trained-weights file


# -- data ----------------------------------------------------------------------------------------------


@dataclass
class TrainingClip:
    """One talking clip: the portrait it is conditioned on and the frames it should produce.

    portrait uint8 [S, S, 3] with MediaPipe landmarks (468, 2) in its pixels; frames uint8 [F, S, S, 3];
    audio mono float samples covering the frames; emotion_probs [F, labels] (the model's label order) and
    emotion_intensity [F] in 0..1. `motion` (uint8 [M, S, S, 3], the frames before the clip) is optional;
    without it the portrait stands in, as for the first clip at inference.
    """

    portrait: np.ndarray
    landmarks: np.ndarray
    frames: np.ndarray
    audio: np.ndarray
    sampling_rate: int
    emotion_probs: np.ndarray
    emotion_intensity: np.ndarray
    fps: float = 25.0
    motion: np.ndarray | None = None
    face_embedding: np.ndarray | None = None  # InsightFace's 512 floats; None: Hallo's no-face zeros

    def check(self, labels: int) -> None:
        n = len(self.frames)
        size = self.portrait.shape[0]
        if self.portrait.shape != (size, size, 3) or self.portrait.dtype != np.uint8:
            raise ValueError(f"portrait must be square uint8 (S, S, 3), got {self.portrait.shape}")
        if self.frames.shape[1:] != self.portrait.shape or self.frames.dtype != np.uint8 or n < 1:
            raise ValueError(f"frames must be uint8 (F, {size}, {size}, 3), got {self.frames.shape}")
        if np.shape(self.landmarks) != (468, 2):
            raise ValueError(f"landmarks must have shape (468, 2), got {np.shape(self.landmarks)}")
        if np.shape(self.emotion_probs) != (n, labels) or np.shape(self.emotion_intensity) != (n,):
            raise ValueError(
                f"emotion_probs must be ({n}, {labels}) and emotion_intensity ({n},), got "
                f"{np.shape(self.emotion_probs)} and {np.shape(self.emotion_intensity)}"
            )
        if self.fps != round(self.fps) or not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be a whole number of frames per second (Hallo: 25), got {self.fps}")
        if self.motion is not None and self.motion.shape[1:] != self.portrait.shape:
            raise ValueError(f"motion frames must be (M, {size}, {size}, 3), got {self.motion.shape}")


def save_clip(clip: TrainingClip, path: str | Path) -> Path:
    """Write a clip as one compressed .npz (the format the training flow reads)."""
    arrays: dict[str, Any] = {
        "portrait": clip.portrait,
        "landmarks": np.asarray(clip.landmarks, np.float32),
        "frames": clip.frames,
        "audio": np.asarray(clip.audio, np.float32),
        "sampling_rate": np.int64(clip.sampling_rate),
        "emotion_probs": np.asarray(clip.emotion_probs, np.float32),
        "emotion_intensity": np.asarray(clip.emotion_intensity, np.float32),
        "fps": np.float64(clip.fps),
    }
    if clip.motion is not None:
        arrays["motion"] = clip.motion
    if clip.face_embedding is not None:
        arrays["face_embedding"] = np.asarray(clip.face_embedding, np.float32)
    path = Path(path)
    np.savez_compressed(path, **arrays)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_clip(path: str | Path) -> TrainingClip:
    with np.load(Path(path), allow_pickle=False) as data:
        return TrainingClip(
            portrait=data["portrait"],
            landmarks=data["landmarks"],
            frames=data["frames"],
            audio=data["audio"],
            sampling_rate=int(data["sampling_rate"]),
            emotion_probs=data["emotion_probs"],
            emotion_intensity=data["emotion_intensity"],
            fps=float(data["fps"]),
            motion=data["motion"] if "motion" in data.files else None,
            face_embedding=data["face_embedding"] if "face_embedding" in data.files else None,
        )


# -- what trains ---------------------------------------------------------------------------------------


def trainable_parameters(pipeline: HalloPipeline) -> dict[str, torch.nn.Parameter]:
    """Every parameter this stage trains, by its saved name `emotion_adapter.<parameter>`."""
    return {f"{TRAINED_COMPONENT}.{name}": p for name, p in pipeline.emotion_adapter.named_parameters()}


def freeze_for_training(pipeline: HalloPipeline) -> list[torch.nn.Parameter]:
    """requires_grad only on the adapter; returns its parameters (for the optimizer)."""
    for module in pipeline.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
    pipeline.emotion_adapter.requires_grad_(True)
    return list(trainable_parameters(pipeline).values())


def trained_state_dict(pipeline: HalloPipeline) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().contiguous() for k, p in trainable_parameters(pipeline).items()}


def save_trained_weights(pipeline: HalloPipeline, path: str | Path, **metadata: str) -> Path:
    """Only the adapter's parameters as safetensors: megabytes, not Hallo's multi-GB base."""
    path = Path(path)
    save_file(trained_state_dict(pipeline), str(path), metadata=metadata or None)
    return path


def apply_trained_weights(pipeline: HalloPipeline, path: str | Path) -> list[str]:
    """Load a `save_trained_weights` file into a pipeline with the same adapter; returns the keys set."""
    state = load_file(str(path))
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        component, _, name = key.partition(".")
        if component != TRAINED_COMPONENT:
            raise ValueError(f"unexpected component {component!r} in trained weights {path}")
        tensors[name] = tensor
    own = pipeline.emotion_adapter.state_dict()
    if set(tensors) != set(own) or any(tensors[k].shape != own[k].shape for k in own):
        raise ValueError(f"trained weights {path} do not fit this pipeline's emotion adapter")
    pipeline.emotion_adapter.load_state_dict(tensors)
    return sorted(state)


# -- one step ------------------------------------------------------------------------------------------


@dataclass
class PreparedClip:
    """The frozen encoders' outputs for a clip, computed once: latents, bank, audio, conditions."""

    latents: torch.Tensor  # [1, 4, F, h, w]
    bank: ReferenceBank
    audio_windows: torch.Tensor  # [1, F, window, layers, channels]
    emotion_probs: torch.Tensor  # [F, labels]
    emotion_intensity: torch.Tensor  # [F]
    conditions: ClipConditions  # unguided; its audio tokens are replaced by c at every step


@torch.no_grad()
def prepare_clip(pipeline: HalloPipeline, clip: TrainingClip, motion_frames: int = 2) -> PreparedClip:
    clip.check(len(pipeline.emotion_adapter.config["labels"]))
    unet = pipeline.denoising_unet
    device, dtype = unet.device, unet.dtype
    n = len(clip.frames)
    size = clip.portrait.shape[0]
    latents = pipeline.encode_pixels(torch.cat([_to_pixels(frame) for frame in clip.frames]))
    portrait = _to_pixels(clip.portrait)
    # the real preceding frames when the clip has them, else the portrait (the first clip's case)
    before = [_to_pixels(frame) for frame in clip.motion] if clip.motion is not None else []
    motion = torch.cat([portrait.expand(motion_frames, -1, -1, -1), *before])[len(before) :]
    motion = motion[motion.shape[0] - motion_frames :] if motion_frames else motion[:0]
    windows, _ = hallo_audio_features(pipeline.audio_encoder, clip.audio, clip.sampling_rate, round(clip.fps))
    windows = torch.cat([windows, windows[-1:].expand(max(0, n - len(windows)), -1, -1, -1)])[:n]
    masks = hallo_masks(np.asarray(clip.landmarks, np.float32), size)
    embedding = clip.face_embedding if clip.face_embedding is not None else np.zeros(512, np.float32)
    conditions = pipeline.clip_conditions(
        torch.cat([portrait, motion]),
        torch.from_numpy(np.asarray(embedding, np.float32)),
        masks.face_region,
        masks,
        torch.zeros(1, n, 1, 1),  # a placeholder of the clip's length: c replaces it at every step
        guidance=False,
    )
    bank = ReferenceBank()
    pipeline.bank.clear()
    ref = pipeline.reference_unet
    ref(
        pipeline.encode_pixels(conditions.reference).to(ref.device, ref.dtype),
        torch.zeros((), device=ref.device),
        encoder_hidden_states=conditions.face_tokens.to(ref.device, ref.dtype),
        return_dict=False,
    )
    bank.states.update(pipeline.bank.states)
    pipeline.bank.clear()
    return PreparedClip(
        latents=latents.transpose(0, 1)[None].to(device, dtype),
        bank=bank,
        audio_windows=windows[None],
        emotion_probs=torch.as_tensor(np.asarray(clip.emotion_probs, np.float32)),
        emotion_intensity=torch.as_tensor(np.asarray(clip.emotion_intensity, np.float32)),
        conditions=conditions,
    )


def training_scheduler(pipeline: HalloPipeline) -> DDPMScheduler:
    """The pipeline scheduler's noise schedule (v-prediction, zero terminal SNR) as a DDPM one."""
    return DDPMScheduler.from_config(pipeline.scheduler.config)


def diffusion_loss(
    pipeline: HalloPipeline,
    scheduler: DDPMScheduler,
    prepared: PreparedClip,
    generator: torch.Generator,
    condition_drop: float = 0.0,
) -> torch.Tensor:
    """v-prediction MSE for one clip at one random timestep (shared by its frames, as in Hallo)."""
    unet = pipeline.denoising_unet
    latents = prepared.latents
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    steps = scheduler.config["num_train_timesteps"]
    # diffusers annotates timesteps as IntTensor; it takes any integer tensor (randint's is int64)
    t = cast(torch.IntTensor, torch.randint(0, steps, (1,), generator=generator).to(latents.device))
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t)
    tokens = pipeline.audio_tokens(prepared.audio_windows, prepared.emotion_probs, prepared.emotion_intensity)
    if condition_drop > 0 and float(torch.rand((), generator=generator)) < condition_drop:
        tokens = torch.zeros_like(tokens)  # what the unconditional half of guidance sees
    conditions = prepared.conditions
    audio = replace(conditions.audio, tokens=tokens[0].to(unet.device, unet.dtype))
    prediction = unet(
        noisy,
        t,
        encoder_hidden_states=conditions.face_tokens,
        audio=audio,
        reference=prepared.bank,
        guidance=False,
        face_features=conditions.face_features,
    ).sample
    return F.mse_loss(prediction.float(), target.float())


# -- the loop ------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    steps: int = 1000
    learning_rate: float = 1e-5  # Hallo's fine-tuning rate; tiny smoke tests use far more
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    motion_frames: int = 2
    condition_drop: float = 0.05
    cache_clips: int = 8  # prepare (encode) the clips once if there are at most this many
    seed: int = 0


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    trainable: int = 0  # parameter count
    frozen: int = 0
    seconds: float = 0.0


ClipSource = TrainingClip | str | Path  # a clip in memory, or an .npz file read when its turn comes


def _load(source: ClipSource) -> TrainingClip:
    return source if isinstance(source, TrainingClip) else load_clip(source)


def cycle(
    pipeline: HalloPipeline,
    clips: Sequence[ClipSource],
    generator: torch.Generator,
    motion_frames: int,
    cache: bool,
) -> Iterator[PreparedClip]:
    """Endless shuffled passes over the clips, prepared once (`cache`) or afresh at every visit.

    A prepared clip holds its latents and ReferenceNet bank (~60 MB at 512 px, fp16), so only a few
    fit in memory; a real dataset is read and encoded per step, as Hallo does."""
    prepared = [prepare_clip(pipeline, _load(c), motion_frames) for c in clips] if cache else []
    while True:
        for i in torch.randperm(len(clips), generator=generator).tolist():
            yield prepared[i] if cache else prepare_clip(pipeline, _load(clips[i]), motion_frames)


def train(
    pipeline: HalloPipeline,
    clips: Sequence[ClipSource],
    config: TrainConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train the adapter for `config.steps` steps, one clip per step; the pipeline is updated in place
    (and left in eval mode with everything frozen). progress(step, steps, loss) after each step."""
    if not clips:
        raise ValueError("train needs at least one clip")
    if config.steps < 1:
        raise ValueError(f"steps must be at least 1, got {config.steps}")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    params = freeze_for_training(pipeline)
    result = TrainResult(
        trainable=sum(p.numel() for p in params),
        frozen=sum(
            p.numel()
            for m in pipeline.components.values()
            if isinstance(m, torch.nn.Module)
            for p in m.parameters()
            if not p.requires_grad
        ),
    )
    scheduler = training_scheduler(pipeline)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    pipeline.emotion_adapter.train()
    try:
        cache = len(clips) <= config.cache_clips
        batches = cycle(pipeline, clips, generator, config.motion_frames, cache)
        for step in range(1, config.steps + 1):
            loss = diffusion_loss(pipeline, scheduler, next(batches), generator, config.condition_drop)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss is {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            result.losses.append(value)
            if progress is not None:
                progress(step, config.steps, value)
    finally:
        for module in pipeline.components.values():
            if isinstance(module, torch.nn.Module):
                module.eval()
                module.requires_grad_(False)
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def evaluation_loss(
    pipeline: HalloPipeline,
    clips: Sequence[TrainingClip],
    samples: int = 4,
    seed: int = 1234,
    motion_frames: int = 2,
) -> float:
    """Mean loss over fixed (noise, timestep) draws per clip: comparable before and after training,
    unlike the per-step training loss, whose random timestep makes it jump."""
    scheduler = training_scheduler(pipeline)
    losses = []
    for clip in clips:
        prepared = prepare_clip(pipeline, clip, motion_frames)
        generator = torch.Generator().manual_seed(seed)
        losses += [float(diffusion_loss(pipeline, scheduler, prepared, generator)) for _ in range(samples)]
    return float(np.mean(losses))
