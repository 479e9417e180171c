"""Real actors' face motion, measured the way the preview renderer moves a face.

    MEAD clips (one actor, one emotion each) -> face mesh per frame -> landmarks in the face frame of the
    actor's own neutral (inter-ocular units, head motion removed)

Both the naturalness measure (`models.evaluate.naturalness`) and the expression fields the renderer plays
(`prompts/expressions.json`) are built from these tracks, so the renderer and the measure share one frame.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.errors import InputError
from models.evaluate.judge import MEAD_MAP
from models.evaluate.metrics import similarity_align
from models.render.rig import FaceFrame
from models.vision.face import meshes


@dataclass(frozen=True)
class LandmarkTrack:
    """One clip's landmarks, aligned to its actor's neutral face."""

    speaker: str
    emotion: str  # the renderer's label (MEAD's "surprised" is "surprise")
    path: str
    points: np.ndarray  # (frames, 468, 2) face-frame coordinates of the neutral, in IOD
    neutral: np.ndarray  # (468, 2) the speaker's resting face in the same frame
    missed: int  # frames where the face mesh found no face

    @property
    def displacement(self) -> np.ndarray:
        """(frames, 468, 2) each landmark's move from the speaker's neutral, in IOD."""
        return self.points - self.neutral


def detect_mesh(image: np.ndarray) -> np.ndarray | None:
    """The largest face's mesh as (468, 3) pixels (x, y, and MediaPipe's z scaled like x), or None."""
    found = meshes(image)
    return np.concatenate([found[0][0], found[0][1][:, None]], axis=1).astype(np.float64) if found else None


def neutral_reference(frames: np.ndarray) -> np.ndarray:
    """The per-landmark median of meshes (frames, 468, 3), each aligned to a first median: the person's
    resting face (speech moves the mouth either way, and the median keeps the mid position)."""
    reference = np.median(frames, axis=0)
    for _ in range(2):
        reference = np.median(np.stack([similarity_align(f, reference) for f in frames]), axis=0)
    return np.asarray(reference)


def face_frame_track(frames: np.ndarray, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meshes (frames, 468, 3) aligned to the neutral mesh (468, 3), then both in the neutral's face frame
    (x, y in IOD): (track (frames, 468, 2), neutral (468, 2))."""
    frame = FaceFrame.from_landmarks(neutral[:, :2])
    aligned = [frame.normalise(similarity_align(f, neutral)[:, :2]) for f in frames]
    track = np.stack(aligned) if aligned else np.zeros((0, len(neutral), 2))
    return track, frame.normalise(neutral[:, :2])


def detect_track(images: Iterable[np.ndarray]) -> tuple[np.ndarray, int]:
    """Meshes (frames, 468, 3) of every frame where the face mesh finds a face, and the frames it missed."""
    found, missed = [], 0
    for image in images:
        points = detect_mesh(image)
        if points is None:
            missed += 1
            continue
        found.append(points)
    return (np.stack(found) if found else np.zeros((0, 468, 3))), missed


def read_mead(data_dir: Path, log: Callable[[str], None] = print) -> list[LandmarkTrack]:
    """Every clip of `data_dir/labels.csv` whose emotion the renderer knows, aligned per speaker to that
    speaker's neutral clip (MEAD's contempt has no renderer label and is skipped)."""
    from models.vision.pseudo_labels import read_frames

    labels = Path(data_dir) / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{data_dir} is not a MEAD folder: labels.csv is missing")
    with labels.open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if MEAD_MAP.get(r.get("emotion", ""))]
    raw: dict[tuple[str, str, str], tuple[np.ndarray, int]] = {}
    for row in rows:
        _fps, images = read_frames(Path(data_dir) / row["path"])
        points, missed = detect_track(images)
        raw[(row["speaker"], MEAD_MAP[row["emotion"]], row["path"])] = points, missed
        log(f"mead: {row['path']}: {len(points)} frames with a face, {missed} without")
    tracks = []
    for speaker in sorted({s for s, _, _ in raw}):
        neutral_frames = [pts for (s, e, _), (pts, _) in raw.items() if s == speaker and e == "neutral"]
        if not neutral_frames or not len(neutral_frames[0]):
            raise InputError(f"MEAD speaker {speaker} has no neutral clip with a face: it is the reference")
        neutral = neutral_reference(np.concatenate(neutral_frames))
        for (s, emotion, path), (pts, missed) in raw.items():
            if s == speaker:
                track, rest = face_frame_track(pts, neutral)
                tracks.append(LandmarkTrack(speaker, emotion, path, track, rest, missed))
    return tracks
