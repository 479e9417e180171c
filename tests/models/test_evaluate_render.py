"""Render evaluation (metrics, synthetic speech, the `evaluate render` command) and portrait intake on
bad input. Uses only skimage's sample images: the shared evaluation data is for the bench."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from emoflow.commands.evaluate import evaluate_app
from kernel.errors import InputError
from models.evaluate import metrics
from models.evaluate.speech import frame_energy, synthetic_speech
from models.vision.face import MAX_IMAGE_PIXELS, Portrait, face_turn, load_image, prepare_portrait

# -- metrics ----------------------------------------------------------------------------------------------


def test_ef_agreement_is_the_share_of_matching_frames() -> None:
    assert metrics.ef_agreement(["happy", "sad", "happy", "happy"], ["happy"] * 4) == 0.75
    with pytest.raises(ValueError, match="differ in length"):
        metrics.ef_agreement(["happy"], ["happy", "sad"])


def test_correlation_ignores_missing_frames() -> None:
    a = np.array([0.0, 1.0, np.nan, 3.0, 4.0])
    assert metrics.correlation(a, 2 * np.nan_to_num(a) + 1) == pytest.approx(1.0)
    assert np.isnan(metrics.correlation(np.ones(5), np.arange(5.0)))


@pytest.fixture(scope="module")
def astronaut_portrait() -> Portrait:
    return prepare_portrait(data.astronaut(), size=256)


def test_landmark_drift_ignores_head_motion_but_sees_shape_change(astronaut_portrait: Portrait) -> None:
    rest = astronaut_portrait.landmarks.astype(np.float64)
    angle = 0.1
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (rest - 128) @ rot.T * 1.05 + 128 + [7.0, -3.0]  # turned, scaled, shifted: same face
    assert metrics.landmark_drift(moved, rest) < 1e-9
    assert metrics.landmark_drift(moved, rest, rigid=False) > 0.05
    wider = rest.copy()
    wider[:, 0] = 128 + (wider[:, 0] - 128) * 1.15  # a wider face is another face
    assert metrics.landmark_drift(wider, rest) > 0.02


def test_background_ssim_outside_the_head(astronaut_portrait: Portrait) -> None:
    image, points = astronaut_portrait.image, astronaut_portrait.landmarks
    mask = metrics.background_mask(points, image.shape[0])
    nose = points[1].astype(int)
    assert not mask[nose[1], nose[0]] and mask[2, 2]
    assert metrics.background_ssim(image, image, mask) == pytest.approx(1.0)
    edited = image.copy()
    edited[~mask] = 0  # changing the face does not count
    assert metrics.background_ssim(edited, image, mask) == pytest.approx(1.0)
    assert metrics.background_ssim(np.roll(image, 9, axis=1), image, mask) < 0.9


def test_synthetic_speech_has_timed_syllables() -> None:
    speech = synthetic_speech(3.0, sample_rate=16000, seed=1)
    assert speech.duration == pytest.approx(3.0)
    phones, words = speech.timings.phonemes, speech.timings.words
    assert len(words) >= 4 and len(phones) >= 2 * len(words)
    assert all(0 <= p.start < p.end <= 3.0 for p in phones)
    energy = frame_energy(speech, 25, 75)
    vowel = [p for p in phones if p.phoneme in {"a", "ɑ"}]
    loud = np.mean([energy[int((p.start + p.end) / 2 * 25)] for p in vowel]) if vowel else 1.0
    pause = (words[0].end + words[1].start) / 2
    assert energy[int(pause * 25)] < 0.2 * loud  # silent between words, loud on open vowels
    assert np.array_equal(synthetic_speech(3.0, seed=1).samples, synthetic_speech(3.0, seed=1).samples)


# -- the command ------------------------------------------------------------------------------------------


def test_evaluate_render_command_scores_faces_and_skips_the_cat(tmp_path: Path) -> None:
    portraits = tmp_path / "portraits"
    portraits.mkdir()
    Image.fromarray(data.astronaut()).save(portraits / "astronaut.png")
    Image.fromarray(data.chelsea()).save(portraits / "cat.jpg")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        evaluate_app,
        [
            "render",
            "--portraits",
            str(portraits),
            "--out",
            str(out),
            "--seconds",
            "1.2",
            "--emotions",
            "happy,sad",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    status = {p["name"]: p["status"] for p in report["portraits"]}
    assert status == {"astronaut": "ok", "cat": "skipped"}
    assert "no human face" in next(p["reason"] for p in report["portraits"] if p["name"] == "cat")
    clips = {c["emotion"]: c for c in report["clips"]}
    assert set(clips) == {"happy", "sad"} and clips["happy"]["frames"] == 30
    assert clips["happy"]["ef_agreement"] >= 0.9  # a smiling astronaut made happier stays happy
    summary = report["summary"]
    assert set(summary["ef_agreement"]) == {"happy", "sad"}
    assert summary["lip_sync"] > 0.5  # mouth opening follows the synthetic syllables
    # and the re-detected gap follows the gap the warp was given (the speech track, whatever the loudness)
    assert summary["lip_follow"] > 0.6 and all(np.isfinite(c["lip_follow"]) for c in clips.values())
    assert summary["drift_iod_mean"] < 0.05 and summary["bg_ssim_mean"] > 0.8
    assert summary["portraits_skipped"] == ["cat"]
    # naturalness: every region scored against the real actors' range (the neutral is the reference, so
    # it is rendered even when not asked for), and the lips checked on every frame
    assert set(clips["sad"]["range_ratio"]) == {
        "brows", "upper_lids", "lower_lids", "cheeks", "mouth_corners", "lips", "jaw",
    }  # fmt: skip
    assert 0.0 < clips["sad"]["range_ratio_max"] < 1.5
    # and on the geometry the warp was given: the fields stay within the actors' p95, speech aside
    assert set(clips["sad"]["range_ratio_given"]) == set(clips["sad"]["range_ratio"])
    assert clips["sad"]["range_ratio_given"]["brows"] <= 1.0
    assert summary["clips_within_range_given"] <= len(clips)
    assert summary["wavy_lip_frames"] == 0 and summary["crossed_lip_frames"] == 0
    sheet = cv2.imread(report["contact_sheets"][0])
    assert sheet is not None and sheet.shape[1] == 3 * 176


def test_evaluate_render_rejects_a_missing_folder_on_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(evaluate_app, ["render", "--portraits", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "portraits directory not found" in result.output


# -- portrait intake: bad input ---------------------------------------------------------------------------


def test_tiny_face_is_refused_with_its_size() -> None:
    canvas = np.full((600, 600, 3), 255, np.uint8)
    small = cv2.resize(data.astronaut(), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    canvas[50 : 50 + small.shape[0], 50 : 50 + small.shape[1]] = small
    with pytest.raises(InputError, match=r"only \d+ px across"):
        prepare_portrait(canvas)


def test_profile_or_half_face_is_refused() -> None:
    # half a face (cut at the nose, as a profile shows it): no frontal face to rig
    with pytest.raises(InputError, match="no human face"):
        prepare_portrait(np.ascontiguousarray(data.astronaut()[:, 240:]))
    # a mesh turned like a profile: the nose tip sits on one cheek edge
    points = prepare_portrait(data.astronaut(), size=256).landmarks.copy()
    assert abs(face_turn(points)) < 0.1
    points[1] = points[454] - 0.1 * (points[454] - points[234])
    assert face_turn(points) > 0.6


def test_grayscale_and_rgba_files_become_rgb(tmp_path: Path) -> None:
    astronaut = data.astronaut()
    Image.fromarray(astronaut).convert("L").save(tmp_path / "gray.png")
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (512, 512, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    clear = load_image(tmp_path / "clear.png")
    assert clear.shape == (512, 512, 3) and clear.min() == 255  # composited on white, not black
    assert prepare_portrait(gray, size=128).landmarks.shape == (468, 2)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height but holds one tiny compressed row: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    _png_header_only(tmp_path / "big.png", 9000, 9000)
    assert MAX_IMAGE_PIXELS < 9000 * 9000
    with pytest.raises(InputError, match="megapixel limit"):
        load_image(tmp_path / "big.png")
    _png_header_only(tmp_path / "bomb.png", 60000, 60000)  # beyond PIL's own bomb limit too
    with pytest.raises(InputError):
        load_image(tmp_path / "bomb.png")


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all" * 20)
    with pytest.raises(InputError, match="not an image file"):
        load_image(tmp_path / "junk.jpg")
    Image.fromarray(data.astronaut()).save(tmp_path / "whole.jpg")
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(InputError, match="could not be read"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.jpg")
