"""Training the emotion adapter on tiny random Hallo weights, and the paper's robustness properties."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models.render.diffusion import HalloPipeline, load_pipeline, write_tiny_weights
from models.render.diffusion.training import (
    TrainConfig,
    TrainingClip,
    apply_trained_weights,
    evaluation_loss,
    load_clip,
    prepare_clip,
    save_clip,
    save_trained_weights,
    train,
    trainable_parameters,
)
from tests.models.test_diffusion import make_portrait, make_speech

SIZE = 64  # the smallest size Hallo's masks take
LABELS = 7


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # tiny tensors run far slower on two contended threads than on one
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("tiny-hallo"))


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
        face_embedding=np.linspace(-1, 1, 512, dtype=np.float32),
    )


def snapshot(pipe: HalloPipeline) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().clone()
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for k, v in module.state_dict().items()
    }


def test_training_overfits_one_clip_and_moves_only_the_adapter(weights: Path) -> None:
    pipe = load_pipeline(weights)
    clip = make_clip()
    before = snapshot(pipe)
    loss_before = evaluation_loss(pipe, [clip])
    steps: list[tuple[int, int, float]] = []
    result = train(
        pipe,
        [clip],
        TrainConfig(steps=10, learning_rate=3e-3, condition_drop=0.0),
        progress=lambda s, n, v: steps.append((s, n, v)),
    )
    loss_after = evaluation_loss(pipe, [clip])
    assert len(result.losses) == 10 and all(np.isfinite(result.losses))
    assert [s for s, _, _ in steps] == list(range(1, 11))
    assert loss_after < loss_before  # fixed noise and timesteps, so a fair comparison
    after = snapshot(pipe)
    trainable = set(trainable_parameters(pipe))
    assert trainable == {k for k in before if k.startswith("emotion_adapter.")}
    assert result.trainable == sum(p.numel() for p in trainable_parameters(pipe).values())
    assert [k for k in before if k not in trainable and not torch.equal(before[k], after[k])] == []
    assert not torch.equal(
        before["emotion_adapter.projection.4.weight"], after["emotion_adapter.projection.4.weight"]
    )
    assert all(not p.requires_grad for p in pipe.emotion_adapter.parameters())  # left frozen, in eval mode


def test_trained_weights_round_trip_onto_a_fresh_base(weights: Path, tmp_path: Path) -> None:
    pipe = load_pipeline(weights)
    train(pipe, [make_clip(2)], TrainConfig(steps=1, learning_rate=1e-2, condition_drop=0.0))
    path = save_trained_weights(pipe, tmp_path / "trained.safetensors", base="tiny")
    fresh = load_pipeline(weights)
    keys = apply_trained_weights(fresh, path)
    assert set(keys) == set(trainable_parameters(pipe))
    for key, value in trainable_parameters(fresh).items():
        assert torch.equal(value, trainable_parameters(pipe)[key]), key


def test_clip_file_round_trip_and_checks(weights: Path, tmp_path: Path) -> None:
    clip = make_clip(3)
    loaded = load_clip(save_clip(clip, tmp_path / "clip.npz"))
    assert np.array_equal(loaded.frames, clip.frames) and loaded.motion is None
    assert loaded.face_embedding is not None and np.array_equal(loaded.face_embedding, clip.face_embedding)
    assert loaded.sampling_rate == 16_000 and loaded.fps == 25.0
    bad = make_clip(3)
    bad.emotion_probs = bad.emotion_probs[:2]
    with pytest.raises(ValueError, match="emotion_probs"):
        prepare_clip(load_pipeline(weights), bad)


# -- the paper's properties ----------------------------------------------------------------------------


def test_gate_lies_strictly_between_zero_and_one_on_projected_audio(weights: Path) -> None:
    pipe = load_pipeline(weights)
    torch.manual_seed(0)
    config = pipe.audio_proj.config
    # wildly scaled inputs: the projection's LayerNorm keeps f_a bounded, so the gate never saturates
    for scale in (1e-3, 1.0, 1e3):
        windows = scale * torch.randn(1, 8, config["seq_len"], config["blocks"], config["channels"])
        gate = pipe.emotion_adapter.gate_values(pipe.audio_proj(windows))
        assert bool(((gate > 0) & (gate < 1)).all()), scale


def test_noise_in_the_emotion_features_degrades_the_output_gracefully(weights: Path) -> None:
    """Paper Table 5: f_emo replaced by noise. c moves by at most the noise (the gate is < 1), and the
    denoiser's output moves more the more noise, without blowing up."""
    pipe = load_pipeline(weights)
    prepared = prepare_clip(pipe, make_clip(2))
    torch.manual_seed(0)
    unet = pipe.denoising_unet
    with torch.no_grad():
        f_audio = pipe.audio_proj(prepared.audio_windows)[0]
        noise = torch.randn_like(f_audio)
        latents = torch.randn_like(prepared.latents)
        gate = pipe.emotion_adapter.gate_values(f_audio)
        conditions = prepared.conditions

        def denoise(f_emo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            c = f_audio + gate * f_emo
            audio = type(conditions.audio)(c, conditions.audio.masks, conditions.audio.weights)
            out = unet(
                latents, 500, conditions.face_tokens, audio, prepared.bank, False, conditions.face_features
            ).sample
            return c, out

        clean_c, clean = denoise(torch.zeros_like(f_audio))
        gaps = []
        for scale in (0.1, 0.3, 1.0, 3.0):
            c, out = denoise(scale * noise)
            assert bool(((c - clean_c).abs() <= scale * noise.abs() + 1e-6).all())
            gaps.append(float((out - clean).norm() / clean.norm()))
    assert gaps == sorted(gaps) and gaps[0] > 0
    assert gaps[-1] < 1.0  # noise three times f_a's own scale still leaves most of the output


def test_clips_from_files_train_as_clips_in_memory(weights: Path, tmp_path: Path) -> None:
    clips = [make_clip(2, label) for label in (1, 3)]
    paths = [save_clip(c, tmp_path / f"c{i}.npz") for i, c in enumerate(clips)]
    runs = []
    for source, cache in ((clips, 8), (paths, 0)):  # cached in memory vs read and encoded every step
        pipe = load_pipeline(weights)
        runs.append(train(pipe, source, TrainConfig(steps=3, learning_rate=1e-3, cache_clips=cache)).losses)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4)  # the same clips, float noise apart
