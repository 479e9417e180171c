"""EmoTalkPipeline: reference portrait + speech + per-frame emotion -> talking-face frames (diffusers).

Clip-wise generation as in Hallo: the video is made `clip_frames` frames at a time; the last
`motion_frames` latents of a clip go, with the reference image, through the ReferenceNet of the next
clip, so motion carries over. The first clip uses the reference itself as its motion frames. A last clip
shorter than `clip_frames` is padded with its final condition and cut after decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL, UNet2DConditionModel  # not `diffusers`: mypy sees dummies there
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from scipy.signal import resample_poly
from transformers import Wav2Vec2Model

from models.render.diffusion.masks import mask_pyramid, region_masks_from_landmarks
from models.render.diffusion.modules import (
    AudioProjection,
    EmoTalkUNet,
    EmotionProjection,
    FaceLocator,
    GatedFusion,
    ReferenceBank,
    install_reference_writers,
)

AUDIO_SAMPLE_RATE = 16_000  # wav2vec2's rate

# component name -> class: the explicit loader below uses this, so no registry lookup by module name
COMPONENTS: dict[str, Any] = {
    "vae": AutoencoderKL,
    "reference_net": UNet2DConditionModel,
    "denoising_unet": EmoTalkUNet,
    "audio_encoder": Wav2Vec2Model,
    "audio_projection": AudioProjection,
    "emotion_projection": EmotionProjection,
    "fusion": GatedFusion,
    "face_locator": FaceLocator,
    "scheduler": DDIMScheduler,
}


@dataclass
class EmoTalkPipelineOutput(BaseOutput):
    """frames: [n, H, W, 3] uint8, or with `stream=True` an iterator of such arrays, one per clip."""

    frames: np.ndarray | Iterator[np.ndarray]


def hallo_scheduler_config() -> dict[str, Any]:
    """DDIM with v-prediction and zero terminal SNR (Hallo's inference scheduler)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    }


class EmoTalkPipeline(DiffusionPipeline):
    """Talking-face video diffusion with emotion: Hallo's architecture plus TIE-TFG's gated emotion fusion.

    Components: vae (AutoencoderKL), reference_net (UNet2DConditionModel), denoising_unet (EmoTalkUNet),
    audio_encoder (transformers Wav2Vec2Model), audio_projection, emotion_projection, fusion (GatedFusion),
    face_locator, scheduler (DDIMScheduler).
    """

    # diffusers leaves this None in DiffusionPipeline (so mypy infers None); every pipeline sets a str
    model_cpu_offload_seq = (
        "audio_encoder->audio_projection->emotion_projection"  # type: ignore[assignment]
        "->fusion->face_locator->vae->reference_net->denoising_unet"
    )

    # set by register_modules (setattr); declared so the components have types
    vae: AutoencoderKL
    reference_net: UNet2DConditionModel
    denoising_unet: EmoTalkUNet
    audio_encoder: Wav2Vec2Model
    audio_projection: AudioProjection
    emotion_projection: EmotionProjection
    fusion: GatedFusion
    face_locator: FaceLocator
    scheduler: DDIMScheduler

    def __init__(
        self,
        vae: AutoencoderKL,
        reference_net: UNet2DConditionModel,
        denoising_unet: EmoTalkUNet,
        audio_encoder: Wav2Vec2Model,
        audio_projection: AudioProjection,
        emotion_projection: EmotionProjection,
        fusion: GatedFusion,
        face_locator: FaceLocator,
        scheduler: DDIMScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
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
        install_reference_writers(reference_net)
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)

    # -- loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        torch_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> EmoTalkPipeline:
        """Load every component from its subfolder (a local directory or a hub id).

        Each component goes through its own class's `from_pretrained`, so our custom classes need no
        registry lookup; hub downloads, caching and HF_HUB_OFFLINE behave as they do for any diffusers or
        transformers model. Components given as keyword arguments are used as they are.
        """
        source = str(pretrained_model_name_or_path)
        components: dict[str, Any] = {}
        for name, klass in COMPONENTS.items():
            if name in kwargs:
                components[name] = kwargs.pop(name)
                continue
            if klass is DDIMScheduler:
                components[name] = klass.from_pretrained(source, subfolder=name)
            else:
                load_kwargs: dict[str, Any] = {"subfolder": name}
                if torch_dtype is not None:
                    load_kwargs["dtype" if klass is Wav2Vec2Model else "torch_dtype"] = torch_dtype
                components[name] = klass.from_pretrained(source, **load_kwargs, **kwargs)
        return cls(**components)

    # -- conditions ------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_audio(
        self, audio: np.ndarray, sampling_rate: int, num_frames: int, fps: float
    ) -> torch.Tensor:
        """wav2vec2 hidden states of every layer, interpolated to video frames, in 5-frame windows,
        projected: [num_frames, tokens, dim]."""
        projection = self.audio_projection
        windows = self.audio_windows(audio, sampling_rate, num_frames, fps)
        return projection(windows.to(projection.device, projection.dtype))

    @torch.no_grad()
    def audio_windows(
        self, audio: np.ndarray, sampling_rate: int, num_frames: int, fps: float
    ) -> torch.Tensor:
        """The frozen half of `encode_audio`: [num_frames, window, layers, channels] wav2vec2 features.

        Split out so training can run the (trainable) audio projection with gradients."""
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sampling_rate != AUDIO_SAMPLE_RATE:
            g = int(np.gcd(int(sampling_rate), AUDIO_SAMPLE_RATE))
            samples = resample_poly(samples, AUDIO_SAMPLE_RATE // g, int(sampling_rate) // g).astype(
                np.float32
            )
        # cover every frame, and give the conv front end at least its receptive field (400 samples)
        need = max(400, int(np.ceil(num_frames / fps * AUDIO_SAMPLE_RATE)))
        samples = np.pad(samples, (0, max(0, need - len(samples))))
        samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)  # as Wav2Vec2FeatureExtractor
        encoder = self.audio_encoder
        wave = torch.from_numpy(samples)[None].to(encoder.device, encoder.dtype)
        hidden = encoder(wave, output_hidden_states=True).hidden_states[1:]  # the transformer layers
        feats = torch.stack(hidden, dim=2)[0]  # [T, layers, C] at 50 Hz
        t, layers, channels = feats.shape
        # resample the time axis to exactly num_frames (linear, as Hallo does)
        feats = F.interpolate(feats.reshape(t, -1).T[None].float(), size=num_frames, mode="linear")
        feats = feats[0].T.reshape(num_frames, layers, channels)
        window = self.audio_projection.config["window"]
        half = window // 2
        padded = torch.cat([feats[:1].expand(half, -1, -1), feats, feats[-1:].expand(half, -1, -1)])
        return padded.unfold(0, window, 1).permute(0, 3, 1, 2)  # [frames, window, layers, C]

    @torch.no_grad()
    def encode_emotion(self, probs: np.ndarray, intensity: np.ndarray) -> torch.Tensor:
        projection = self.emotion_projection
        p = torch.as_tensor(np.asarray(probs, np.float32), device=projection.device, dtype=projection.dtype)
        i = torch.as_tensor(
            np.asarray(intensity, np.float32), device=projection.device, dtype=projection.dtype
        )
        return projection(p, i)

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] or [n, H, W, 3] -> scaled latents [n, 4, H/8, W/8] (the distribution's mode)."""
        x = torch.from_numpy(np.asarray(image)).reshape(-1, *np.shape(image)[-3:])
        x = x.permute(0, 3, 1, 2).to(self.vae.device, self.vae.dtype) / 127.5 - 1.0
        return self.vae.encode(x).latent_dist.mode() * self.vae.config["scaling_factor"]

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """[n, 4, h, w] -> uint8 [n, H, W, 3], one frame at a time to keep memory flat."""
        frames = []
        for latent in latents:
            scaled = latent[None].to(self.vae.dtype) / self.vae.config["scaling_factor"]
            image = self.vae.decode(scaled).sample
            frames.append(((image[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0))
        return torch.stack(frames).cpu().numpy()

    @torch.no_grad()
    def encode_reference(self, latents: torch.Tensor) -> ReferenceBank:
        """Run the ReferenceNet once on [n_ref, 4, h, w] (reference + motion frames) at t = 0.

        Returns each self-attention's input, joined over the n_ref images: [1, n_ref * seq, C]."""
        net = self.reference_net
        bank: ReferenceBank = {}
        context = torch.zeros(
            latents.shape[0], 1, net.config["cross_attention_dim"], device=net.device, dtype=net.dtype
        )
        net(
            latents.to(net.device, net.dtype),
            torch.zeros(latents.shape[0], device=net.device, dtype=torch.long),
            encoder_hidden_states=context,
            cross_attention_kwargs={"reference_bank": bank},
            return_dict=False,
        )
        return {k: v.reshape(1, -1, v.shape[-1]) for k, v in bank.items()}

    # -- checks ----------------------------------------------------------------------------------------

    def check_inputs(
        self,
        reference_image: np.ndarray,
        landmarks: np.ndarray,
        audio: np.ndarray,
        sampling_rate: int,
        emotion_probs: np.ndarray,
        emotion_intensity: np.ndarray,
        num_frames: int,
        num_inference_steps: int,
        guidance_scale: float,
        clip_frames: int,
        motion_frames: int,
    ) -> None:
        image = np.asarray(reference_image)
        if (
            image.ndim != 3
            or image.shape[2] != 3
            or image.shape[0] != image.shape[1]
            or image.dtype != np.uint8
        ):
            raise ValueError(
                "reference_image must be a square (size, size, 3) uint8 array, "
                f"got {image.shape} {image.dtype}"
            )
        # every UNet level must halve evenly, or skip connections do not line up
        multiple = self.vae_scale_factor * 2 ** (len(self.denoising_unet.config["block_out_channels"]) - 1)
        if image.shape[0] % multiple:
            raise ValueError(f"reference_image size must be a multiple of {multiple}, got {image.shape[0]}")
        if np.shape(landmarks) != (468, 2):
            raise ValueError(f"landmarks must have shape (468, 2), got {np.shape(landmarks)}")
        if np.ndim(audio) != 1:
            raise ValueError(f"audio must be a 1-D array of samples, got shape {np.shape(audio)}")
        if sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        labels = len(self.emotion_projection.config["labels"])
        if np.shape(emotion_probs) != (num_frames, labels):
            raise ValueError(
                f"emotion_probs must have shape (num_frames, labels) = ({num_frames}, {labels}), "
                f"got {np.shape(emotion_probs)}"
            )
        if np.shape(emotion_intensity) != (num_frames,):
            raise ValueError(
                f"emotion_intensity must have shape ({num_frames},), got {np.shape(emotion_intensity)}"
            )
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 disables guidance), got {guidance_scale}")
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be at least 1, got {clip_frames}")
        if not motion_frames >= 0:
            raise ValueError(f"motion_frames must be >= 0, got {motion_frames}")

    # -- generation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        reference_image: np.ndarray,
        landmarks: np.ndarray,
        audio: np.ndarray,
        sampling_rate: int,
        emotion_probs: np.ndarray,
        emotion_intensity: np.ndarray,
        num_frames: int,
        fps: float = 25.0,
        num_inference_steps: int = 40,
        guidance_scale: float = 3.5,
        clip_frames: int = 16,
        motion_frames: int = 2,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
        stream: bool = False,
    ) -> EmoTalkPipelineOutput:
        """Generate `num_frames` frames of the portrait speaking `audio` with the given emotion per frame.

        reference_image: uint8 [S, S, 3]; landmarks: MediaPipe (468, 2) pixel coordinates in it;
        emotion_probs: [num_frames, labels] in `emotion_projection.config.labels` order;
        emotion_intensity: [num_frames] in 0..1. callback(done_frames, num_frames) after every clip.
        """
        # 1. Check inputs
        self.check_inputs(
            reference_image, landmarks, audio, sampling_rate, emotion_probs, emotion_intensity,
            num_frames, num_inference_steps, guidance_scale, clip_frames, motion_frames,
        )  # fmt: skip

        # 2. Define call parameters
        device = self.denoising_unet.device
        dtype = self.denoising_unet.dtype
        do_cfg = guidance_scale > 1.0
        size = reference_image.shape[0]
        latent_size = size // self.vae_scale_factor

        # 3. Encode conditions: c = f_a + gate(f_a) * f_emo for every frame
        f_audio = self.encode_audio(audio, sampling_rate, num_frames, fps)
        f_emotion = self.encode_emotion(emotion_probs, emotion_intensity)
        condition = self.fusion(f_audio.to(self.fusion.dtype), f_emotion.to(self.fusion.dtype))

        # 4. Prepare timesteps (set again per clip: the scheduler keeps state)
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 5. Prepare reference latents, region masks and face-locator features
        reference = self.encode_image(reference_image)  # [1, 4, h, w]
        masks = region_masks_from_landmarks(landmarks, size)
        levels = len(self.denoising_unet.config["block_out_channels"])
        pyramid = mask_pyramid(masks, latent_size, levels, tuple(self.denoising_unet.config["regions"]))
        pyramid = {k: {r: m.to(device, dtype) for r, m in v.items()} for k, v in pyramid.items()}
        face = torch.from_numpy(masks["face"])[None, None].to(
            self.face_locator.device, self.face_locator.dtype
        )
        face_features = self.face_locator(face).to(device, dtype)

        # 6. Denoising loop, clip by clip; 7. Post-process (decode) each clip as it is done
        clips = self._clips(
            condition=condition, reference=reference, pyramid=pyramid, face_features=face_features,
            num_frames=num_frames, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            do_cfg=do_cfg, clip_frames=clip_frames, motion_frames=motion_frames, generator=generator,
            callback=callback,
        )  # fmt: skip
        if stream:
            return EmoTalkPipelineOutput(frames=clips)
        return EmoTalkPipelineOutput(frames=np.concatenate(list(clips)))

    def _clips(
        self,
        condition: torch.Tensor,
        reference: torch.Tensor,
        pyramid: dict[int, dict[str, torch.Tensor]],
        face_features: torch.Tensor,
        num_frames: int,
        num_inference_steps: int,
        guidance_scale: float,
        do_cfg: bool,
        clip_frames: int,
        motion_frames: int,
        generator: torch.Generator | None,
        callback: Callable[[int, int], None] | None,
    ) -> Iterator[np.ndarray]:
        device, dtype = self.denoising_unet.device, self.denoising_unet.dtype
        motion = reference.repeat(motion_frames, 1, 1, 1)  # the first clip starts from the reference pose
        if do_cfg:  # unconditional half: no audio, no emotion (zeros, as Hallo drops audio)
            face_features = torch.cat([face_features, face_features])
        done = 0
        while done < num_frames:
            with torch.no_grad():
                valid = min(clip_frames, num_frames - done)
                # pad a short last clip with its final condition so the UNet always sees clip_frames
                c = condition[done : done + valid]
                c = torch.cat([c, c[-1:].expand(clip_frames - valid, -1, -1)])[None].to(device, dtype)
                if do_cfg:
                    c = torch.cat([torch.zeros_like(c), c])
                bank = self.encode_reference(torch.cat([reference, motion]))
                if do_cfg:
                    bank = {k: torch.cat([v, v]) for k, v in bank.items()}

                shape = (1, reference.shape[1], clip_frames, *reference.shape[2:])
                latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
                latents = latents * self.scheduler.init_noise_sigma
                self.scheduler.set_timesteps(num_inference_steps, device=device)
                for t in self.scheduler.timesteps:
                    model_input = torch.cat([latents, latents]) if do_cfg else latents
                    model_input = self.scheduler.scale_model_input(model_input, t)
                    prediction = self.denoising_unet(
                        model_input,
                        t,
                        c,
                        reference_bank=bank,
                        region_masks=pyramid,
                        face_features=face_features,
                    )
                    if do_cfg:
                        uncond, cond = prediction.chunk(2)
                        prediction = uncond + guidance_scale * (cond - uncond)
                    latents = self.scheduler.step(prediction, t, latents, return_dict=False)[0]

                clip = latents[0].permute(1, 0, 2, 3)[:valid]  # [valid, 4, h, w]
                if motion_frames:
                    motion = torch.cat([motion, clip])[-motion_frames:]
                frames = self.decode_latents(clip)
            done += valid
            if callback is not None:
                callback(done, num_frames)
            yield frames
