"""The human-face check (models/vision/human.py): a face that does not look human is refused with a
message that says what to do, and `allow_non_human` lets it through. No animal photo that MediaPipe
accepts ships with the tests, so the non-human cases move the astronaut's mesh or blank her image."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from skimage import data

from kernel.errors import InputError
from models.vision import face as face_module
from models.vision.face import Portrait, prepare_portrait
from models.vision.human import HumanCues, human_cues


@pytest.fixture(scope="module")
def astronaut() -> Portrait:
    return prepare_portrait(data.astronaut())


def test_a_human_face_passes_every_cue(astronaut: Portrait) -> None:
    cues = human_cues(astronaut.image, astronaut.landmarks, None)
    assert cues.human, cues.failures()
    assert 0.37 < cues.nose_drop < 1.0 and 0.84 < cues.eye_mouth < 1.7 and cues.haar_overlap >= 0.3


def test_a_snout_shaped_mesh_fails_the_geometry_cues(astronaut: Portrait) -> None:
    """Nose and mouth pulled up towards the eyes, as the mesh fitted the dog (0.26-0.33 and 0.72-0.81 eye
    distances), with the detector's keypoints left where a face detector put them."""
    points = astronaut.landmarks.astype(np.float64)
    eyes = (points[[33, 133, 159, 145]].mean(axis=0) + points[[263, 362, 386, 374]].mean(axis=0)) / 2
    keypoints = np.zeros((6, 2))
    keypoints[2], keypoints[3] = points[1], points[[13, 14]].mean(axis=0)
    squashed = eyes + (points - eyes) * np.array([1.0, 0.5])
    cues = human_cues(astronaut.image, squashed, keypoints)
    failures = " | ".join(cues.failures())
    assert "nose sits" in failures and "mouth sits" in failures and "disagree" in failures


def test_no_haar_face_fails_the_second_opinion(astronaut: Portrait) -> None:
    blank = np.full_like(astronaut.image, 128)
    cues = human_cues(blank, astronaut.landmarks, None)
    assert cues.haar_overlap == 0.0 and cues.failures() == [
        "OpenCV's human face detector finds no face there"
    ]


def test_a_non_human_face_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    dog_like = HumanCues(keypoint_offset=0.40, nose_drop=0.26, eye_mouth=0.72, haar_overlap=0.0)
    assert len(dog_like.failures()) == 4

    def seen(*_args: Any) -> HumanCues:
        return dog_like

    monkeypatch.setattr(face_module, "human_cues", seen)
    with pytest.raises(InputError, match="does not look human") as refused:
        prepare_portrait(data.astronaut())
    message = str(refused.value)
    assert "allow_non_human: true" in message and "--allow-non-human" in message
    assert "nose sits 0.26" in message
    allowed = prepare_portrait(data.astronaut(), allow_non_human=True)
    assert allowed.image.shape == (512, 512, 3)
    assert allowed.source is not None and allowed.crop is not None


def test_the_job_option_reaches_intake(tmp_path: Any) -> None:
    from kernel.jobs import parse_job
    from kernel.settings import Settings

    spec = parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "allow_non_human": True}, tmp_path)
    assert spec.options(Settings(output_dir=tmp_path)).allow_non_human is True
