"""Training of the emotion/audio alignment layers of an EmoTalkPipeline (TIE-TFG's fine-tuning stage).

What trains (`trainable_parameters`), everything else frozen:
    audio_projection, emotion_projection, fusion (the gate)       the conditions and their fusion
    denoising_unet attn2 (to_q/k/v/out) + region projections/logits the masked hierarchical cross-attention
    denoising_unet motion_modules (TemporalAttention)              optional, `train_temporal`
Frozen: vae, reference_net, audio_encoder (wav2vec2), face_locator and the UNet's spatial weights
(convs, norms, self-attention, feed-forward), as in Hallo's second stage, which starts from SD-1.5.

Objective: v-prediction MSE on noised VAE latents of a clip's target frames, conditioned on the reference
portrait (+ motion frames) through the ReferenceNet bank, on c = f_a + gate(f_a) * f_emo per frame and on
the region masks; c is dropped (zeros) with probability `condition_drop` so classifier-free guidance,
which the pipeline runs with a zero condition, has an unconditional model to subtract.

Data: `TrainingClip`, saved as one .npz per clip (`save_clip` / `load_clip`). No Prefect, no SQL here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler  # not `diffusers`: mypy sees a dummy there
from safetensors.torch import load_file, save_file

from models.render.diffusion.masks import mask_pyramid, region_masks_from_landmarks
from models.render.diffusion.modules import ReferenceBank, RegionMasks
from models.render.diffusion.pipeline import EmoTalkPipeline

# the components whose parameters a trained-weights file may hold (prefix of every saved key)
TRAINED_COMPONENTS = ("audio_projection", "emotion_projection", "fusion", "denoising_unet")


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
        )


# -- what trains ---------------------------------------------------------------------------------------


def _is_trainable_unet_param(name: str, train_temporal: bool) -> bool:
    if name.startswith("motion_modules."):
        return train_temporal
    # attn2 is the cross-attention with c: its projections and the region processor under it
    return ".attn2." in name


def trainable_parameters(
    pipeline: EmoTalkPipeline, train_temporal: bool = True
) -> dict[str, torch.nn.Parameter]:
    """Every parameter this stage trains, by its saved name `<component>.<parameter>`."""
    params: dict[str, torch.nn.Parameter] = {}
    for component in ("audio_projection", "emotion_projection", "fusion"):
        for name, p in getattr(pipeline, component).named_parameters():
            params[f"{component}.{name}"] = p
    for name, p in pipeline.denoising_unet.named_parameters():
        if _is_trainable_unet_param(name, train_temporal):
            params[f"denoising_unet.{name}"] = p
    return params


def freeze_for_training(pipeline: EmoTalkPipeline, train_temporal: bool = True) -> list[torch.nn.Parameter]:
    """requires_grad only on the trainable parameters; returns them (for the optimizer)."""
    trainable = trainable_parameters(pipeline, train_temporal)
    chosen = {id(p) for p in trainable.values()}
    for _, module in pipeline.components.items():
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                p.requires_grad_(id(p) in chosen)
    return list(trainable.values())


def trained_state_dict(pipeline: EmoTalkPipeline, train_temporal: bool = True) -> dict[str, torch.Tensor]:
    return {
        k: p.detach().cpu().contiguous() for k, p in trainable_parameters(pipeline, train_temporal).items()
    }


def save_trained_weights(
    pipeline: EmoTalkPipeline, path: str | Path, train_temporal: bool = True, **metadata: str
) -> Path:
    """Only the trained parameters as safetensors: megabytes, not the multi-GB frozen base."""
    path = Path(path)
    save_file(trained_state_dict(pipeline, train_temporal), str(path), metadata=metadata or None)
    return path


def apply_trained_weights(pipeline: EmoTalkPipeline, path: str | Path) -> list[str]:
    """Load a `save_trained_weights` file into a pipeline built on the same base; returns the keys set."""
    state = load_file(str(path))
    by_component: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        component, _, name = key.partition(".")
        if component not in TRAINED_COMPONENTS:
            raise ValueError(f"unexpected component {component!r} in trained weights {path}")
        by_component.setdefault(component, {})[name] = tensor
    for component, tensors in by_component.items():
        module = getattr(pipeline, component)
        own = module.state_dict()
        unknown = sorted(set(tensors) - set(own))
        if unknown:
            raise ValueError(f"trained weights do not fit {component}: unknown keys {unknown[:3]}")
        module.load_state_dict(tensors, strict=False)
    return sorted(state)


# -- one step ------------------------------------------------------------------------------------------


@dataclass
class PreparedClip:
    """The frozen-encoder outputs of a clip, computed once: latents, bank, audio windows, masks."""

    latents: torch.Tensor  # [1, 4, F, h, w]
    bank: ReferenceBank
    audio_windows: torch.Tensor  # [F, window, layers, channels]
    emotion_probs: torch.Tensor  # [F, labels]
    emotion_intensity: torch.Tensor  # [F]
    pyramid: RegionMasks
    face_features: torch.Tensor  # [1, C0, h, w]


@torch.no_grad()
def prepare_clip(pipeline: EmoTalkPipeline, clip: TrainingClip, motion_frames: int = 2) -> PreparedClip:
    clip.check(len(pipeline.emotion_projection.config["labels"]))
    unet = pipeline.denoising_unet
    device, dtype = unet.device, unet.dtype
    size = clip.portrait.shape[0]
    n = len(clip.frames)
    latents = pipeline.encode_image(clip.frames)  # [F, 4, h, w]
    reference = pipeline.encode_image(clip.portrait)
    if motion_frames:
        # the real preceding frames when the clip has them, else the portrait (first-clip case)
        motion = pipeline.encode_image(clip.motion) if clip.motion is not None else reference
        motion = torch.cat([reference.expand(motion_frames, -1, -1, -1), motion])[-motion_frames:]
        bank = pipeline.encode_reference(torch.cat([reference, motion]))
    else:
        bank = pipeline.encode_reference(reference)
    masks = region_masks_from_landmarks(clip.landmarks, size)
    levels = len(unet.config["block_out_channels"])
    pyramid = mask_pyramid(masks, size // pipeline.vae_scale_factor, levels, tuple(unet.config["regions"]))
    face = torch.from_numpy(masks["face"])[None, None]
    locator = pipeline.face_locator
    return PreparedClip(
        latents=latents.permute(1, 0, 2, 3)[None].to(device, dtype),
        bank={k: v.to(device, dtype) for k, v in bank.items()},
        audio_windows=pipeline.audio_windows(clip.audio, clip.sampling_rate, n, clip.fps),
        emotion_probs=torch.as_tensor(np.asarray(clip.emotion_probs, np.float32)),
        emotion_intensity=torch.as_tensor(np.asarray(clip.emotion_intensity, np.float32)),
        pyramid={k: {r: m.to(device, dtype) for r, m in v.items()} for k, v in pyramid.items()},
        face_features=locator(face.to(locator.device, locator.dtype)).to(device, dtype),
    )


def training_scheduler(pipeline: EmoTalkPipeline) -> DDPMScheduler:
    """The noise schedule of the pipeline's scheduler (v-prediction, zero terminal SNR) as a DDPM one."""
    return DDPMScheduler.from_config(pipeline.scheduler.config)


def fused_condition(pipeline: EmoTalkPipeline, prepared: PreparedClip) -> torch.Tensor:
    """c = f_a + gate(f_a) * f_emo for every frame, with gradients: [F, tokens, dim]."""
    ap, ep = pipeline.audio_projection, pipeline.emotion_projection
    f_audio = ap(prepared.audio_windows.to(ap.device, ap.dtype))
    f_emotion = ep(
        prepared.emotion_probs.to(ep.device, ep.dtype), prepared.emotion_intensity.to(ep.device, ep.dtype)
    )
    return pipeline.fusion(f_audio.to(pipeline.fusion.dtype), f_emotion.to(pipeline.fusion.dtype))


def diffusion_loss(
    pipeline: EmoTalkPipeline,
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
    condition = fused_condition(pipeline, prepared)[None].to(unet.device, unet.dtype)  # [1, F, tokens, dim]
    if condition_drop > 0 and float(torch.rand((), generator=generator)) < condition_drop:
        condition = torch.zeros_like(condition)  # what the pipeline feeds the unconditional half of CFG
    prediction = unet(
        noisy,
        t,
        condition,
        reference_bank=prepared.bank,
        region_masks=prepared.pyramid,
        face_features=prepared.face_features,
    )
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
    train_temporal: bool = True
    cache_clips: int = 8  # prepare (encode) the clips once if there are at most this many
    gradient_checkpointing: bool = False  # recompute the UNet's blocks in backward: Hallo trains this way
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
    pipeline: EmoTalkPipeline,
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
    pipeline: EmoTalkPipeline,
    clips: Sequence[ClipSource],
    config: TrainConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train the alignment layers for `config.steps` steps, one clip per step; the pipeline is updated in
    place (and left in eval mode with everything frozen). progress(step, steps, loss) after each step."""
    if not clips:
        raise ValueError("train needs at least one clip")
    if config.steps < 1:
        raise ValueError(f"steps must be at least 1, got {config.steps}")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    params = freeze_for_training(pipeline, config.train_temporal)
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
    if config.gradient_checkpointing:
        pipeline.denoising_unet.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    for module in (
        pipeline.audio_projection,
        pipeline.emotion_projection,
        pipeline.fusion,
        pipeline.denoising_unet,
    ):
        module.train()
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
        if config.gradient_checkpointing:
            pipeline.denoising_unet.unet.disable_gradient_checkpointing()
        for module in pipeline.components.values():
            if isinstance(module, torch.nn.Module):
                module.eval()
                module.requires_grad_(False)
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def evaluation_loss(
    pipeline: EmoTalkPipeline,
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


# -- a base pipeline from public weights ---------------------------------------------------------------

_UNET_KEYS = (
    "sample_size",
    "in_channels",
    "out_channels",
    "block_out_channels",
    "down_block_types",
    "up_block_types",
    "layers_per_block",
    "cross_attention_dim",
    "attention_head_dim",
    "norm_num_groups",
)


def assemble_base_pipeline(
    vae: Any,
    unet: Any,
    audio_encoder: Any,
    hallo_state: dict[str, torch.Tensor] | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[EmoTalkPipeline, Any]:
    """The pipeline to train from, given loaded public weights (see docs/diffusion.md):
    vae (sd-vae-ft-mse AutoencoderKL), unet (SD-1.5 UNet2DConditionModel, copied into both the
    ReferenceNet and the denoiser's spatial layers) and audio_encoder (wav2vec2-base-960h Wav2Vec2Model).
    With `hallo_state` (torch.load of Hallo's net.pth), its tensors overwrite where they fit.
    Returns (pipeline, HalloConversion report or None). Projections and gate start random."""
    import copy

    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    from models.render.diffusion.convert import load_hallo_state_dict
    from models.render.diffusion.modules import (
        DEFAULT_LABELS,
        AudioProjection,
        EmoTalkUNet,
        EmotionProjection,
        FaceLocator,
        GatedFusion,
    )
    from models.render.diffusion.pipeline import hallo_scheduler_config

    kwargs = {k: unet.config[k] for k in _UNET_KEYS}
    denoising_unet = EmoTalkUNet(**kwargs)
    # the SD weights fit the inner UNet as they are; our processors' region tensors keep their init
    missing, unexpected = denoising_unet.unet.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(".processor." not in k for k in missing):
        raise ValueError(
            f"UNet weights do not fit EmoTalkUNet: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    dim = int(kwargs["cross_attention_dim"])
    audio_config = audio_encoder.config
    pipeline = EmoTalkPipeline(
        vae=vae,
        reference_net=copy.deepcopy(unet),  # a plain UNet2DConditionModel: deepcopy is safe (no hooks)
        denoising_unet=denoising_unet,
        audio_encoder=audio_encoder.eval(),
        audio_projection=AudioProjection(
            layers=audio_config.num_hidden_layers, channels=audio_config.hidden_size, dim=dim
        ),
        emotion_projection=EmotionProjection(labels=tuple(labels or DEFAULT_LABELS), dim=dim),
        fusion=GatedFusion(dim=dim),
        face_locator=FaceLocator(out_channels=int(kwargs["block_out_channels"][0])),
        scheduler=DDIMScheduler(**hallo_scheduler_config()),
    )
    report = load_hallo_state_dict(pipeline, hallo_state) if hallo_state is not None else None
    return pipeline, report
