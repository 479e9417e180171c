"""Is a detected face a human's? Three cheap cues, so an animal is refused instead of animated as a person.

MediaPipe's face models are trained on people, but they do fire on some animals: its short-range detector
scores the shared dog portrait 0.72 and its face mesh then fits it; an owner found a monkey accepted. The
rig would animate such a face as a human one. Each cue reuses what intake computed already (the detector's
keypoints, the mesh on the crop), plus one OpenCV Haar cascade on a small, eye-levelled copy of the crop:

- agreement: the detector's nose and mouth keypoints and the mesh's, in inter-ocular distances (IOD); the
  two models disagree where a face is not shaped like the human faces both learned;
- proportions: how far the nose tip and the mouth sit below the eyes, in IOD (a muzzle or a snout moves
  them);
- a second opinion: OpenCV's Haar face cascades, trained on human faces only, frontal then profile.

A face passes only if every cue does. Thresholds sit between what was measured on 72 human faces (the 9
human shared portraits, among them two paintings, a drawing and a statue; the astronaut; 32 MEAD frames
with acted expressions; 30 rotated and greyscale copies) and on the dog and 3 copies of it, forced through
the detector (`bench/human_face.py`). Every human passed every cue; the dog failed all four. No monkey was
available, so how well this catches one is not measured: a face that passes is not proven human.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Measured (bench/results/human_face.json): humans up to 0.23 IOD, the dog 0.40 and more.
_MAX_KEYPOINT_OFFSET = 0.30
# Nose tip below the eye centre: humans 0.42-0.76 IOD, the dog 0.26-0.33. Eye centre to mouth centre:
# humans 0.88-1.33 (an open mouth raises it), the dog 0.72-0.81. The upper limits are guesses with room.
_NOSE_DROP = (0.37, 1.00)
_EYE_MOUTH = (0.84, 1.70)
# Best overlap (IoU) of a Haar face with where the mesh says the face is: humans 0.53-0.81, the dog 0.
_MIN_HAAR_OVERLAP = 0.30

_LEVELLED = 256  # px side of the eye-levelled grey copy the cascades scan
_LEVELLED_IOD = 58.0  # px between the eyes there: a face about 128 px wide, well inside the cascades' range
_EYES_AT = (128.0, 110.0)  # where the eye centre lands in that copy
# where the cascades' box should be, in IOD from the eye centre (left, top, side): measured on the humans
_EXPECTED_BOX = (-1.1, -0.6, 2.2)
# face-mesh indices (models/render/topology.py names them; vision must not import the renderer)
_EYE_R = (33, 133, 159, 145)  # corners and lid middles
_EYE_L = (263, 362, 386, 374)
_NOSE_TIP = 1
_MOUTH = (13, 14)  # inner lips at the centre


@dataclass(frozen=True)
class HumanCues:
    """What the check measured on one face; `failures` says which cues call it not human, and why."""

    keypoint_offset: float | None  # IOD; None when the detector gave no keypoints
    nose_drop: float  # IOD
    eye_mouth: float  # IOD
    haar_overlap: float  # IoU with the expected face box, 0 when no cascade fires there

    def failures(self) -> list[str]:
        found = []
        if self.keypoint_offset is not None and self.keypoint_offset > _MAX_KEYPOINT_OFFSET:
            found.append(
                f"the face detector and the face mesh disagree by {self.keypoint_offset:.2f} eye distances "
                f"(human faces: under {_MAX_KEYPOINT_OFFSET})"
            )
        if not _NOSE_DROP[0] <= self.nose_drop <= _NOSE_DROP[1]:
            found.append(
                f"the nose sits {self.nose_drop:.2f} eye distances below the eyes "
                f"(human faces: {_NOSE_DROP[0]}-{_NOSE_DROP[1]})"
            )
        if not _EYE_MOUTH[0] <= self.eye_mouth <= _EYE_MOUTH[1]:
            found.append(
                f"the mouth sits {self.eye_mouth:.2f} eye distances below the eyes "
                f"(human faces: {_EYE_MOUTH[0]}-{_EYE_MOUTH[1]})"
            )
        if self.haar_overlap < _MIN_HAAR_OVERLAP:
            found.append("OpenCV's human face detector finds no face there")
        return found

    @property
    def human(self) -> bool:
        return not self.failures()


class _Cascades(threading.local):
    """OpenCV's bundled Haar cascades, loaded once per thread (a classifier is not safe to share)."""

    def __init__(self) -> None:
        root = cv2.data.haarcascades  # type: ignore[attr-defined]  # opencv's stubs lack cv2.data
        self.frontal = cv2.CascadeClassifier(root + "haarcascade_frontalface_alt2.xml")
        self.profile = cv2.CascadeClassifier(root + "haarcascade_profileface.xml")
        if self.frontal.empty() or self.profile.empty():  # pragma: no cover - depends on the install
            raise RuntimeError(f"OpenCV's Haar cascades are missing from {root}")


_cascades: _Cascades | None = None
_cascades_lock = threading.Lock()


def _classifiers() -> _Cascades:
    global _cascades
    with _cascades_lock:
        if _cascades is None:
            _cascades = _Cascades()
        return _cascades


def human_cues(crop: np.ndarray, landmarks: np.ndarray, keypoints: np.ndarray | None) -> HumanCues:
    """The cues on a square RGB crop, its 468 mesh points and the detector's 6 keypoints (right eye, left
    eye, nose tip, mouth, right ear, left ear), all in pixels of `crop`."""
    points = np.asarray(landmarks, dtype=np.float64)
    eye_r, eye_l = points[list(_EYE_R)].mean(axis=0), points[list(_EYE_L)].mean(axis=0)
    iod = max(float(np.linalg.norm(eye_l - eye_r)), 1e-6)
    eyes = (eye_r + eye_l) / 2
    nose, mouth = points[_NOSE_TIP], points[list(_MOUTH)].mean(axis=0)
    offset = None
    if keypoints is not None and len(keypoints) >= 4:
        detected = np.asarray(keypoints, dtype=np.float64)[2:4]
        offset = float(np.max(np.linalg.norm(detected - np.stack([nose, mouth]), axis=1))) / iod
    return HumanCues(
        keypoint_offset=offset,
        nose_drop=float(np.linalg.norm(nose - eyes)) / iod,
        eye_mouth=float(np.linalg.norm(mouth - eyes)) / iod,
        haar_overlap=_haar_overlap(crop, eye_r, eye_l, iod),
    )


def _haar_overlap(crop: np.ndarray, eye_r: np.ndarray, eye_l: np.ndarray, iod: float) -> float:
    """Best IoU between a Haar face and the box where the mesh puts the face, on a grey copy of the crop
    rotated so the eyes are level (the cascades want upright faces) and scaled to a fixed eye distance."""
    angle = float(np.degrees(np.arctan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])))
    scale = _LEVELLED_IOD / iod
    centre = (eye_r + eye_l) / 2
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += np.array(_EYES_AT) - centre
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    levelled = cv2.warpAffine(grey, matrix, (_LEVELLED, _LEVELLED), borderMode=cv2.BORDER_REPLICATE)
    left, top, side = (v * _LEVELLED_IOD for v in _EXPECTED_BOX)
    expected = (_EYES_AT[0] + left, _EYES_AT[1] + top, side, side)
    cascades = _classifiers()
    best = 0.0
    # frontal first (almost every portrait); the profile cascade, both ways round, for turned faces
    for cascade, image in (
        (cascades.frontal, levelled),
        (cascades.profile, levelled),
        (cascades.profile, levelled[:, ::-1]),
    ):
        boxes = cascade.detectMultiScale(
            np.ascontiguousarray(image), scaleFactor=1.1, minNeighbors=3, minSize=(80, 80), maxSize=(220, 220)
        )
        mirrored = image is not levelled
        best = max([best] + [_iou(_unmirror(box, mirrored), expected) for box in boxes])
        if best >= _MIN_HAAR_OVERLAP:
            return best
    return best


def _unmirror(box: Sequence[int], mirrored: bool) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return (_LEVELLED - x - w, y, w, h) if mirrored else (x, y, w, h)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-6)
