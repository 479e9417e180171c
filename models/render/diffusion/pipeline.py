"""HalloPipeline: a portrait, speech and an emotion curve -> talking-face frames, as Hallo makes them.

    portrait --VAE--> reference latents --ReferenceNet--> bank (portrait + motion-frame tokens)
    identity embedding --ImageProjection--> face tokens
    face-region mask --FaceLocator--> features added after the UNet's conv_in
    speech --wav2vec2--> windows --AudioProjection--> f_a --EmotionAdapter(curve)--> c
    noise --DenoisingUNet(bank, face tokens, c, masks) x steps, DDIM--> latents --VAE--> frames

The video is made 16 frames at a time (Hallo's clip). The next clip's ReferenceNet sees the portrait
and the last two frames of the clip before it, so motion carries over. Every setting defaults to
Hallo's inference (configs/inference/default.yaml): 40 DDIM steps, guidance 3.5, 2 motion frames.

Emotion without training: each clip may bring its own reference image (the portrait with the clip's
mean expression applied by the preview rig); the ReferenceNet then carries that expression. Its effect
on the real weights is unverified (docs/diffusion.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.models import AutoencoderKL, UNet2DConditionModel  # not `diffusers`: mypy sees dummies there
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import Wav2Vec2Model

from models.render.diffusion.audio import hallo_audio_features
from models.render.diffusion.conditions import AudioProjection, EmotionAdapter, FaceLocator, ImageProjection
from models.render.diffusion.masks import HalloMasks, hallo_masks
from models.render.diffusion.reference import ReferenceBank, install_bank_writers
from models.render.diffusion.unet import AudioConditions, DenoisingUNet

LATENT_SCALE = 0.18215  # Hallo multiplies by this constant, whatever the VAE config says
CLIP_FRAMES = 16
MOTION_FRAMES = 2
REGION_WEIGHTS = (1.0, 1.0, 1.0)  # pose, face, lip: Hallo's defaults


def hallo_scheduler_config() -> dict[str, Any]:
    """Hallo's inference DDIM: linear betas, v-prediction, zero terminal SNR, trailing timesteps."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "linear",  # Hallo switches to scaled_linear only for its training scheduler
        "clip_sample": False,
        "steps_offset": 1,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    }


@dataclass
class HalloPipelineOutput(BaseOutput):
    """frames: [n, H, W, 3] uint8, or with `stream=True` an iterator of such arrays, one per clip."""

    frames: np.ndarray | Iterator[np.ndarray]


@dataclass(frozen=True)
class ClipConditions:
    """Everything one clip is denoised with, already batched for guidance where it applies."""

    reference: torch.Tensor  # [1 + m, 3, H, W] pixels in -1..1: the portrait, then the motion frames
    face_tokens: torch.Tensor  # [1 or 2, n, dim]
    face_features: torch.Tensor  # [1 or 2, C, f, h, w]
    audio: AudioConditions


class HalloPipeline(DiffusionPipeline):
    """Hallo's network and inference, plus TIE-TFG's emotion adapter on its audio tokens."""

    # diffusers leaves this None in DiffusionPipeline (so mypy infers None); every pipeline sets a str
    model_cpu_offload_seq = (
        "audio_encoder->audio_proj->emotion_adapter->image_proj->"  # type: ignore[assignment]
        "face_locator->vae->reference_unet->denoising_unet"
    )

    vae: AutoencoderKL
    reference_unet: UNet2DConditionModel
    denoising_unet: DenoisingUNet
    face_locator: FaceLocator
    image_proj: ImageProjection
    audio_proj: AudioProjection
    emotion_adapter: EmotionAdapter
    audio_encoder: Wav2Vec2Model
    scheduler: DDIMScheduler

    def __init__(
        self,
        vae: AutoencoderKL,
        reference_unet: UNet2DConditionModel,
        denoising_unet: DenoisingUNet,
        face_locator: FaceLocator,
        image_proj: ImageProjection,
        audio_proj: AudioProjection,
        emotion_adapter: EmotionAdapter,
        audio_encoder: Wav2Vec2Model,
        scheduler: DDIMScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            reference_unet=reference_unet,
            denoising_unet=denoising_unet,
            face_locator=face_locator,
            image_proj=image_proj,
            audio_proj=audio_proj,
            emotion_adapter=emotion_adapter,
            audio_encoder=audio_encoder,
            scheduler=scheduler,
        )
        self.bank = ReferenceBank()
        install_bank_writers(reference_unet, self.bank)
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)

    # -- conditions ------------------------------------------------------------------------------------

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] in -1..1 -> latents [n, 4, H/8, W/8] (the posterior mean, as Hallo)."""
        pixels = pixels.to(self.vae.device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mean * LATENT_SCALE

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, 4, f, h, w] -> video [1, 3, f, H, W] in 0..1, one frame at a time as Hallo decodes."""
        frames = latents[0].transpose(0, 1) / LATENT_SCALE
        decoded = torch.cat([self.vae.decode(frame[None].to(self.vae.dtype)).sample for frame in frames])
        return (decoded / 2 + 0.5).clamp(0, 1).transpose(0, 1)[None]

    def audio_tokens(
        self,
        windows: torch.Tensor,
        emotion_probs: torch.Tensor | None,
        emotion_intensity: torch.Tensor | None,
    ) -> torch.Tensor:
        """Windows [1, f, 5, layers, channels] -> c [1, f, tokens, dim]; no emotion: f_a itself."""
        f_audio = self.audio_proj(windows.to(self.audio_proj.device, self.audio_proj.dtype))
        if emotion_probs is None or emotion_intensity is None:
            return f_audio
        flat = f_audio[0].to(self.emotion_adapter.dtype)
        adapter = self.emotion_adapter
        fused = adapter(flat, emotion_probs.to(flat), emotion_intensity.to(flat))
        return fused[None].to(f_audio)

    def clip_conditions(
        self,
        reference: torch.Tensor,
        face_embedding: torch.Tensor,
        face_region: torch.Tensor,
        masks: HalloMasks,
        audio_tokens: torch.Tensor,
        guidance: bool,
        region_weights: tuple[float, float, float] | None = REGION_WEIGHTS,
    ) -> ClipConditions:
        """Batch one clip's conditions as Hallo does: [unconditional; conditional] under guidance.

        Unconditional: the projection of a zero identity, no face-locator features, zero audio tokens;
        the masks and the reference stay.
        """
        unet = self.denoising_unet
        device, dtype = unet.device, unet.dtype
        frames = audio_tokens.shape[1]
        embedding = face_embedding.reshape(1, -1).to(self.image_proj.device, self.image_proj.dtype)
        face_tokens = self.image_proj(embedding)
        # the same mask every frame: located once, then repeated (Hallo runs it on every copy)
        region = face_region.reshape(1, 3, 1, *face_region.shape[-2:])
        features = self.face_locator(region.to(self.face_locator.device, self.face_locator.dtype))
        features = features.expand(-1, -1, frames, -1, -1)
        tokens = audio_tokens[0]
        levels = {
            name: [m.expand(frames, -1) for m in getattr(masks, name)] for name in ("full", "face", "lip")
        }
        if guidance:
            face_tokens = torch.cat([self.image_proj(torch.zeros_like(embedding)), face_tokens])
            features = torch.cat([torch.zeros_like(features), features])
            tokens = torch.cat([torch.zeros_like(tokens), tokens])
            levels = {name: [torch.cat([m, m]) for m in level] for name, level in levels.items()}
        audio = AudioConditions(
            tokens=tokens.to(device, dtype),
            masks={name: [m.to(device, dtype) for m in level] for name, level in levels.items()},
            weights=region_weights,
        )
        return ClipConditions(
            reference=reference,
            face_tokens=face_tokens.to(device, dtype),
            face_features=features.to(device, dtype),
            audio=audio,
        )

    # -- one clip --------------------------------------------------------------------------------------

    @torch.no_grad()
    def denoise_clip(
        self,
        conditions: ClipConditions,
        num_frames: int,
        num_inference_steps: int = 40,
        guidance_scale: float = 3.5,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        callback: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """One clip of `num_frames` frames -> video [1, 3, f, H, W] in 0..1 (Hallo's FaceAnimatePipeline)."""
        unet = self.denoising_unet
        device, dtype = unet.device, unet.dtype
        guidance = guidance_scale > 1.0
        height, width = conditions.reference.shape[-2:]

        # 1. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 2. Initial noise
        shape = (
            1,
            unet.config["in_channels"],
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma

        # 3. The reference bank: portrait and motion frames through the ReferenceNet, once per clip
        reference_latents = self.encode_pixels(conditions.reference)
        if guidance:
            reference_latents = torch.cat([reference_latents, reference_latents])
        self.bank.clear()
        ref_unet = self.reference_unet
        ref_unet(
            reference_latents.to(ref_unet.device, ref_unet.dtype),
            torch.zeros((), device=ref_unet.device),
            encoder_hidden_states=conditions.face_tokens.to(ref_unet.device, ref_unet.dtype),
            return_dict=False,
        )

        # 4. Denoising loop
        for step, t in enumerate(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            prediction = unet(
                model_input,
                t,
                encoder_hidden_states=conditions.face_tokens,
                audio=conditions.audio,
                reference=self.bank,
                guidance=guidance,
                face_features=conditions.face_features,
            ).sample
            if guidance:
                uncond, cond = prediction.chunk(2)
                prediction = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(prediction, t, latents, return_dict=False)[0]
            if callback is not None:
                callback(step + 1)
        self.bank.clear()

        # 5. Decode
        return self.decode_latents(latents)

    # -- a whole video ---------------------------------------------------------------------------------

    def check_inputs(
        self,
        portrait: np.ndarray,
        landmarks: np.ndarray,
        audio: np.ndarray,
        sample_rate: int,
        face_embedding: np.ndarray,
        emotion_probs: np.ndarray | None,
        emotion_intensity: np.ndarray | None,
        clip_references: Sequence[np.ndarray] | None,
        num_inference_steps: int,
        guidance_scale: float,
        motion_mask_rate: float | None = None,
    ) -> None:
        if portrait.ndim != 3 or portrait.shape[2] != 3 or portrait.shape[0] != portrait.shape[1]:
            raise ValueError(f"portrait must be a square RGB image [S, S, 3], got shape {portrait.shape}")
        if portrait.shape[0] % 64:
            raise ValueError(f"portrait side must be a multiple of 64, got {portrait.shape[0]}")
        if portrait.dtype != np.uint8:
            raise ValueError(f"portrait must be uint8, got {portrait.dtype}")
        if np.asarray(landmarks).shape != (468, 2):
            raise ValueError(
                f"landmarks must be MediaPipe's (468, 2) points, got {np.asarray(landmarks).shape}"
            )
        if audio.ndim != 1 or audio.size == 0 or sample_rate <= 0:
            raise ValueError(f"audio must be non-empty mono samples with a positive rate, got {audio.shape}")
        expected = self.image_proj.config["clip_embeddings_dim"]
        if face_embedding.shape != (expected,) or not np.isfinite(face_embedding).all():
            raise ValueError(
                f"face_embedding must be {expected} finite floats, got shape {face_embedding.shape}"
            )
        if (emotion_probs is None) != (emotion_intensity is None):
            raise ValueError("give both emotion_probs and emotion_intensity, or neither")
        if emotion_probs is not None and emotion_probs.shape[1] != len(self.emotion_adapter.config["labels"]):
            raise ValueError(
                f"emotion_probs must have one column per adapter label "
                f"{list(self.emotion_adapter.config['labels'])}, got {emotion_probs.shape[1]}"
            )
        for image in clip_references or ():
            if image.shape != portrait.shape or image.dtype != np.uint8:
                raise ValueError(f"each clip reference must look like the portrait {portrait.shape} uint8")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale}")
        if motion_mask_rate is not None and not 0.0 <= motion_mask_rate < 1.0:
            raise ValueError(f"motion_mask_rate must be in [0, 1) or None, got {motion_mask_rate}")

    @torch.no_grad()
    def __call__(
        self,
        portrait: np.ndarray,
        landmarks: np.ndarray,
        audio: np.ndarray,
        sample_rate: int,
        face_embedding: np.ndarray,
        fps: int = 25,
        emotion_probs: np.ndarray | None = None,
        emotion_intensity: np.ndarray | None = None,
        clip_references: Sequence[np.ndarray] | None = None,
        num_inference_steps: int = 40,
        guidance_scale: float = 3.5,
        clip_frames: int = CLIP_FRAMES,
        motion_frames: int = MOTION_FRAMES,
        motion_mask_rate: float | None = None,
        audio_segment_seconds: float | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
        stream: bool = False,
    ) -> HalloPipelineOutput:
        """The portrait speaking `audio`: one frame per 1/fps s of audio, as Hallo's inference script.

        emotion_probs [frames, labels] (the adapter's label order) and emotion_intensity [frames] feed the
        adapter; clip_references, one image per clip, replace the portrait in that clip's ReferenceNet.
        Hallo2's settings: motion_mask_rate 0.25 (that share of the motion frames' pixels off the face
        box is blanked, drawn before each clip's noise), audio_segment_seconds 60.
        callback(done_steps, total_steps) after every denoising step.
        """
        # 1. Check inputs
        self.check_inputs(
            portrait, landmarks, audio, sample_rate, face_embedding, emotion_probs, emotion_intensity,
            clip_references, num_inference_steps, guidance_scale, motion_mask_rate,
        )  # fmt: skip

        # 2. Define call parameters
        size = portrait.shape[0]
        guidance = guidance_scale > 1.0

        # 3. Encode conditions: audio windows for every frame (padded to whole clips), masks, identity
        windows, num_frames = hallo_audio_features(
            self.audio_encoder, audio, sample_rate, fps, clip_frames, audio_segment_seconds
        )
        clips = windows.shape[0] // clip_frames
        if clip_references is not None and len(clip_references) != clips:
            raise ValueError(f"{len(clip_references)} clip references for {clips} clips")
        probs, intensity = _padded_curve(emotion_probs, emotion_intensity, windows.shape[0])
        tokens = self.audio_tokens(windows[None], probs, intensity)
        masks = hallo_masks(np.asarray(landmarks, np.float32), size)
        embedding = torch.from_numpy(np.asarray(face_embedding, np.float32))
        total_steps = clips * num_inference_steps

        def generate() -> Iterator[np.ndarray]:
            motion = None
            for clip in range(clips):
                image = clip_references[clip] if clip_references is not None else portrait
                portrait_pixels = _to_pixels(image)
                # the first clip starts from the portrait's own pose
                previous = portrait_pixels.expand(motion_frames, -1, -1, -1) if motion is None else motion
                if motion_mask_rate is not None:
                    previous = _masked(previous, masks.face_region, motion_mask_rate, generator)
                conditions = self.clip_conditions(
                    torch.cat([portrait_pixels, previous]),
                    embedding,
                    masks.face_region,
                    masks,
                    tokens[:, clip * clip_frames : (clip + 1) * clip_frames],
                    guidance,
                )
                done = clip * num_inference_steps
                video = self.denoise_clip(
                    conditions,
                    clip_frames,
                    num_inference_steps,
                    guidance_scale,
                    generator=generator,
                    callback=_offset(callback, done, total_steps),
                )
                motion = video[0, :, clip_frames - motion_frames :].transpose(0, 1) * 2.0 - 1.0
                keep = min(clip_frames, num_frames - clip * clip_frames)
                frames = video[0, :, :keep].permute(1, 2, 3, 0).float().cpu().numpy()
                yield np.round(frames * 255).astype(np.uint8)

        if stream:
            return HalloPipelineOutput(frames=generate())
        return HalloPipelineOutput(frames=np.concatenate(list(generate())))


def _masked(
    frames: torch.Tensor, face_region: torch.Tensor, rate: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Hallo2's motion-frame dropout: pixels off the face box are blanked with probability `rate`."""
    keep = torch.rand(frames.shape[-2:], generator=generator) > rate
    return frames * (keep | face_region.bool()).to(frames)


def _to_pixels(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> [1, 3, H, W] in -1..1 (Hallo's Normalize([0.5], [0.5]))."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def _padded_curve(
    probs: np.ndarray | None, intensity: np.ndarray | None, frames: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The curve at `frames` frames: cut, or padded with its last frame over the audio's padding."""
    if probs is None or intensity is None:
        return None, None
    index = np.minimum(np.arange(frames), len(probs) - 1)
    return torch.from_numpy(probs[index].astype(np.float32)), torch.from_numpy(
        intensity[index].astype(np.float32)
    )


def _offset(
    callback: Callable[[int, int], None] | None, done: int, total: int
) -> Callable[[int], None] | None:
    """A per-clip step callback reporting steps of the whole video."""
    if callback is None:
        return None
    return lambda step: callback(done + step, total)
