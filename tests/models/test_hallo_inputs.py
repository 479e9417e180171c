"""Hallo's conditioning inputs: wav2vec2 audio windows, face and lip masks, the face-identity vector."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from kernel.errors import EngineError, InputError
from models.render.diffusion import audio as audio_module
from models.render.diffusion.audio import AUDIO_SAMPLE_RATE, audio_windows, hallo_audio_features
from models.render.diffusion.identity import (
    EMBEDDING_DIM,
    REQUIRED_FILES,
    InsightFaceEmbedder,
    PrecomputedEmbedding,
    face_analysis_files,
    load_embedder,
)
from models.render.diffusion.masks import FACE_IDS, LIP_IDS, HalloMasks, hallo_masks
from tests.models.test_diffusion import face_landmarks

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "hallo" / "audio_reference.safetensors"
TINY: dict[str, Any] = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": (8,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


# --- audio -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> Wav2Vec2Model:
    torch.manual_seed(0)
    return Wav2Vec2Model(Wav2Vec2Config(**TINY)).eval()


def speech(seconds: float, rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_audio_windows_match_hallos_loop() -> None:
    torch.manual_seed(0)
    for frames in (1, 2, 3, 7):
        features = torch.randn(frames, 3, 4)
        expected = torch.stack(
            [
                torch.stack([features[max(min(i + j, frames - 1), 0)] for j in range(-2, 3)])
                for i in range(frames)
            ]
        )
        assert torch.equal(audio_windows(features), expected)
    assert audio_windows(torch.arange(4.0), width=3).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    for width in (0, 2, -1):
        with pytest.raises(ValueError, match="odd"):
            audio_windows(torch.zeros(3, 2), width=width)
    with pytest.raises(ValueError, match="no frames"):
        audio_windows(torch.zeros(0, 2))


@pytest.mark.parametrize(
    ("seconds", "fps", "clip", "frames", "padded"),
    [
        (0.77, 25, 16, 20, 32),  # 19.25 frames -> 20, padded to two clips
        (0.64, 25, 16, 16, 16),  # exactly one clip: no padding
        (0.77, 25, None, 20, 20),
        (1.0, 30, 14, 30, 42),
        (0.5, 24, 1, 12, 12),
    ],
)
def test_audio_features_have_one_row_per_video_frame(
    encoder: Wav2Vec2Model, seconds: float, fps: int, clip: int | None, frames: int, padded: int
) -> None:
    samples = speech(seconds)
    assert frames == math.ceil(len(samples) / AUDIO_SAMPLE_RATE * fps)
    seen: list[torch.Size] = []
    hook = encoder.feature_projection.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape))
    try:
        windows, count = hallo_audio_features(encoder, samples, AUDIO_SAMPLE_RATE, fps, clip)
    finally:
        hook.remove()
    assert count == frames
    assert seen == [torch.Size([1, padded, 8])]  # the conv frames were stretched to exactly `padded`
    assert windows.shape == (padded, 5, TINY["num_hidden_layers"], TINY["hidden_size"])
    assert windows.dtype == torch.float32 and torch.isfinite(windows).all()
    # each row's window is its neighbours' centres, clamped at the ends
    centre = windows[:, 2]
    for offset in range(-2, 3):
        index = (torch.arange(padded) + offset).clamp(0, padded - 1)
        assert torch.equal(windows[:, 2 + offset], centre[index])


def test_audio_features_read_every_encoder_layer(encoder: Wav2Vec2Model) -> None:
    windows, _ = hallo_audio_features(encoder, speech(0.5), AUDIO_SAMPLE_RATE, 25)
    layers = windows[:, 2]  # [frames, layers, channels]
    assert not torch.allclose(layers[:, 0], layers[:, 1])


def test_audio_is_normalised_as_the_wav2vec2_feature_extractor_does() -> None:
    samples = speech(0.3) + 0.05
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, do_normalize=True)
    expected = np.squeeze(extractor(samples, sampling_rate=16_000).input_values)
    assert np.array_equal(audio_module._normalise(samples), expected)


def test_audio_features_ignore_level_and_offset(encoder: Wav2Vec2Model) -> None:
    samples = speech(0.5)
    base, _ = hallo_audio_features(encoder, samples, AUDIO_SAMPLE_RATE, 25)
    louder, _ = hallo_audio_features(encoder, 3 * samples + 0.01, AUDIO_SAMPLE_RATE, 25)
    assert torch.allclose(base, louder, atol=1e-4)


def test_audio_is_resampled_to_16khz(encoder: Wav2Vec2Model) -> None:
    native, frames = hallo_audio_features(encoder, speech(0.8), AUDIO_SAMPLE_RATE, 25, 16)
    for rate in (44_100, 48_000, 8_000):
        resampled, count = hallo_audio_features(encoder, speech(0.8, rate).astype(np.float64), rate, 25, 16)
        assert count == frames and resampled.shape == native.shape
        assert torch.allclose(resampled, native, atol=0.05)


def test_audio_features_match_hallos_own_code() -> None:
    """Outputs of Hallo's Wav2VecModel + AudioProcessor steps + process_audio_emb (transformers 4.39.2)."""
    with safe_open(str(REFERENCE), "pt") as file:
        meta = file.metadata()
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not a dict)
    model = Wav2Vec2Model(Wav2Vec2Config(**json.loads(meta["config"]))).eval()
    weights = {key.removeprefix("weights."): v for key, v in tensors.items() if key.startswith("weights.")}
    model.load_state_dict(weights, strict=True)
    cases = sorted({key.split(".")[0] for key in meta if key.endswith(".fps")})
    assert cases == ["fps25_clip16", "fps30_noclip"]
    for case in cases:
        clip = int(meta[f"{case}.clip"])
        windows, frames = hallo_audio_features(
            model,
            tensors["samples"].numpy(),
            AUDIO_SAMPLE_RATE,
            int(meta[f"{case}.fps"]),
            clip if clip > 0 else None,
        )
        expected = tensors[f"{case}.windows"]
        assert frames == int(meta[f"{case}.frames"])
        assert windows.shape == expected.shape
        assert torch.allclose(windows, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("samples", "rate", "fps", "clip", "match"),
    [
        (np.zeros((2, 1600), np.float32), 16_000, 25, None, "mono 1-D"),
        (np.zeros(1600, np.int16), 16_000, 25, None, "floats"),
        (np.zeros(0, np.float32), 16_000, 25, None, "empty"),
        (np.array([0.0, np.nan] * 800), 16_000, 25, None, "NaN"),
        (np.array([0.0, np.inf] * 800), 16_000, 25, None, "NaN or infinite"),
        (np.zeros(1600, np.float32), 0, 25, None, "sample rate"),
        (np.zeros(1600, np.float32), 16_000.0, 25, None, "sample rate"),
        (np.zeros(1600, np.float32), 16_000, 0, None, "fps"),
        (np.zeros(1600, np.float32), 16_000, 121, None, "fps"),
        (np.zeros(1600, np.float32), 16_000, 25.0, None, "fps"),
        (np.zeros(1600, np.float32), 16_000, 25, 0, "clip length"),
        (np.zeros(100, np.float32), 16_000, 25, None, "too short.*400"),
        ([0.0] * 1600, 16_000, 25, None, "mono 1-D"),
    ],
)
def test_bad_audio_is_refused(
    encoder: Wav2Vec2Model, samples: np.ndarray, rate: int, fps: int, clip: int | None, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        hallo_audio_features(encoder, samples, rate, fps, clip)


def test_short_audio_padded_to_a_clip_is_long_enough(encoder: Wav2Vec2Model) -> None:
    windows, frames = hallo_audio_features(encoder, speech(0.02), AUDIO_SAMPLE_RATE, 25, 16)
    assert frames == 1 and windows.shape[0] == 16


def test_an_encoder_in_training_mode_is_refused(encoder: Wav2Vec2Model) -> None:
    encoder.train()
    try:
        with pytest.raises(EngineError, match=r"eval\(\)"):
            hallo_audio_features(encoder, speech(0.5), AUDIO_SAMPLE_RATE, 25)
    finally:
        encoder.eval()


# --- masks -------------------------------------------------------------------------------------------


def square(level: torch.Tensor) -> torch.Tensor:
    side = math.isqrt(level.shape[1])
    return level.reshape(side, side)


def test_mask_ids_are_hallos() -> None:
    upper = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)  # Hallo's lip_ids, corners once
    lower = (146, 91, 181, 84, 17, 314, 405, 321, 375)
    assert upper + lower == LIP_IDS
    assert len(FACE_IDS) == 36 and FACE_IDS[:3] == (10, 338, 297)


@pytest.mark.parametrize("size", [256, 512])
def test_masks_have_hallos_shapes_and_ranges(size: int) -> None:
    masks = hallo_masks(face_landmarks(size), size)
    assert isinstance(masks, HalloMasks)
    assert masks.face_region.shape == (3, size, size) and masks.face_region.dtype == torch.float32
    assert set(masks.face_region.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(masks.face_region[0], masks.face_region[2])
    for maps in (masks.full, masks.face, masks.lip):
        assert [tuple(m.shape) for m in maps] == [(1, (size // 8 // 2**k) ** 2) for k in range(4)]
        for level in maps:
            assert level.dtype == torch.float32 and level.min() >= 0 and level.max() <= 1


def test_face_region_is_hallos_grown_box() -> None:
    points = face_landmarks(512)
    oval = np.zeros((len(FACE_IDS), 2), np.float32)
    oval[:, 0] = np.linspace(200.2, 311.6, len(FACE_IDS))  # box x 200..312, y 150..350 once rounded
    oval[:, 1] = np.linspace(150.4, 349.5, len(FACE_IDS))
    points[list(FACE_IDS)] = oval
    region = hallo_masks(points, 512).face_region[0]
    rows, cols = np.nonzero(region.numpy())
    # centre 256, side 112 * 1.2 = 134.4 -> 67 either side; centre 250, side 240 -> 120 either side
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (189, 323, 130, 370)
    # a face at the edge keeps its size, shifted inside the image
    points[list(FACE_IDS), 0] -= 200
    rows, cols = np.nonzero(hallo_masks(points, 512).face_region[0].numpy())
    assert (cols.min(), cols.max() + 1) == (0, 134)


def test_masks_split_the_image_into_pose_face_and_lips() -> None:
    size = 512
    masks = hallo_masks(face_landmarks(size), size)
    full, face, lip = (square(m[0]) for m in (masks.full, masks.face, masks.lip))
    n = full.shape[0]
    lip_y, lip_x = divmod(int(lip.argmax()), n)
    assert abs(lip_y - 0.7 * n) <= 2 and abs(lip_x - n / 2) <= 2  # the lips' peak is on the lips
    region = square(torch.nn.functional.avg_pool2d(masks.face_region[:1][None], 8).reshape(1, -1))
    assert region[lip > 0.5].min() == 1  # the lip area lies inside the face box
    assert full[n // 2, n // 2] < 0.02 and full[0, 0] > 0.98  # no pose weight inside the face
    assert face[3 * n // 8, n // 2] > 0.95 and face[lip_y, lip_x] < 0.05  # the lips are cut out of the face
    assert lip[n // 2, n // 2 - n // 4] < 0.05 and lip[0, 0] == 0
    total = full + face + lip
    assert total.min() >= 1 - 2 / 255  # together they cover every pixel
    # where the face mask is not saturated at zero, the three parts sum to one (Hallo's 8-bit steps)
    assert (total[face > 0] - 1).abs().max() <= 2 / 255
    smaller = hallo_masks(face_landmarks(size), size, face_expand_ratio=1.0)
    assert smaller.face_region.sum() < masks.face_region.sum()


@pytest.mark.parametrize(
    ("landmarks", "size", "ratio", "match"),
    [
        (np.zeros((478, 2)), 512, 1.2, "468"),
        (np.zeros((468, 3)), 512, 1.2, "468"),
        (np.full((468, 2), np.nan), 512, 1.2, "NaN"),
        (None, 500, 1.2, "multiple of 64"),
        (None, 0, 1.2, "multiple of 64"),
        (None, -64, 1.2, "multiple of 64"),
        (None, 512.0, 1.2, "multiple of 64"),
        (None, True, 1.2, "multiple of 64"),
        (None, 512, 0.0, "expand ratio"),
        (None, 512, float("nan"), "expand ratio"),
    ],
)
def test_bad_mask_input_is_refused(landmarks: np.ndarray | None, size: int, ratio: float, match: str) -> None:
    with pytest.raises(InputError, match=match):
        hallo_masks(face_landmarks(512) if landmarks is None else landmarks, size, ratio)


# --- identity ----------------------------------------------------------------------------------------


def portrait() -> np.ndarray:
    return np.full((64, 64, 3), 128, np.uint8)


def test_precomputed_embedding_returns_its_vector(tmp_path: Path) -> None:
    vector = np.linspace(-3, 3, EMBEDDING_DIM)  # float64, as Hallo's zeros and np.save give
    embedder = PrecomputedEmbedding(vector)
    out = embedder.embed(portrait())
    assert embedder.name == "precomputed" and embedder.last_found
    assert out.dtype == np.float32 and out.shape == (EMBEDDING_DIM,) and np.allclose(out, vector)
    out[:] = 0  # the caller gets a copy
    assert embedder.embed(portrait())[1] != 0
    assert embedder.identity_files() == []

    path = tmp_path / "face.npy"
    np.save(path, vector)
    loaded = load_embedder(None, path)
    assert isinstance(loaded, PrecomputedEmbedding) and loaded.identity_files() == [path]
    assert np.array_equal(loaded.embed(portrait()), vector.astype(np.float32))
    # the file wins over a face-analysis folder
    assert isinstance(load_embedder(tmp_path / "nowhere", path), PrecomputedEmbedding)


@pytest.mark.parametrize(
    ("vector", "match"),
    [
        (np.zeros(511), r"shape \(512,\)"),
        (np.zeros((1, 512)), r"shape \(512,\)"),
        (np.full(512, np.nan), "NaN"),
        (np.full(512, np.inf), "NaN or infinite"),
        (np.array(["a"] * 512), "real numbers"),
        (np.zeros(512, np.complex64), "real numbers"),
    ],
)
def test_bad_precomputed_embeddings_are_refused(vector: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        PrecomputedEmbedding(vector)


def test_bad_embedding_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        PrecomputedEmbedding.from_file(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match=r"not a readable \.npy"):
        PrecomputedEmbedding.from_file(tmp_path / "junk.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"not a readable \.npy"):
        PrecomputedEmbedding.from_file(tmp_path / "objects.npy")
    np.save(tmp_path / "short.npy", np.zeros(128))
    with pytest.raises(InputError, match=r"short.npy must hold one 512-d"):
        load_embedder(None, tmp_path / "short.npy")


@pytest.mark.parametrize(
    "image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)]
)
def test_embedders_refuse_a_non_rgb_image(image: np.ndarray) -> None:
    with pytest.raises(InputError, match="RGB uint8"):
        PrecomputedEmbedding(np.zeros(EMBEDDING_DIM)).embed(image)


def test_no_identity_source_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match=r"face-analysis folder.*or a precomputed"):
        load_embedder(None)


def test_face_analysis_files_are_checked_first_missing_named(tmp_path: Path) -> None:
    root = tmp_path / "face_analysis"
    with pytest.raises(EngineError, match=r"face_analysis does not exist.*fudan-generative-ai/hallo"):
        InsightFaceEmbedder(root)
    (root / "models").mkdir(parents=True)
    with pytest.raises(EngineError, match=r"models/scrfd_10g_bnkps.onnx is missing.*face_analysis/models/"):
        load_embedder(root)
    (root / "models" / "scrfd_10g_bnkps.onnx").write_bytes(b"onnx")
    with pytest.raises(EngineError, match=r"models/glintr100.onnx is missing"):
        InsightFaceEmbedder(root)
    (root / "models" / "glintr100.onnx").write_bytes(b"onnx")
    assert face_analysis_files(root) == [root / "models" / name for name in REQUIRED_FILES]
    # the models folder itself given instead of its parent
    with pytest.raises(EngineError, match="give its parent folder"):
        InsightFaceEmbedder(root / "models")


def test_missing_insightface_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in REQUIRED_FILES:
        (models / name).write_bytes(b"onnx")
    # a None entry makes `import insightface` fail whether or not it is installed
    monkeypatch.setitem(sys.modules, "insightface", None)
    monkeypatch.setitem(sys.modules, "insightface.app", None)
    with pytest.raises(EngineError, match=r"pip install insightface onnxruntime.*glintr100.onnx"):
        load_embedder(tmp_path)


def test_numpy_integers_are_accepted(encoder: Wav2Vec2Model) -> None:
    rate, fps, clip, size = np.int64(16_000), np.int32(25), np.int64(8), np.int64(256)  # e.g. from arrays
    windows, frames = hallo_audio_features(encoder, speech(0.5), rate, fps, clip)  # type: ignore[arg-type]
    assert frames == 13 and windows.shape[0] == 16
    assert hallo_masks(face_landmarks(256), size).face_region.shape == (3, 256, 256)  # type: ignore[arg-type]
