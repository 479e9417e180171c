"""Output framing (models/render/framing.py): crop frames pasted back into the whole portrait, on
synthetic images whose crop box is known, so every pixel's expected value is known too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernel.errors import InputError
from kernel.jobs import frame_size, parse_job
from kernel.settings import Settings
from models.render.framing import Framer, framer_for, output_region
from models.vision.face import CropBox, Portrait

# a 96 x 160 (width x height) source with a 64 px crop at (16, 48), rendered at 64 px: one source pixel
# per crop pixel, so the pasted crop lands on whole pixels
WIDTH, HEIGHT, X0, Y0, SIDE = 96, 160, 16, 48, 64


def source_image(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 2, y, (x + y) % 256], axis=2)
    return np.clip(image, 0, 255).astype(np.uint8)


def portrait_of(source: np.ndarray, box: CropBox, size: int) -> Portrait:
    """A portrait as prepare_portrait gives it, with a face mesh stand-in filling the crop's middle."""
    import cv2

    matrix = np.array(
        [[size / box.side, 0, -box.x0 * size / box.side], [0, size / box.side, -box.y0 * size / box.side]]
    )
    crop = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR)
    u, v = np.meshgrid(np.linspace(0.3, 0.7, 20), np.linspace(0.25, 0.75, 24))
    landmarks = (np.stack([u.ravel(), v.ravel()], axis=1)[:468] * size).astype(np.float32)
    return Portrait(image=crop, landmarks=landmarks, source=source, crop=box)


@pytest.fixture
def portrait() -> Portrait:
    return portrait_of(source_image(), CropBox(X0, Y0, SIDE), SIDE)


def test_portrait_frame_keeps_the_source_outside_and_the_render_inside(portrait: Portrait) -> None:
    framer = Framer(portrait, "portrait")
    assert framer.size == (WIDTH, HEIGHT)
    rendered = np.clip(portrait.image.astype(int) + 40, 0, 255).astype(np.uint8)  # every crop pixel moved
    out = framer(rendered)
    assert out.shape == (HEIGHT, WIDTH, 3) and out.dtype == np.uint8
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[Y0 : Y0 + SIDE, X0 : X0 + SIDE] = False
    assert np.array_equal(out[outside], portrait.source[outside])  # type: ignore[index]
    band = int(np.ceil(0.05 * SIDE))  # the feather
    inner = (slice(Y0 + band, Y0 + SIDE - band), slice(X0 + band, X0 + SIDE - band))
    assert np.array_equal(out[inner], rendered[band:-band, band:-band])


def test_the_blend_has_no_seam() -> None:
    """A flat 100 still and a flat 200 render: across the crop's edge the output climbs smoothly and
    monotonically, never jumping the full 100 at once."""
    flat = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    face = portrait_of(flat, CropBox(X0, Y0, SIDE), SIDE)
    for feather in (0.05, 0.2):
        out = Framer(face, "portrait", feather=feather)(np.full((SIDE, SIDE, 3), 200, np.uint8))
        row = out[Y0 + SIDE // 2, :, 0].astype(int)
        assert row[0] == 100 and row[WIDTH // 2] == 200
        steps = np.diff(row[: WIDTH // 2])
        assert np.all(steps >= 0)
        # smoothstep's steepest slope is 1.5 per band width
        assert steps.max() <= 100 * 1.5 / (feather * SIDE) + 1


def test_wxh_frame_fits_the_aspect_around_the_face(portrait: Portrait) -> None:
    region, size = output_region(portrait, "96x96")
    assert size == (96, 96) and (region.width, region.height) == (96, 96)
    assert region.y0 <= Y0 and region.y0 + 96 >= Y0 + SIDE  # the whole crop is in view here
    framer = Framer(portrait, "96x96")
    out = framer(portrait.image)
    assert out.shape == (96, 96, 3)
    # unmoved frames reproduce the source region
    expected = portrait.source[region.y0 : region.y0 + 96, region.x0 : region.x0 + 96]  # type: ignore[index]
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_upscaled_and_downscaled_frames() -> None:
    """1080x1920-like upscaling of a small source, and a crop shrunk below half size (area-averaged)."""
    face = portrait_of(source_image(), CropBox(X0, Y0, SIDE), SIDE)
    up = Framer(face, "180x320")
    assert up.size == (180, 320) and up(face.image).shape == (320, 180, 3)
    big = source_image(400, 400)
    small_crop = portrait_of(big, CropBox(150, 150, 64), 256)  # 4 crop pixels per source pixel
    out = Framer(small_crop, "portrait")(small_crop.image)
    assert out.shape == (400, 400, 3)
    assert np.abs(out.astype(int) - big.astype(int)).max() <= 2  # the unmoved crop goes back in place


def test_portrait_frame_rounds_to_even_and_caps_the_side() -> None:
    odd = portrait_of(source_image(97, 161), CropBox(X0, Y0, SIDE), SIDE)
    assert Framer(odd, "portrait").size == (96, 160)
    wide = portrait_of(source_image(4400, 100), CropBox(10, 10, 64), 64)
    _, size = output_region(wide, "portrait")
    assert size == (4096, 92)


def test_impossible_aspect_and_bad_frames_are_refused(portrait: Portrait) -> None:
    with pytest.raises(InputError, match="cannot keep the face in view"):
        output_region(portrait, "640x64")  # a 96 x 10 px strip of this portrait
    with pytest.raises(InputError, match="no source image"):
        Framer(Portrait(image=portrait.image, landmarks=portrait.landmarks), "portrait")
    with pytest.raises(InputError, match=r"\(64, 64, 3\) uint8"):
        Framer(portrait, "portrait")(np.zeros((32, 32, 3), np.uint8))
    assert framer_for(portrait, "crop") is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("1081x1920", "H.264 needs even sides, use 1080x1920"),
        ("5000x1000", "between 64 and 4096"),
        ("32x32", "between 64 and 4096"),
        ("wide", "crop, portrait or WIDTHxHEIGHT"),
    ],
)
def test_job_frame_option_is_validated(tmp_path: Path, frame: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "frame": frame}, tmp_path)
    with pytest.raises(ValueError, match=message):
        frame_size(frame)


def test_frame_option_reaches_the_render_cache_key(tmp_path: Path) -> None:
    from tasks.stages import RENDER

    spec = parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "frame": "1920X1080"}, tmp_path)
    options = spec.options(Settings(output_dir=tmp_path))
    assert options.frame == "1920x1080" and options.allow_non_human is False
    assert RENDER.parameters(options)["frame"] == "1920x1080"
    default = parse_job({"script": "Hi.", "portrait": "skimage:astronaut"}, tmp_path).options(Settings())
    assert RENDER.parameters(default)["frame"] == "crop"


def test_a_framed_portrait_encodes_as_a_non_square_video(tmp_path: Path) -> None:
    """tasks/render.py after the renderer, on a real portrait: a 128 px crop framed to 160x96, H.264."""
    import imageio_ffmpeg
    from skimage import data

    from models.publish.video import encode_frames
    from models.vision.face import prepare_portrait

    face = prepare_portrait(data.astronaut(), size=128)
    framer = framer_for(face, "160x96")
    assert framer is not None and framer.size == (160, 96)
    frames = framer.frames(np.roll(face.image, shift, axis=1) for shift in range(5))  # stand-in render
    count = encode_frames(frames, tmp_path / "frames.mp4", 25, framer.size, 5)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "frames.mp4"))
    assert next(reader)["size"] == (160, 96) and count == len(list(reader)) == 5
