"""The diffusion renderer on tiny random weights in Hallo's layout: loading, refusals, the emotion paths."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data

from kernel.errors import EngineError, InputError
from models.render.diffusion import (
    DiffusionRenderer,
    HalloPipeline,
    check_weights,
    hash_weights_dir,
    load_pipeline,
    write_tiny_weights,
)
from models.render.diffusion.audio import hallo_audio_features
from models.render.diffusion.masks import hallo_masks
from models.render.diffusion.pipeline import _to_pixels
from models.render.diffusion.weights import NET, OVERRIDES, RELEASES, UNET_CONFIG, VAE_DIR, release
from models.render.topology import FACE_OVAL, LIP_OUTER_LOWER, LIP_OUTER_UPPER
from models.types import CurvePoint, EmotionCurve, Speech, Timings
from models.vision.face import Portrait, prepare_portrait

SIZE = 64
SR = 16_000
LABELS = ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]


def face_landmarks(size: int = SIZE) -> np.ndarray:
    """A plausible layout: the oval on an ellipse, the lips in the lower middle, the rest inside."""
    rng = np.random.default_rng(0)
    points = rng.uniform(0.35 * size, 0.65 * size, (468, 2)).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    points[list(FACE_OVAL)] = np.stack([0.5 + 0.25 * np.sin(angles), 0.5 - 0.32 * np.cos(angles)], 1) * size
    lips = list(LIP_OUTER_UPPER + LIP_OUTER_LOWER)
    lip_angles = np.linspace(0, 2 * np.pi, len(lips), endpoint=False)
    points[lips] = np.stack([0.5 + 0.08 * np.cos(lip_angles), 0.7 + 0.03 * np.sin(lip_angles)], 1) * size
    return points


def make_portrait(size: int = SIZE) -> Portrait:
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).astype(np.uint8)
    return Portrait(image=image, landmarks=face_landmarks(size))


def make_speech(duration: float) -> Speech:
    t = np.arange(int(duration * SR)) / SR
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return Speech(samples, SR, Timings([]))


def make_curve(label: str, duration: float, intensity: float = 1.0) -> EmotionCurve:
    point = CurvePoint(0, "word", 0.0, duration, label, intensity, {label: 1.0}, {}, {})
    return EmotionCurve(labels=LABELS, points=[point])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads; on a busy 2-core machine two threads spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("tiny-hallo"))


@pytest.fixture(scope="module")
def pipeline(weights: Path) -> HalloPipeline:
    return load_pipeline(weights)


def _copy(weights: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "weights"
    shutil.copytree(weights, copy)
    return copy


# -- loading and refusals ------------------------------------------------------------------------------


def test_the_tiny_folder_checks_and_loads_every_tensor_strictly(
    weights: Path, pipeline: HalloPipeline
) -> None:
    report = check_weights(weights)
    assert report.ok, report.problems()
    assert report.loadable_tensors == report.expected_tensors == 1688
    assert all(loaded == expected for loaded, expected in report.per_part.values())
    state = torch.load(weights / NET, weights_only=True)
    loaded = {
        "reference_unet": pipeline.reference_unet,
        "denoising_unet": pipeline.denoising_unet,
        "face_locator": pipeline.face_locator,
        "imageproj": pipeline.image_proj,
        "audioproj": pipeline.audio_proj,
    }
    for part, module in loaded.items():
        own = module.state_dict()
        for name, tensor in own.items():
            assert torch.equal(tensor, state[f"{part}.{name}"]), f"{part}.{name}"
    assert sum(len(module.state_dict()) for module in loaded.values()) == len(state)


def test_a_truncated_net_pth_is_one_line_naming_it(weights: Path, tmp_path: Path) -> None:
    broken = _copy(weights, tmp_path)
    data = (broken / NET).read_bytes()
    (broken / NET).write_bytes(data[: len(data) // 2])
    problems = check_weights(broken).problems()
    assert len(problems) == 1 and problems[0].startswith(NET) and "truncated" in problems[0]
    with pytest.raises(EngineError, match=r"net\.pth cannot be read"):
        load_pipeline(broken)


def test_a_missing_file_is_one_line_naming_it(weights: Path, tmp_path: Path) -> None:
    broken = _copy(weights, tmp_path)
    (broken / VAE_DIR / "diffusion_pytorch_model.safetensors").unlink()
    problems = check_weights(broken).problems()
    assert len(problems) == 1 and problems[0].startswith(f"{VAE_DIR}/model weights: missing")


def test_a_checkpoint_of_another_configuration_names_the_first_mismatch(
    weights: Path, tmp_path: Path
) -> None:
    # SD-2's UNet attends to 1024-d text states; here the config says 64, net.pth holds 32
    other = _copy(weights, tmp_path)
    config = json.loads((other / UNET_CONFIG).read_text())
    (other / UNET_CONFIG).write_text(json.dumps(config | {"cross_attention_dim": 64}))
    with pytest.raises(
        EngineError, match=r"tensor .*attn2\.to_k\.weight has shape \[\d+, 32\].* expects \[\d+, 64\]"
    ):
        load_pipeline(other)
    assert not check_weights(other).ok


def test_extra_tensors_are_refused(weights: Path, tmp_path: Path) -> None:
    other = _copy(weights, tmp_path)
    state = torch.load(other / NET, weights_only=True)
    state["denoising_unet.unexpected.weight"] = torch.zeros(1)
    torch.save(state, other / NET)
    with pytest.raises(
        EngineError, match=r"1 tensors this configuration does not have, first denoising_unet\.unexpected"
    ):
        load_pipeline(other)


def test_the_weights_digest_follows_the_files_read_and_ignores_the_rest(
    weights: Path, tmp_path: Path
) -> None:
    copy = _copy(weights, tmp_path)
    before = hash_weights_dir(copy)
    (copy / "motion_module").mkdir()
    (copy / "motion_module" / "mm_sd_v15_v2.ckpt").write_bytes(b"never read")
    assert hash_weights_dir(copy) == before
    (copy / OVERRIDES).write_text((copy / OVERRIDES).read_text() + "\n")
    assert hash_weights_dir(copy) != before


# -- the emotion adapter ---------------------------------------------------------------------------------


def _clip_inputs(pipeline: HalloPipeline, frames: int = 4) -> dict[str, Any]:
    portrait = make_portrait()
    windows, _ = hallo_audio_features(pipeline.audio_encoder, make_speech(frames / 25).samples, SR, 25)
    windows = windows[:frames][None]
    probs = torch.zeros(frames, len(LABELS))
    probs[:, LABELS.index("angry")] = 1.0
    return {
        "reference": torch.cat([_to_pixels(portrait.image)] * 3),
        "masks": hallo_masks(portrait.landmarks, SIZE),
        "windows": windows,
        "probs": probs,
        "intensity": torch.ones(frames),
    }


def _denoise(pipeline: HalloPipeline, inputs: dict[str, Any], emotion: bool) -> torch.Tensor:
    tokens = pipeline.audio_tokens(
        inputs["windows"], inputs["probs"] if emotion else None, inputs["intensity"] if emotion else None
    )
    conditions = pipeline.clip_conditions(
        inputs["reference"],
        torch.ones(512),
        inputs["masks"].face_region,
        inputs["masks"],
        tokens,
        guidance=True,
    )
    frames = tokens.shape[1]
    latents = torch.randn(1, 4, frames, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    return pipeline.denoise_clip(conditions, frames, num_inference_steps=2, latents=latents)


def test_the_adapter_at_load_leaves_hallo_exactly_as_it_is(pipeline: HalloPipeline) -> None:
    inputs = _clip_inputs(pipeline)
    f_audio = pipeline.audio_proj(inputs["windows"])
    c = pipeline.audio_tokens(inputs["windows"], inputs["probs"], inputs["intensity"])
    assert torch.equal(c, f_audio)
    assert torch.equal(_denoise(pipeline, inputs, emotion=True), _denoise(pipeline, inputs, emotion=False))


def test_a_trained_adapter_moves_the_audio_tokens_by_its_gate(weights: Path) -> None:
    pipeline = load_pipeline(weights)
    inputs = _clip_inputs(pipeline)
    torch.nn.init.normal_(pipeline.emotion_adapter.projection[-1].weight, std=0.1)
    f_audio = pipeline.audio_proj(inputs["windows"])[0]
    adapter = pipeline.emotion_adapter
    f_emo = adapter.emotion_tokens(inputs["probs"], inputs["intensity"])
    c = adapter(f_audio, inputs["probs"], inputs["intensity"])
    gate = adapter.gate_values(f_audio)
    assert ((gate > 0) & (gate < 1)).all()
    torch.testing.assert_close(c, f_audio + gate * f_emo)
    assert not torch.equal(
        _denoise(pipeline, inputs, emotion=True), _denoise(pipeline, inputs, emotion=False)
    )


# -- a whole video -----------------------------------------------------------------------------------------


def test_clips_follow_each_other_through_their_motion_frames(
    pipeline: HalloPipeline, monkeypatch: Any
) -> None:
    seen: list[torch.Tensor] = []
    videos: list[torch.Tensor] = []
    clip_conditions, denoise_clip = pipeline.clip_conditions, pipeline.denoise_clip

    def spy_conditions(reference: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(reference)
        return clip_conditions(reference, *args, **kwargs)

    def spy_denoise(*args: Any, **kwargs: Any) -> torch.Tensor:
        videos.append(denoise_clip(*args, **kwargs))
        return videos[-1]

    monkeypatch.setattr(pipeline, "clip_conditions", spy_conditions)
    monkeypatch.setattr(pipeline, "denoise_clip", spy_denoise)
    portrait = make_portrait()
    output = pipeline(
        portrait.image, portrait.landmarks, make_speech(0.8).samples, SR, np.zeros(512, np.float32),
        num_inference_steps=1, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    frames = output.frames
    assert isinstance(frames, np.ndarray)
    assert frames.shape == (20, SIZE, SIZE, 3) and frames.dtype == np.uint8  # 0.8 s at 25 fps
    assert len(seen) == 2 and all(reference.shape == (3, 3, SIZE, SIZE) for reference in seen)
    pixels = _to_pixels(portrait.image)[0]
    assert all(torch.equal(seen[0][i], pixels) for i in range(3))  # clip 1: the portrait as motion
    torch.testing.assert_close(seen[1][1:], videos[0][0, :, -2:].transpose(0, 1) * 2 - 1)


def test_bad_pipeline_input_names_the_argument(pipeline: HalloPipeline) -> None:
    portrait = make_portrait()
    speech = make_speech(0.2).samples
    with pytest.raises(ValueError, match="face_embedding must be 512"):
        pipeline(portrait.image, portrait.landmarks, speech, SR, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="multiple of 64"):
        pipeline(portrait.image[:48, :48], portrait.landmarks, speech, SR, np.zeros(512, np.float32))
    with pytest.raises(ValueError, match="give both"):
        pipeline(
            portrait.image,
            portrait.landmarks,
            speech,
            SR,
            np.zeros(512, np.float32),
            emotion_probs=np.ones((5, 7)),
        )


# -- the engine: training-free emotion through the reference --------------------------------------------


@pytest.fixture(scope="module")
def renderer(weights: Path) -> DiffusionRenderer:
    return DiffusionRenderer(weights, size=SIZE, steps=1)


@pytest.fixture(scope="module")
def face() -> Portrait:
    """A real face: the preview rig needs a face mesh that is one."""
    return prepare_portrait(data.astronaut(), SIZE)


def test_the_reference_carries_the_clip_expression_and_is_the_portrait_when_neutral(
    renderer: DiffusionRenderer, face: Portrait
) -> None:
    frames = 20
    neutral = renderer._emotion(make_curve("neutral", 0.8), frames)
    angry = renderer._emotion(make_curve("angry", 0.8), frames)
    assert np.array_equal(renderer._clip_reference(face, *neutral, clip=0), face.image)
    moved = renderer._clip_reference(face, *angry, clip=0)
    assert moved.shape == face.image.shape and not np.array_equal(moved, face.image)
    weaker = DiffusionRenderer.__new__(DiffusionRenderer)
    weaker.__dict__.update(renderer.__dict__, reference_expression=0.1)
    gentle = weaker._clip_reference(face, *angry, clip=0)
    change = np.abs(moved.astype(int) - face.image).mean()
    assert 0 < np.abs(gentle.astype(int) - face.image).mean() < change


def test_the_engine_renders_one_frame_per_frame_of_speech_through_the_reference(
    renderer: DiffusionRenderer, face: Portrait, monkeypatch: Any
) -> None:
    given: list[Any] = []
    call = renderer.pipeline.__call__

    def spy(*args: Any, **kwargs: Any) -> Any:
        given.append(kwargs["clip_references"])
        return call(*args, **kwargs)

    monkeypatch.setattr(renderer, "pipeline", type("Spy", (), {"__call__": staticmethod(spy)})())
    speech = make_speech(0.7)
    frames = list(renderer.render(face, speech, make_curve("happy", 0.7)))
    assert len(frames) == renderer.frame_count(speech.duration) == 18
    assert all(frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8 for frame in frames)
    (references,) = given
    assert len(references) == 2 and not np.array_equal(references[0], face.image)


def test_engine_settings_are_checked(weights: Path) -> None:
    with pytest.raises(InputError, match="multiple of 64"):
        DiffusionRenderer(weights, size=100)
    with pytest.raises(EngineError, match="float16 needs a GPU"):
        DiffusionRenderer(weights, dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            DiffusionRenderer(weights, device="cuda")
    with pytest.raises(EngineError, match="no folder"):
        DiffusionRenderer(weights / "nowhere")


# -- Hallo2: the same tensors, two inference settings of its own ------------------------------------------


def test_a_hallo2_folder_is_recognised_and_loads_strictly(weights: Path, tmp_path: Path) -> None:
    folder = _copy(weights, tmp_path)
    (folder / "hallo2").mkdir()
    shutil.copy(folder / NET, folder / "hallo2" / "net.pth")
    with pytest.raises(EngineError, match='"checkpoint": "hallo2"'):
        release(folder)  # both present: the folder must say which
    (folder / NET).unlink()
    assert release(folder) == RELEASES["hallo2"] and RELEASES["hallo2"].motion_mask_rate == 0.25
    report = check_weights(folder)
    assert report.ok and any(item.path == "hallo2/net.pth" and item.status == "ok" for item in report.files)
    load_pipeline(folder)


def test_hallo2_blanks_motion_frame_pixels_off_the_face(pipeline: HalloPipeline, monkeypatch: Any) -> None:
    seen: list[torch.Tensor] = []
    clip_conditions = pipeline.clip_conditions

    def spy(reference: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(reference)
        return clip_conditions(reference, *args, **kwargs)

    monkeypatch.setattr(pipeline, "clip_conditions", spy)
    portrait = make_portrait()
    pipeline(
        portrait.image, portrait.landmarks, make_speech(0.2).samples, SR, np.zeros(512, np.float32),
        num_inference_steps=1, motion_mask_rate=0.25, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    pixels = _to_pixels(portrait.image)[0]
    face = hallo_masks(portrait.landmarks, SIZE).face_region.bool()
    (reference,) = seen
    assert torch.equal(reference[0], pixels)  # the portrait itself is never masked
    for frame in reference[1:]:
        assert torch.equal(frame[face], pixels[face])
        blanked = float((frame[~face] == 0).float().mean())
        assert 0.15 < blanked < 0.35  # about a quarter of the pixels off the face box


def test_hallo2_encodes_long_speech_in_pieces(pipeline: HalloPipeline) -> None:
    speech = make_speech(1.0).samples
    encoder = pipeline.audio_encoder
    whole, frames = hallo_audio_features(encoder, speech, SR, 25, 16)
    same, same_frames = hallo_audio_features(encoder, speech, SR, 25, 16, segment_seconds=5.0)
    assert torch.equal(whole, same) and frames == same_frames == 25
    pieces, piece_frames = hallo_audio_features(encoder, speech, SR, 25, 16, segment_seconds=0.4)
    assert pieces.shape == whole.shape and piece_frames == 25  # 0.4 + 0.4 + 0.2 s, padded to 32 frames
    first, _ = hallo_audio_features(encoder, speech[: int(0.4 * SR)], SR, 25)
    torch.testing.assert_close(pieces[:8, 2], first[:8, 2])  # window centres: the piece encoded alone
    assert not torch.allclose(pieces[:25], whole[:25])
