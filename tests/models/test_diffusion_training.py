"""Training the alignment layers on a tiny random pipeline, and the paper's robustness properties."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from models.render.diffusion import EmoTalkPipeline, build_tiny_pipeline
from models.render.diffusion.training import (
    _UNET_KEYS,
    TrainConfig,
    TrainingClip,
    apply_trained_weights,
    assemble_base_pipeline,
    evaluation_loss,
    load_clip,
    prepare_clip,
    save_clip,
    save_trained_weights,
    train,
    trainable_parameters,
)
from tests.models.test_diffusion import make_portrait, make_speech

SIZE = 32  # the smallest the tiny pipeline takes: every test here runs in about a second
LABELS = 7


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # tiny tensors run far slower on two contended threads than on one
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_clip(n: int = 4, label: int = 1) -> TrainingClip:
    portrait = make_portrait(SIZE)
    frames = np.stack([np.roll(portrait.image, i, axis=1) for i in range(n)])  # a slow pan
    probs = np.zeros((n, LABELS), np.float32)
    probs[:, label] = 1.0
    return TrainingClip(
        portrait=portrait.image,
        landmarks=portrait.landmarks,
        frames=frames,
        audio=make_speech(n / 25).samples,
        sampling_rate=16_000,
        emotion_probs=probs,
        emotion_intensity=np.full(n, 0.8, np.float32),
    )


def snapshot(pipe: EmoTalkPipeline) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().clone()
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for k, v in module.state_dict().items()
    }


def test_training_overfits_one_clip_and_moves_only_the_alignment_layers() -> None:
    pipe = build_tiny_pipeline(size=SIZE)
    clip = make_clip()
    before = snapshot(pipe)
    loss_before = evaluation_loss(pipe, [clip])
    steps: list[tuple[int, int, float]] = []
    result = train(
        pipe,
        [clip],
        TrainConfig(steps=10, learning_rate=1e-3, condition_drop=0.0),
        progress=lambda s, n, v: steps.append((s, n, v)),
    )
    loss_after = evaluation_loss(pipe, [clip])
    assert len(result.losses) == 10 and all(np.isfinite(result.losses))
    assert [s for s, _, _ in steps] == list(range(1, 11))
    assert loss_after < loss_before  # fixed noise and timesteps, so a fair comparison
    after = snapshot(pipe)
    trainable = set(trainable_parameters(pipe))
    assert result.trainable == sum(p.numel() for p in trainable_parameters(pipe).values())
    frozen_changed = [k for k in before if k not in trainable and not torch.equal(before[k], after[k])]
    assert frozen_changed == []
    # every trainable group moved; a few single tensors may not (e.g. a bias under a zero gradient)
    moved = {k for k in trainable if not torch.equal(before[k], after[k])}
    for group in ("audio_projection.", "emotion_projection.", "fusion.", "region_logits", "motion_modules."):
        assert any(group in k for k in moved), group
    assert any(".attn2.to_k." in k for k in moved)
    # frozen spatial weights of the UNet and the whole ReferenceNet, VAE, wav2vec2, face locator
    assert not any(".attn1." in k or "conv_in" in k for k in trainable)
    assert not any(
        k.startswith(("vae.", "reference_net.", "audio_encoder.", "face_locator.")) for k in trainable
    )
    assert all(not p.requires_grad for p in pipe.denoising_unet.parameters())  # left frozen, in eval mode


def test_trained_weights_round_trip_onto_a_fresh_base(tmp_path: Path) -> None:
    pipe = build_tiny_pipeline(size=SIZE)
    train(pipe, [make_clip(2)], TrainConfig(steps=1, learning_rate=1e-2, condition_drop=0.0))
    path = save_trained_weights(pipe, tmp_path / "trained.safetensors", base="tiny")
    fresh = build_tiny_pipeline(size=SIZE)
    keys = apply_trained_weights(fresh, path)
    assert set(keys) == set(trainable_parameters(pipe))
    for key, value in trainable_parameters(fresh).items():
        assert torch.equal(value, trainable_parameters(pipe)[key]), key


def test_clip_file_round_trip_and_checks(tmp_path: Path) -> None:
    clip = make_clip(3)
    loaded = load_clip(save_clip(clip, tmp_path / "clip.npz"))
    assert np.array_equal(loaded.frames, clip.frames) and loaded.motion is None
    assert loaded.sampling_rate == 16_000 and loaded.fps == 25.0
    pipe = build_tiny_pipeline(size=SIZE)
    bad = make_clip(3)
    bad.emotion_probs = bad.emotion_probs[:2]
    with pytest.raises(ValueError, match="emotion_probs"):
        prepare_clip(pipe, bad)


# -- the paper's properties ----------------------------------------------------------------------------


def test_gate_lies_strictly_between_zero_and_one_on_projected_audio() -> None:
    pipe = build_tiny_pipeline(size=SIZE)
    torch.manual_seed(0)
    config = pipe.audio_projection.config
    # wildly scaled inputs: the projection's LayerNorm keeps f_a bounded, so the gate never saturates
    for scale in (1e-3, 1.0, 1e3):
        windows = scale * torch.randn(8, config.window, config.layers, config.channels)
        gate = pipe.fusion.gate_values(pipe.audio_projection(windows))
        assert bool(((gate > 0) & (gate < 1)).all()), scale


def test_noise_in_the_emotion_features_degrades_the_output_gracefully() -> None:
    """Paper Table 5: f_emo replaced by noise. c moves by at most the noise (the gate is < 1), and the
    denoiser's output moves more the more noise, without blowing up."""
    pipe = build_tiny_pipeline(size=SIZE)
    prepared = prepare_clip(pipe, make_clip(2))
    torch.manual_seed(0)
    with torch.no_grad():
        f_audio = pipe.audio_projection(prepared.audio_windows)
        f_emotion = pipe.emotion_projection(prepared.emotion_probs, prepared.emotion_intensity)
        noise = torch.randn_like(f_emotion)
        latents = torch.randn_like(prepared.latents)

        def denoise(emotion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            c = pipe.fusion(f_audio, emotion)
            out = pipe.denoising_unet(
                latents,
                500,
                c[None],
                reference_bank=prepared.bank,
                region_masks=prepared.pyramid,
                face_features=prepared.face_features,
            )
            return c, out

        clean_c, clean = denoise(f_emotion)
        gaps = []
        for scale in (0.1, 0.3, 1.0, 3.0):
            c, out = denoise(f_emotion + scale * noise)
            assert bool(((c - clean_c).abs() <= scale * noise.abs() + 1e-6).all())
            gaps.append(float((out - clean).norm() / clean.norm()))
    assert gaps == sorted(gaps) and gaps[0] > 0
    assert gaps[-1] < 1.0  # three times f_emo's own scale in noise still leaves most of the output


def test_motion_frames_carry_the_end_of_one_clip_into_the_next() -> None:
    """Change only clip 1's emotion: with motion frames clip 2 changes too, without them it cannot."""
    pipe = build_tiny_pipeline(size=SIZE)
    n, clip_frames = 4, 2
    portrait = make_portrait(SIZE)

    def run(first_label: int, motion_frames: int) -> np.ndarray:
        probs = np.zeros((n, LABELS), np.float32)
        probs[:clip_frames, first_label] = 1.0
        probs[clip_frames:, 0] = 1.0
        return pipe(
            reference_image=portrait.image,
            landmarks=portrait.landmarks,
            audio=make_speech(n / 25).samples,
            sampling_rate=16_000,
            emotion_probs=probs,
            emotion_intensity=np.full(n, 0.8, np.float32),
            num_frames=n,
            num_inference_steps=2,
            guidance_scale=1.0,
            clip_frames=clip_frames,
            motion_frames=motion_frames,
            generator=torch.Generator().manual_seed(0),
        ).frames

    for motion_frames, carried in ((0, False), (2, True)):
        happy, angry = run(1, motion_frames), run(3, motion_frames)
        assert not np.array_equal(happy[:clip_frames], angry[:clip_frames])
        assert np.array_equal(happy[clip_frames:], angry[clip_frames:]) is not carried, motion_frames


def test_gradient_checkpointing_trains_the_same_weights() -> None:
    trained = []
    for checkpointing in (False, True):
        pipe = build_tiny_pipeline(size=SIZE)
        config = TrainConfig(
            steps=2, learning_rate=1e-3, condition_drop=0.0, gradient_checkpointing=checkpointing
        )
        result = train(pipe, [make_clip(2)], config)
        trained.append((result.losses, trainable_parameters(pipe)))
    assert trained[0][0] == trained[1][0]
    assert all(torch.allclose(v, trained[1][1][k]) for k, v in trained[0][1].items())
    assert not pipe.denoising_unet.unet.is_gradient_checkpointing  # switched off again after training


def test_a_base_pipeline_assembles_from_public_components() -> None:
    tiny = build_tiny_pipeline(size=SIZE)
    unet = UNet2DConditionModel(**{k: tiny.reference_net.config[k] for k in _UNET_KEYS})
    pipe, report = assemble_base_pipeline(tiny.vae, unet, tiny.audio_encoder)
    assert report is None
    for key, value in unet.state_dict().items():  # SD weights in both UNets
        assert torch.equal(pipe.denoising_unet.unet.state_dict()[key], value)
        assert torch.equal(pipe.reference_net.state_dict()[key], value)
    result = train(pipe, [make_clip(2)], TrainConfig(steps=1, learning_rate=1e-3))
    assert np.isfinite(result.losses[0])


def test_clips_from_files_train_as_clips_in_memory(tmp_path: Path) -> None:
    clips = [make_clip(2, label) for label in (1, 3)]
    paths = [save_clip(c, tmp_path / f"c{i}.npz") for i, c in enumerate(clips)]
    runs = []
    for source, cache in ((clips, 8), (paths, 0)):  # cached in memory vs read and encoded every step
        pipe = build_tiny_pipeline(size=SIZE)
        runs.append(train(pipe, source, TrainConfig(steps=3, learning_rate=1e-3, cache_clips=cache)).losses)
    assert runs[0] == runs[1]
