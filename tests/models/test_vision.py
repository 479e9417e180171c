"""Portrait intake on real MediaPipe models: skimage's astronaut (a face) and chelsea (a cat)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from kernel.errors import InputError
from models.vision import Portrait, detect_faces, detect_landmarks, load_image, prepare_portrait


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def portrait(astronaut: np.ndarray) -> Portrait:
    return prepare_portrait(astronaut)


def test_astronaut_gives_a_square_portrait_with_468_landmarks(portrait: Portrait) -> None:
    assert portrait.image.shape == (512, 512, 3)
    assert portrait.image.dtype == np.uint8
    assert portrait.landmarks.shape == (468, 2)
    assert portrait.landmarks.dtype == np.float32
    assert np.all(portrait.landmarks >= 0) and np.all(portrait.landmarks < 512)
    assert portrait.depth is not None and portrait.depth.shape == (468,)
    # the crop keeps hair and shoulders: the face spans well under half the frame, roughly centred
    span = np.ptp(portrait.landmarks, axis=0)
    assert 0.2 * 512 < span[0] < 0.6 * 512
    center = portrait.landmarks.mean(axis=0)
    assert np.all(np.abs(center - 256) < 0.2 * 512)


def test_portrait_size_is_configurable(astronaut: np.ndarray) -> None:
    small = prepare_portrait(astronaut, size=256)
    assert small.image.shape == (256, 256, 3)
    assert np.all(small.landmarks < 256)


def test_cat_has_no_human_face() -> None:
    with pytest.raises(InputError, match="no human face"):
        prepare_portrait(data.chelsea())
    assert detect_landmarks(data.chelsea()) is None


def test_face_index_out_of_range(astronaut: np.ndarray) -> None:
    assert len(detect_faces(astronaut)) == 1
    with pytest.raises(InputError, match="face_index 1 is out of range"):
        prepare_portrait(astronaut, face_index=1)


def test_small_face_in_a_large_canvas_is_padded(astronaut: np.ndarray) -> None:
    # a face near the corner of a wide canvas: the square crop leaves the image and gets padded
    canvas = np.full((600, 1400, 3), 200, dtype=np.uint8)
    canvas[:512, :512] = astronaut
    result = prepare_portrait(canvas, size=320)
    assert result.image.shape == (320, 320, 3)
    assert np.all(result.landmarks >= 0) and np.all(result.landmarks < 320)


def test_load_image_reads_rgb_from_png_rgba_and_grey(tmp_path: Path, astronaut: np.ndarray) -> None:
    rgb_path = tmp_path / "face.png"
    Image.fromarray(astronaut).save(rgb_path)
    loaded = load_image(rgb_path)
    assert loaded.dtype == np.uint8 and loaded.shape == astronaut.shape
    assert np.array_equal(loaded, astronaut)

    rgba_path = tmp_path / "face_rgba.png"
    Image.fromarray(np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])).save(rgba_path)
    assert load_image(rgba_path).shape == astronaut.shape

    grey_path = tmp_path / "face_grey.jpg"
    Image.fromarray(astronaut[:, :, 0]).save(grey_path)
    assert load_image(grey_path).shape == astronaut.shape


def test_load_image_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "face.jpg"
    with pytest.raises(InputError, match="not found") as err:
        load_image(missing)
    assert str(missing) in str(err.value)


def test_load_image_rejects_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(InputError, match="not an image") as err:
        load_image(text)
    assert str(text) in str(err.value)


def test_load_image_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_image(tmp_path)


def test_concurrent_calls_share_the_models_safely(astronaut: np.ndarray, portrait: Portrait) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: prepare_portrait(astronaut), range(3)))
    for result in results:
        np.testing.assert_allclose(result.landmarks, portrait.landmarks, atol=1e-3)
