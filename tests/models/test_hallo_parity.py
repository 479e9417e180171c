"""Our Hallo against Hallo's own code: the released tensor layout, and numbers on a tiny configuration.

The fixtures in tests/fixtures/hallo/ were made by running Hallo's published code (commit 8fd7c57, its
pinned diffusers 0.27.2 and transformers 4.39.2) with bench/hallo_fixtures/make_fixtures.py; see the
README there. Here nothing of Hallo's is imported: our modules are built from the same configuration,
loaded strictly with the same random weights, and fed the same inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from safetensors.torch import load_file
from transformers import Wav2Vec2Config, Wav2Vec2Model

from models.render.diffusion.conditions import AudioProjection, EmotionAdapter, FaceLocator, ImageProjection
from models.render.diffusion.masks import HalloMasks
from models.render.diffusion.pipeline import HalloPipeline
from models.render.diffusion.reference import ReferenceBank, strip_output_head
from models.render.diffusion.unet import HALLO_UNET_KWARGS, AudioConditions, DenoisingUNet
from models.render.diffusion.weights import SD15_UNET_CONFIG, HalloNet, NetConfig, expected_tensors

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hallo"
# float32 on both sides. What differs is the order of float operations (SDPA vs Hallo's explicit
# attention, thread count), which Hallo's float16 hand-over of the reference bank turns into an
# occasional last-bit flip of a banked value: Hallo against itself on 1 vs 2 threads moves by up to
# 5e-5 in one step. So parity is a bound on the relative L2 error and on the largest error relative to
# the output's range, not an elementwise rtol.
RELATIVE_L2 = 1e-4
RELATIVE_MAX = 1e-4
# the second clip inherits the first one's rounding through its motion frames: measured 9.9e-5 / 4.6e-4
# here, and Hallo against itself (1 vs 2 threads) moves that clip by up to 4e-4
VIDEO_L2, VIDEO_MAX = 2e-4, 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_loader_expects_exactly_the_released_net_pth_tensors() -> None:
    released = json.loads((FIXTURES / "hallo_tensors.json").read_text())
    config = NetConfig(
        sd_unet=SD15_UNET_CONFIG,
        unet_additional=HALLO_UNET_KWARGS,
        face_locator={"conditioning_embedding_channels": 320},
        image_proj={"cross_attention_dim": 768, "clip_embeddings_dim": 512, "clip_extra_context_tokens": 4},
        audio_proj={
            "seq_len": 5,
            "blocks": 12,
            "channels": 768,
            "intermediate_dim": 512,
            "output_dim": 768,
            "context_tokens": 32,
        },
        emotion_adapter={},
    )
    ours = expected_tensors(config)
    theirs = {name: tuple(shape) for name, shape in released["tensors"].items()}
    assert released["count"] == len(theirs) == 2656
    assert sorted(ours) == sorted(theirs)
    assert {name: shape for name, shape in ours.items() if shape != theirs[name]} == {}


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return json.loads((FIXTURES / "tiny_config.json").read_text())


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "tiny_reference.safetensors"))


@pytest.fixture(scope="module")
def net(tiny: dict[str, Any]) -> HalloNet:
    reference_config = {
        k: v for k, v in tiny["reference_unet"]["from_config"].items() if not k.startswith("_")
    }
    built = HalloNet(
        strip_output_head(UNet2DConditionModel.from_config(reference_config)),
        DenoisingUNet.from_sd_config(
            tiny["denoising_unet"]["from_config"], **tiny["denoising_unet"]["unet_additional_kwargs"]
        ),
        FaceLocator(**tiny["face_locator"]["kwargs"]),
        ImageProjection(**tiny["imageproj"]["kwargs"]),
        AudioProjection(**tiny["audioproj"]["kwargs"]),
    )
    state = {k: v.float() for k, v in load_file(str(FIXTURES / "tiny_net.safetensors")).items()}
    built.load_state_dict(state, strict=True)
    return built.eval()


def _close(
    actual: torch.Tensor, wanted: torch.Tensor, l2: float = RELATIVE_L2, largest: float = RELATIVE_MAX
) -> None:
    assert actual.shape == wanted.shape
    error = (actual - wanted).double()
    scale = wanted.double().abs().max().clamp_min(1e-12)
    relative_l2 = float(error.norm() / wanted.double().norm().clamp_min(1e-12))
    relative_max = float(error.abs().max() / scale)
    assert relative_l2 <= l2 and relative_max <= largest, (relative_l2, relative_max)


@torch.no_grad()
def test_each_condition_encoder_matches(net: HalloNet, expected: dict[str, torch.Tensor]) -> None:
    _close(net.face_locator(expected["face_locator.input"]), expected["face_locator.output"])
    _close(net.imageproj(expected["imageproj.input"]), expected["imageproj.output"])
    _close(net.audioproj(expected["audioproj.input"]), expected["audioproj.output"])


def _bank(net: HalloNet, expected: dict[str, torch.Tensor]) -> ReferenceBank:
    pipeline_bank = ReferenceBank()
    from models.render.diffusion.reference import install_bank_writers

    install_bank_writers(net.reference_unet, pipeline_bank)
    net.reference_unet(
        expected["reference.sample"],
        expected["reference.timestep"],
        encoder_hidden_states=expected["reference.encoder_hidden_states"],
        return_dict=False,
    )
    return pipeline_bank


@torch.no_grad()
def test_the_reference_bank_matches_layer_by_layer(net: HalloNet, expected: dict[str, torch.Tensor]) -> None:
    bank = _bank(net, expected)
    wanted = {
        key.split(".", 2)[2]: value for key, value in expected.items() if key.startswith("reference_bank.")
    }
    assert sorted(bank.states) == sorted(wanted)
    for path, tensor in wanted.items():
        _close(bank.states[path], tensor)


def _masks(expected: dict[str, torch.Tensor], prefix: str, count: int = 4) -> dict[str, list[torch.Tensor]]:
    return {
        name: [expected[f"{prefix}{name}_mask.{level}"] for level in range(count)]
        for name in ("full", "face", "lip")
    }


@torch.no_grad()
def test_one_guided_denoising_step_matches(
    net: HalloNet, expected: dict[str, torch.Tensor], tiny: dict[str, Any]
) -> None:
    bank = _bank(net, expected)
    scales = tuple(float(v) for v in expected["step.motion_scale"])
    audio = AudioConditions(
        tokens=expected["step.audio_embedding"].flatten(0, 1), masks=_masks(expected, "step."), weights=scales
    )
    prediction = net.denoising_unet(
        expected["step.sample"],
        expected["step.timestep"],
        encoder_hidden_states=expected["step.encoder_hidden_states"],
        audio=audio,
        reference=bank,
        guidance=True,
        face_features=expected["step.mask_cond_fea"],
    ).sample
    _close(prediction, expected["step.noise_pred"])
    uncond, cond = prediction.chunk(2)
    guided = uncond + tiny["pipeline"]["cfg_scale"] * (cond - uncond)
    _close(guided, expected["step.noise_pred_guided"])


@pytest.fixture(scope="module")
def pipeline(net: HalloNet, tiny: dict[str, Any]) -> HalloPipeline:
    vae = AutoencoderKL(**tiny["vae"]["kwargs"])
    vae.load_state_dict({k: v.float() for k, v in load_file(str(FIXTURES / "tiny_vae.safetensors")).items()})
    audio = tiny["audioproj"]["kwargs"]
    encoder = Wav2Vec2Model(  # unused here: the fixture starts from audio tokens
        Wav2Vec2Config(
            hidden_size=audio["channels"],
            num_hidden_layers=audio["blocks"],
            num_attention_heads=2,
            intermediate_size=16,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
    )
    return HalloPipeline(
        vae=vae.eval(),
        reference_unet=net.reference_unet,
        denoising_unet=net.denoising_unet,
        face_locator=net.face_locator,
        image_proj=net.imageproj,
        audio_proj=net.audioproj,
        emotion_adapter=EmotionAdapter(tokens=audio["context_tokens"], dim=audio["output_dim"], hidden_dim=8),
        audio_encoder=encoder.eval(),
        scheduler=DDIMScheduler(**tiny["scheduler"]["kwargs"]),
    )


@torch.no_grad()
def test_two_clips_with_motion_frames_match_hallos_pipeline(
    pipeline: HalloPipeline, expected: dict[str, torch.Tensor], tiny: dict[str, Any]
) -> None:
    settings = tiny["pipeline"]
    portrait = expected["pipeline.source_image_pixels"][None]
    masks = _masks(expected, "pipeline.")
    hallo_masks = HalloMasks(face_region=expected["pipeline.face_region"], **masks)
    motion = portrait.expand(settings["n_motion_frames"], -1, -1, -1)  # clip 1: the portrait itself
    for clip in range(settings["num_clips"]):
        prefix = f"pipeline.clip{clip}."
        conditions = pipeline.clip_conditions(
            torch.cat([portrait, motion]),
            expected["pipeline.face_emb"],
            expected["pipeline.face_region"],
            hallo_masks,
            expected[prefix + "audio_tensor"],
            guidance=True,
            region_weights=tuple(settings["motion_scale"]),
        )
        _close(pipeline.encode_pixels(conditions.reference), expected[prefix + "ref_image_latents"])
        video = pipeline.denoise_clip(
            conditions,
            settings["clip_length"],
            settings["inference_steps"],
            settings["cfg_scale"],
            latents=expected[prefix + "initial_latents"],
        )
        assert torch.equal(pipeline.scheduler.timesteps, expected[prefix + "timesteps"].to(torch.long))
        _close(video, expected[prefix + "video"], l2=VIDEO_L2, largest=VIDEO_MAX)
        # the next clip's motion frames: this clip's last frames, back in -1..1
        motion = video[0, :, -settings["n_motion_frames"] :].transpose(0, 1) * 2.0 - 1.0


def test_hallo2_releases_the_same_tensors() -> None:
    hallo = json.loads((FIXTURES / "hallo_tensors.json").read_text())["tensors"]
    hallo2 = json.loads((FIXTURES / "hallo2_tensors.json").read_text())
    assert hallo2["tensors"] == hallo and hallo2["count"] == 2656
