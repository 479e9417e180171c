"""Portrait intake: load an image, find a human face, crop it square and fit a 468-point face mesh.

A face that does not look human (an animal the detector fired on) is refused unless the caller allows it
(`models/vision/human.py` says how that is decided). The portrait keeps its whole source image and where
the crop was cut from it, so a renderer's frames can be pasted back (`models/render/framing.py`).

MediaPipe 0.10.21 is the last release that bundles its face detection and face mesh models, so it runs
offline. Its graphs are created lazily once per process (import costs ~0.5 s) and are guarded by one lock:
a MediaPipe graph must not process two images at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kernel.errors import EngineError, InputError
from kernel.jobs import MAX_PORTRAIT_PIXELS
from models.vision.human import human_cues

N_LANDMARKS = 468

# Detector confidences. The full-range model (1) is the main detector: it finds no face on the dog and cat
# portraits. The short-range model (0) also fires on close-up dog faces (0.72), so it only adds faces it is
# sure about, which rescues very large faces the full-range model misses.
_FULL_RANGE_MIN_SCORE = 0.5
_SHORT_RANGE_MIN_SCORE = 0.85
# Detection models run at 128-192 px internally; a smaller input only saves time.
_DETECT_MAX_SIDE = 1024

# Crop geometry in face-box sizes: ~2.5 boxes keeps the hair and the top of the shoulders.
_CROP_SCALE = 2.5
_CROP_MIN_SCALE = 1.7  # when the photo is too tight, shrink the margin down to this before padding
_CROP_DOWN_SHIFT = 0.12  # centre slightly below the box centre: the neck matters more than the sky

# Bad-input limits. A face under 64 px would be upscaled 3x or more into a blurred portrait; more than
# 64 megapixels is a decompression bomb or a scan, decoded at 3 bytes a pixel before anything is checked;
# a face turned further than `_MAX_TURN` (nose-to-cheek asymmetry, 0 frontal, 1 full profile) has one eye
# hidden, and the frontal face rig folds it.
MIN_FACE_PX = 64
MAX_IMAGE_PIXELS = MAX_PORTRAIT_PIXELS  # read from the header, before any pixel is decoded
_MAX_TURN = 0.6


@dataclass(frozen=True)
class CropBox:
    """Where a square crop was cut from its source image, in source pixels: top-left corner and side.
    Crop pixel (u, v) of a `size` px crop is source point (x0 + u * side / size, y0 + v * side / size)."""

    x0: float
    y0: float
    side: float


@dataclass
class Portrait:
    """A square RGB portrait and its face mesh, ready for a renderer."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (468, 2) float32, pixel coordinates (x, y) in `image`
    depth: np.ndarray | None = None  # (468,) float32 MediaPipe z in pixels (smaller = nearer), if known
    source: np.ndarray | None = None  # the whole (H, W, 3) uint8 RGB image `image` was cropped from
    crop: CropBox | None = None  # where in `source`; set together with it

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixel coordinates of the image it was found in."""

    x: float
    y: float
    width: float
    height: float
    score: float
    # the detector's keypoints (x, y): right eye, left eye, nose tip, mouth, right ear, left ear
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


class _MediaPipe:
    """Process-wide MediaPipe graphs, built on first use."""

    _lock = threading.Lock()
    _graphs: dict[str, Any] | None = None

    @classmethod
    def run(cls, name: str, rgb: np.ndarray) -> Any:
        with cls._lock:
            if cls._graphs is None:
                cls._graphs = cls._build()
            with _native_stderr_silenced():
                return cls._graphs[name].process(np.ascontiguousarray(rgb))

    @staticmethod
    def _build() -> dict[str, Any]:
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError(
                "mediapipe is not installed; install it with `pip install --no-deps mediapipe==0.10.21`"
            ) from exc
        with _native_stderr_silenced():
            return _build_graphs(face_detection, face_mesh)


def _build_graphs(face_detection: Any, face_mesh: Any) -> dict[str, Any]:
    return {
        "full_range": face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=_FULL_RANGE_MIN_SCORE
        ),
        "short_range": face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=_SHORT_RANGE_MIN_SCORE
        ),
        "mesh": face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=4, refine_landmarks=False, min_detection_confidence=0.5
        ),
    }


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side logs diagnostics (XNNPACK, projection warnings) straight to fd 2, which would
    break the CLI's one-line errors and progress display; its real failures still raise in Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, honouring EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"portrait image not found: {path} (check the path)")
    im: Image.Image  # the opened file, then its transposed / converted copies
    try:
        with Image.open(path) as im:
            # the header gives the size before any pixel is decoded
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"portrait image {path} is {im.width}x{im.height} px, more than the "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} megapixel limit: downscale it first"
                )
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                # composite transparency on white rather than on black
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError as exc:
        raise InputError(f"portrait {path} is not an image file (use JPEG, PNG or WebP)") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"portrait image {path} could not be read: {exc}") from exc
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 16:
        raise InputError(f"portrait image {path} is too small ({rgb.shape[1]}x{rgb.shape[0]} px)")
    return np.ascontiguousarray(rgb)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(image.max()) <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"portrait must be an RGB image of shape (H, W, 3), got {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def _iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    return inter / max(a.area + b.area - inter, 1e-6)


def detect_faces(image: np.ndarray) -> list[FaceBox]:
    """Human faces in an RGB image, largest first, in pixel coordinates of `image`."""
    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    boxes: list[FaceBox] = []
    for graph, min_score in (("full_range", _FULL_RANGE_MIN_SCORE), ("short_range", _SHORT_RANGE_MIN_SCORE)):
        result = _MediaPipe.run(graph, small)
        for det in result.detections or []:
            if det.score[0] < min_score:  # the graph's own threshold is not applied to its output
                continue
            rel = det.location_data.relative_bounding_box
            keypoints = tuple((k.x * w, k.y * h) for k in det.location_data.relative_keypoints)
            box = FaceBox(
                x=rel.xmin * w,
                y=rel.ymin * h,
                width=rel.width * w,
                height=rel.height * h,
                score=det.score[0],
                keypoints=keypoints,
            )
            if box.width > 1 and box.height > 1 and all(_iou(box, b) < 0.3 for b in boxes):
                boxes.append(box)
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def _meshes(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every face mesh in `rgb` as (xy pixels (468, 2), z pixels (468,)), largest first."""
    result = _MediaPipe.run("mesh", rgb)
    h, w = rgb.shape[:2]
    found = []
    for face in result.multi_face_landmarks or []:
        points = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
        xy = points[:N_LANDMARKS, :2] * np.array([w, h], dtype=np.float32)
        z = points[:N_LANDMARKS, 2] * w  # MediaPipe scales z like x
        found.append((xy, z))
    return sorted(found, key=lambda m: -float(np.prod(np.ptp(m[0], axis=0))))


def meshes(image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every face mesh in an RGB image as (xy pixels (468, 2), z pixels (468,)), largest first."""
    return _meshes(_as_rgb(image))


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """The 468 face-mesh points (x, y) in pixels of the largest face, or None if there is none."""
    found = _meshes(_as_rgb(image))
    return found[0][0] if found else None


def _crop_square(box: FaceBox, width: int, height: int) -> tuple[float, float, float]:
    """(x0, y0, side) of the crop around `box`; it stays inside the image unless the image is too small."""
    face = max(box.width, box.height)
    cx, cy = box.center
    cy += _CROP_DOWN_SHIFT * box.height
    side = _CROP_SCALE * face
    if side > min(width, height):
        side = max(float(min(width, height)), _CROP_MIN_SCALE * face)
    x0, y0 = cx - side / 2, cy - side / 2
    # slide the square back inside the image on each axis where it fits, rather than padding
    if side <= width:
        x0 = min(max(x0, 0.0), width - side)
    if side <= height:
        y0 = min(max(y0, 0.0), height - side)
    return x0, y0, side


def _crop_resize(rgb: np.ndarray, x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """Crop the square and resize it to `size`; any part outside the image is mirrored and blurred."""
    # 1. Downscale with area averaging first: warpAffine alone would alias large photos.
    pre = min(1.0, 2.0 * size / side)
    if pre < 1.0:
        rgb = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        x0, y0, side = x0 * pre, y0 * pre, side * pre
    s = size / side
    matrix = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)
    flags = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = cv2.warpAffine(rgb, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    # 2. Soften the mirrored padding so it reads as background, not as a second copy of the shoulders.
    inside = cv2.warpAffine(
        np.ones(rgb.shape[:2], np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    if float(inside.min()) < 0.999:
        feather = max(3, size // 40) | 1
        alpha = cv2.GaussianBlur(
            cv2.erode(inside, np.ones((feather, feather), np.uint8)), (feather, feather), 0
        )
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=size / 40)
        out = (out * alpha[..., None] + blurred * (1.0 - alpha[..., None])).round().astype(np.uint8)
    return np.ascontiguousarray(out)


def face_turn(landmarks: np.ndarray) -> float:
    """How far the face is turned: (d_right - d_left) / (d_right + d_left) of the nose tip's distances to
    the two cheek edges of the mesh; 0 frontal, about 0.3 three-quarter, towards +-1 in profile."""
    points = np.asarray(landmarks, dtype=np.float64)
    nose, right, left = points[1], points[234], points[454]
    d_right, d_left = float(np.linalg.norm(nose - right)), float(np.linalg.norm(nose - left))
    return (d_right - d_left) / max(d_right + d_left, 1e-6)


def prepare_portrait(
    image: np.ndarray, size: int = 512, face_index: int = 0, allow_non_human: bool = False
) -> Portrait:
    """Crop a square portrait of `size` px around a face (largest first) and fit the face mesh on it.

    A face that does not look human is refused unless `allow_non_human`; then it is animated anyway.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}")
    rgb = _as_rgb(image)
    faces = detect_faces(rgb)
    if not faces:
        raise InputError(
            "no human face found in portrait: use a photo or painting where one face is clearly visible "
            "and roughly frontal"
        )
    if not 0 <= face_index < len(faces):
        raise InputError(
            f"face_index {face_index} is out of range: the portrait has {len(faces)} face(s) "
            f"(valid: 0..{len(faces) - 1}, largest first)"
        )
    face = faces[face_index]
    if max(face.width, face.height) < MIN_FACE_PX:
        raise InputError(
            f"the face in the portrait is only {max(face.width, face.height):.0f} px across; at least "
            f"{MIN_FACE_PX} px is needed: use a larger or closer portrait"
        )
    x0, y0, side = _crop_square(face, rgb.shape[1], rgb.shape[0])
    crop = _crop_resize(rgb, x0, y0, side, size)
    # the crop may hold other faces too: keep the mesh nearest to where the chosen face landed
    cx, cy = faces[face_index].center
    scale = size / side
    expected = np.array([(cx - x0) * scale, (cy - y0) * scale], dtype=np.float32)
    meshes = _meshes(crop)
    found = min(meshes, key=lambda m: float(np.linalg.norm(m[0].mean(axis=0) - expected)), default=None)
    if found is None:
        raise InputError(
            "no human face found in portrait: a face was detected but no face mesh fits it; "
            "use a sharper, more frontal portrait"
        )
    xy, z = found
    if not allow_non_human:
        keypoints = None
        if face.keypoints:
            keypoints = (np.asarray(face.keypoints, dtype=np.float64) - (x0, y0)) * scale
        failures = human_cues(crop, xy, keypoints).failures()
        if failures:
            raise InputError(
                f"the face in the portrait does not look human ({'; '.join(failures)}): the renderer "
                "animates human faces and would distort it; use a portrait of a person, or set "
                "allow_non_human: true (--allow-non-human) to animate it anyway"
            )
    turn = face_turn(xy)
    if abs(turn) > _MAX_TURN:
        raise InputError(
            f"the face is turned too far to the side (turn {turn:+.2f}, limit {_MAX_TURN}): "
            "use a frontal or three-quarter portrait"
        )
    xy = np.clip(xy, 0.0, size - 1.0).astype(np.float32)
    return Portrait(
        image=crop,
        landmarks=xy,
        depth=(z - float(np.median(z))).astype(np.float32),
        source=rgb,
        crop=CropBox(x0, y0, side),
    )
