"""The diffusion renderer on a tiny random-weight pipeline: shapes, determinism, loading, paper parts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from kernel.errors import EngineError, InputError
from models.render.diffusion import (
    DiffusionRenderer,
    EmoTalkPipeline,
    GatedFusion,
    HierarchicalCrossAttnProcessor,
    TemporalAttention,
    build_tiny_pipeline,
    hash_weights_dir,
    load_pipeline,
)
from models.render.diffusion.masks import mask_pyramid, region_masks_from_landmarks
from models.render.topology import FACE_OVAL, LIP_OUTER_LOWER, LIP_OUTER_UPPER
from models.types import CurvePoint, EmotionCurve, Speech, Timings
from models.vision.face import Portrait

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
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine two threads spin
    against each other: 1 thread measured 40x faster here. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EmoTalkPipeline]:
    directory = tmp_path_factory.mktemp("tiny-emotalk")
    return directory, build_tiny_pipeline(directory, size=SIZE)


@pytest.fixture(scope="module")
def weights(built: tuple[Path, EmoTalkPipeline]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def pipe(weights: Path) -> EmoTalkPipeline:
    return EmoTalkPipeline.from_pretrained(weights)


@pytest.fixture(scope="module")
def renderer(weights: Path) -> DiffusionRenderer:
    return DiffusionRenderer(weights, size=SIZE, steps=2, guidance=3.5, clip_frames=4, motion_frames=2)


def pipeline_inputs(n_frames: int) -> dict[str, object]:
    portrait = make_portrait()
    probs = np.zeros((n_frames, len(LABELS)), np.float32)
    probs[:, 1] = 1.0
    return {
        "reference_image": portrait.image,
        "landmarks": portrait.landmarks,
        "audio": make_speech(n_frames / 25).samples,
        "sampling_rate": SR,
        "emotion_probs": probs,
        "emotion_intensity": np.full(n_frames, 0.8, np.float32),
        "num_frames": n_frames,
    }


# -- end to end ----------------------------------------------------------------------------------------


def test_render_gives_frame_count_rgb_frames_and_reports_progress(renderer: DiffusionRenderer) -> None:
    speech = make_speech(0.42)  # 10.5 frames -> 11: two full clips of 4 and one of 3
    seen: list[tuple[int, int]] = []
    start = time.perf_counter()
    frames = list(
        renderer.render(
            make_portrait(), speech, make_curve("happy", 0.42), progress=lambda d, t: seen.append((d, t))
        )
    )
    elapsed = time.perf_counter() - start
    assert renderer.frame_count(speech.duration) == 11
    assert len(frames) == 11
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)
    assert seen == [(4, 11), (8, 11), (11, 11)]
    assert elapsed < 20  # the tiny pipeline is a smoke test of the machinery, not of speed


def test_render_is_deterministic_for_a_seed(renderer: DiffusionRenderer, weights: Path) -> None:
    args = (make_portrait(), make_speech(0.12), make_curve("sad", 0.12))
    first = np.stack(list(renderer.render(*args)))
    again = np.stack(list(renderer.render(*args)))
    other = DiffusionRenderer(weights, size=SIZE, steps=2, guidance=1.0, clip_frames=4, seed=1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.stack(list(other.render(*args))))


def test_emotion_changes_the_frames(renderer: DiffusionRenderer) -> None:
    portrait, speech = make_portrait(), make_speech(0.16)
    happy = np.stack(list(renderer.render(portrait, speech, make_curve("happy", 0.16))))
    angry = np.stack(list(renderer.render(portrait, speech, make_curve("angry", 0.16))))
    assert not np.array_equal(happy, angry)


def test_clipwise_generation_covers_any_length(pipe: EmoTalkPipeline) -> None:
    for n in (1, 3, 5, 9):  # shorter than, not a multiple of, and just over multiples of the clip
        out = pipe(
            **pipeline_inputs(n),
            num_inference_steps=1,
            guidance_scale=1.0,
            clip_frames=4,
            generator=torch.Generator().manual_seed(0),
        )
        assert out.frames.shape == (n, SIZE, SIZE, 3)


def test_motion_frames_carry_the_previous_clip_into_the_next(pipe: EmoTalkPipeline) -> None:

    def run(motion_frames: int) -> np.ndarray:
        return pipe(
            **pipeline_inputs(6),
            num_inference_steps=1,
            guidance_scale=1.0,
            clip_frames=3,
            motion_frames=motion_frames,
            generator=torch.Generator().manual_seed(0),
        ).frames

    with_motion, without = run(2), run(0)
    # same first clip only if the reference stands in for the motion frames: with 0 it has no motion
    # frames at all, so compare the second clips, which see the first clip only through motion frames
    assert not np.array_equal(with_motion[3:], without[3:])


def test_streaming_yields_one_array_per_clip(pipe: EmoTalkPipeline) -> None:
    out = pipe(**pipeline_inputs(5), num_inference_steps=1, guidance_scale=1.0, clip_frames=2, stream=True)
    assert [clip.shape[0] for clip in out.frames] == [2, 2, 1]


def test_classifier_free_guidance_runs_and_matters(pipe: EmoTalkPipeline) -> None:

    def run(guidance: float) -> np.ndarray:
        return pipe(
            **pipeline_inputs(2),
            num_inference_steps=2,
            guidance_scale=guidance,
            clip_frames=2,
            generator=torch.Generator().manual_seed(0),
        ).frames

    guided, plain = run(3.5), run(1.0)
    assert guided.shape == plain.shape == (2, SIZE, SIZE, 3)
    assert not np.array_equal(guided, plain)


def test_check_inputs_names_the_argument(pipe: EmoTalkPipeline) -> None:
    bad = pipeline_inputs(3) | {"emotion_probs": np.zeros((2, len(LABELS)), np.float32)}
    with pytest.raises(ValueError, match="emotion_probs"):
        pipe(**bad)
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe(**pipeline_inputs(3), guidance_scale=0.5)


def test_bad_portrait_fails_at_the_call(renderer: DiffusionRenderer) -> None:
    bad = Portrait(image=np.zeros((100, 80, 3), np.uint8), landmarks=np.zeros((468, 2), np.float32))
    with pytest.raises(InputError, match=r"portrait\.image"):
        renderer.render(bad, make_speech(0.2), make_curve("happy", 0.2))


def test_empty_audio_gives_no_frames(renderer: DiffusionRenderer) -> None:
    empty = Speech(np.zeros(0, np.float32), SR, Timings([]))
    assert list(renderer.render(make_portrait(), empty, make_curve("happy", 0.1))) == []


# -- loading -------------------------------------------------------------------------------------------


def test_save_and_from_pretrained_give_identical_frames(
    built: tuple[Path, EmoTalkPipeline], pipe: EmoTalkPipeline
) -> None:
    original = built[1]
    kwargs = {"num_inference_steps": 2, "clip_frames": 2}
    a = original(**pipeline_inputs(3), **kwargs, generator=torch.Generator().manual_seed(5)).frames
    b = pipe(**pipeline_inputs(3), **kwargs, generator=torch.Generator().manual_seed(5)).frames
    assert np.array_equal(a, b)
    state_a, state_b = original.denoising_unet.state_dict(), pipe.denoising_unet.state_dict()
    assert state_a.keys() == state_b.keys()
    assert any("attn2.processor.region_proj.lip" in k for k in state_a)
    assert any(k.startswith("motion_modules.") for k in state_a)


def test_dtype_and_device_choice(weights: Path) -> None:
    pipe = load_pipeline(weights, device="cpu", dtype="bf16")
    assert pipe.denoising_unet.dtype == torch.bfloat16
    assert pipe.audio_encoder.dtype == torch.bfloat16
    with pytest.raises(EngineError, match="dtype"):
        load_pipeline(weights, dtype="int8")
    with pytest.raises(EngineError, match="bfloat16"):
        load_pipeline(weights, device="cpu", dtype="fp16")


def test_missing_weights_fail_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match=r"no directory at .*model_index\.json.*--weights"):
        DiffusionRenderer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match=r"has no model_index\.json"):
        DiffusionRenderer(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(EngineError, match="HF_HUB_OFFLINE"):
        DiffusionRenderer("someone/emotalk-weights-that-are-not-cached")
    assert time.perf_counter() - start < 10


def test_partial_weights_name_the_missing_components(weights: Path, tmp_path: Path) -> None:
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(weights, partial)
    shutil.rmtree(partial / "fusion")
    with pytest.raises(EngineError, match="fusion"):
        load_pipeline(partial)


def test_weights_hash_is_stable_and_sees_changes(
    weights: Path, tmp_path: Path, renderer: DiffusionRenderer
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(weights, copy)
    assert hash_weights_dir(weights) == hash_weights_dir(copy) == renderer.weights_sha256
    (copy / "fusion" / "config.json").write_text((copy / "fusion" / "config.json").read_text() + " ")
    assert hash_weights_dir(copy) != hash_weights_dir(weights)


# -- the paper's parts ---------------------------------------------------------------------------------


def test_gate_passes_audio_through_when_emotion_is_zero() -> None:
    torch.manual_seed(0)
    fusion = GatedFusion(dim=24)
    audio = torch.randn(5, 4, 24)
    assert torch.equal(fusion(audio, torch.zeros_like(audio)), audio)
    emotion = torch.randn(5, 4, 24)
    gate = fusion.gate_values(audio)
    assert gate.shape == audio.shape and bool(((gate > 0) & (gate < 1)).all())
    assert torch.allclose(fusion(audio, emotion), audio + gate * emotion)


def test_masked_branch_ignores_the_condition_outside_its_mask() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)
    processor = HierarchicalCrossAttnProcessor(attn.inner_dim)
    torch.nn.init.normal_(processor.region_logits)
    seq = 16
    lip = torch.zeros(1, seq, 1)
    lip[:, :4] = 1.0
    expression = torch.zeros(1, seq, 1)
    expression[:, :8] = 1.0
    pose = torch.zeros(1, seq, 1)
    pose[:, :12] = 0.5
    masks = {seq: {"lip": lip, "expression": expression, "pose": pose}}
    z = torch.randn(2, seq, 16)
    c1, c2 = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    b1 = processor.branches(attn, z, c1, masks)
    b2 = processor.branches(attn, z, c2, masks)
    assert torch.equal(b1["lip"][:, 4:], torch.zeros_like(b1["lip"][:, 4:]))
    assert not torch.allclose(b1["lip"][:, :4], b2["lip"][:, :4])
    out1 = processor(attn, z, c1, region_masks=masks)
    out2 = processor(attn, z, c2, region_masks=masks)
    assert out1.shape == z.shape
    assert torch.allclose(out1[:, 12:], out2[:, 12:])  # outside every mask, c has no effect
    assert not torch.allclose(out1[:, :12], out2[:, :12])
    weights = processor.region_weights()
    assert torch.isclose(weights.sum(), torch.tensor(1.0)) and weights.shape == (3,)


def test_masks_follow_the_landmarks_at_every_unet_level() -> None:
    masks = region_masks_from_landmarks(face_landmarks(SIZE), SIZE)
    assert masks["lip"][int(0.7 * SIZE), SIZE // 2] > 0.5 > masks["lip"][int(0.2 * SIZE), SIZE // 2]
    assert masks["expression"][SIZE // 2, SIZE // 2] > 0.5 > masks["expression"][1, 1]
    assert masks["lip"].sum() < masks["expression"].sum() < masks["pose"].sum()
    pyramid = mask_pyramid(masks, 64, 4, ("lip", "expression", "pose"))
    assert sorted(pyramid) == [64, 256, 1024, 4096]  # 8/16/32/64 px maps at 512 px
    assert pyramid[64]["lip"].shape == (1, 64, 1)


def test_temporal_attention_mixes_frames() -> None:
    torch.manual_seed(0)
    module = TemporalAttention(channels=8, heads=2, groups=4)
    x = torch.randn(4, 8, 3, 3)  # batch 1 x 4 frames
    y = x.clone()
    y[3] = torch.randn(8, 3, 3)  # not a constant shift: GroupNorm would remove that
    out_x, out_y = module(x, frames=4), module(y, frames=4)
    assert out_x.shape == x.shape
    assert not torch.allclose(out_x[0], out_y[0])  # frame 0 saw the change in frame 3
    # two clips in one batch do not see each other
    two = module(torch.cat([x, y]), frames=4)
    assert torch.allclose(two[:4], out_x, atol=1e-5)


def test_denoiser_reads_the_reference_bank(pipe: EmoTalkPipeline) -> None:
    inputs = pipeline_inputs(2)
    reference = pipe.encode_image(inputs["reference_image"])
    bank = pipe.encode_reference(torch.cat([reference, reference]))
    assert bank and all(v.shape[0] == 1 for v in bank.values())
    sample = torch.randn(1, 4, 2, SIZE // 8, SIZE // 8)
    c = torch.randn(1, 2, 4, 32)
    with torch.no_grad():
        with_bank = pipe.denoising_unet(sample, 10, c, reference_bank=bank)
        without = pipe.denoising_unet(sample, 10, c)
    assert with_bank.shape == sample.shape
    assert not torch.allclose(with_bank, without)


# -- Hallo checkpoint conversion -----------------------------------------------------------------------


def hallo_layout(pipe: EmoTalkPipeline) -> dict[str, torch.Tensor]:
    """A synthetic state dict in the layout of Hallo's net.pth, with values taken from `pipe`."""
    state: dict[str, torch.Tensor] = {}
    for k, v in pipe.reference_net.state_dict().items():
        state[f"reference_unet.{k}"] = v.clone()
    for k, v in pipe.denoising_unet.state_dict().items():
        if k.startswith("unet.") and ".processor." not in k:
            state[f"denoising_unet.{k.removeprefix('unet.')}"] = v.clone()
    for k, v in pipe.face_locator.state_dict().items():
        state[f"face_locator.{k}"] = v.clone()
    for theirs, ours in {"proj1": "net.0", "proj2": "net.2", "proj3": "net.4", "norm": "norm"}.items():
        for part in ("weight", "bias"):
            state[f"audioproj.{theirs}.{part}"] = pipe.audio_projection.state_dict()[f"{ours}.{part}"].clone()
    # parts Hallo has and we do not
    state["denoising_unet.down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.ones(
        2, 2
    )
    state["denoising_unet.down_blocks.0.audio_modules.0.transformer_blocks.0.attn2_0.to_q.weight"] = (
        torch.ones(2)
    )
    state["imageproj.proj.weight"] = torch.ones(3, 3)
    return state


def test_hallo_checkpoint_layout_converts_where_it_fits() -> None:
    from models.render.diffusion.convert import load_hallo_state_dict, map_hallo_key

    source = build_tiny_pipeline(size=SIZE, seed=1)
    target = build_tiny_pipeline(size=SIZE, seed=2)
    state = hallo_layout(source)
    state["face_locator.conv_out.weight"] = torch.zeros(1, 1, 3, 3)  # a config mismatch
    before_gate = target.fusion.gate.weight.clone()
    report = load_hallo_state_dict(target, state)

    assert map_hallo_key("audioproj.proj2.bias") == ("audio_projection", "net.2.bias")
    assert map_hallo_key("denoising_unet.mid_block.motion_modules.0.x") is None
    for name in ("reference_net", "audio_projection"):
        ours, theirs = getattr(target, name).state_dict(), getattr(source, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    unet = target.denoising_unet.state_dict()
    assert torch.equal(unet["unet.conv_in.weight"], source.denoising_unet.state_dict()["unet.conv_in.weight"])
    assert sorted(report.unused) == sorted(
        k for k in state if "motion_modules" in k or "audio_modules" in k or k.startswith("imageproj")
    )
    assert len(report.mismatched) == 1 and "face_locator.conv_out.weight" in report.mismatched[0]
    # what Hallo has no counterpart for stays as it was
    assert any("region_proj" in k for k in report.untouched["denoising_unet"])
    assert any(k.startswith("motion_modules.") for k in report.untouched["denoising_unet"])
    assert torch.equal(target.fusion.gate.weight, before_gate)
