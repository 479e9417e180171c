"""Is a rendered expression within what human faces do? Two checks on face-mesh landmarks.

    landmarks per frame (face frame of the person's neutral, IOD) -> displacement per region
        -> ratio to real actors' p95 for the same emotion (prompts/expression_range.json; <= 1 is human)
    lip contours per frame -> self-intersections and ripples beyond the rest shape ("wavy lip")

The real range comes from MEAD actors measured the same way (`models.evaluate.real_faces`, built by
bench/face_tables.py), so a rendered clip and a real one are compared in one frame and one unit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.render import topology as topo
from models.render.expressions import RANGE_FILE

# Face regions as the issue names them; each is scored by the mean move of its landmarks.
REGIONS = topo.FACE_REGIONS
LIP_CONTOURS: dict[str, tuple[int, ...]] = {
    "outer_upper": topo.LIP_OUTER_UPPER,
    "outer_lower": topo.LIP_OUTER_LOWER,
    "inner_upper": topo.LIP_INNER_UPPER,
    "inner_lower": topo.LIP_INNER_LOWER,
}
# A lip ripples when it strays from a smooth curve (a cubic along its length) by more than it does at rest.
# The most real MEAD frames ever stray beyond their actor's rest is 0.028 IOD (1,480 frames, talking, with
# every emotion); 1.3.0's caricatured fear and sad lips strayed 0.03-0.06.
RIPPLE_LIMIT_IOD = 0.03
_RESAMPLED = 21  # points per lip contour, evenly along its length (the mesh has 11, unevenly spaced)


def region_displacement(points: np.ndarray, neutral: np.ndarray) -> dict[str, np.ndarray]:
    """Per region, each frame's mean landmark move from the neutral (IOD): points (frames, 468, 2)."""
    moves = np.linalg.norm(np.asarray(points) - np.asarray(neutral)[None], axis=2)  # (frames, 468)
    return {name: moves[:, list(idx)].mean(axis=1) for name, idx in REGIONS.items()}


def summarise_displacement(per_region: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Median and p95 over frames, per region."""
    return {
        name: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95))}
        for name, v in per_region.items()
        if len(v)
    }


@lru_cache(maxsize=1)
def real_range(path: Path = RANGE_FILE) -> dict[str, Any]:
    """The real actors' table: {"emotions": {emotion: {region: {"median", "p95"}}}, ...}."""
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def range_ratio(
    per_region: dict[str, np.ndarray], emotion: str, table: dict[str, Any] | None = None
) -> dict[str, float]:
    """Per region, the clip's p95 move over the real actors' p95 for the same emotion (<= 1: human)."""
    real = (table or real_range())["emotions"][emotion]
    return {
        name: float(np.percentile(v, 95)) / real[name]["p95"]
        for name, v in per_region.items()
        if len(v) and name in real
    }


def resample(contour: np.ndarray, points: int = _RESAMPLED) -> np.ndarray:
    """The polyline at `points` evenly spaced positions along its length."""
    pts = np.asarray(contour, dtype=np.float64)
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    if along[-1] <= 1e-9:
        return pts[:1].repeat(points, axis=0)
    at = np.linspace(0.0, along[-1], points)
    return np.stack([np.interp(at, along, pts[:, k]) for k in range(pts.shape[1])], axis=1)


def ripple(contour: np.ndarray) -> float:
    """How far a lip contour strays from the smooth curve through it (the best cubic along its length,
    which a lip's bow, droop or smile all are): the height of its waves, in the contour's units.

    Counting curvature sign changes was tried first: on the face mesh's noisy lips the count swung with
    the noise threshold (real MEAD frames flagged 0 to 239 of 1,480 for thresholds of 8-15 degrees), so
    the wave is measured by its size instead."""
    pts = resample(contour)
    t = np.linspace(-1.0, 1.0, len(pts))
    basis = np.stack([t**k for k in range(4)], axis=1)
    smooth = basis @ np.linalg.lstsq(basis, pts, rcond=None)[0]
    return float(np.linalg.norm(pts - smooth, axis=1).max())


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    o1, o2 = orient(p1, p2, q1), orient(p1, p2, q2)
    o3, o4 = orient(q1, q2, p1), orient(q1, q2, p2)
    return o1 * o2 < 0 and o3 * o4 < 0  # a proper crossing; touching lips (inner contours meet) is fine


def self_intersections(loop: np.ndarray) -> int:
    """Proper crossings between non-adjacent edges of a closed polygon (n, 2)."""
    pts = np.asarray(loop, dtype=np.float64)
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    count = 0
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # neighbours through the closing edge
            if _segments_cross(*edges[i], *edges[j]):
                count += 1
    return count


@dataclass(frozen=True)
class LipCheck:
    frames: int
    wavy_frames: int  # a lip contour ripples beyond its rest shape by more than real lips do
    crossed_frames: int  # a lip outline crosses itself, or the upper lip passes below the lower one

    @property
    def bad_frames(self) -> int:
        return max(self.wavy_frames, self.crossed_frames)


def lip_check(points: np.ndarray, rest: np.ndarray) -> LipCheck:
    """Check every frame's lips (points (frames, 468, 2), face frame in IOD) against the same face at rest
    (468, 2): a ripple beyond the rest's by RIPPLE_LIMIT_IOD is a wavy lip; an outline that crosses itself,
    or an upper inner-lip point clearly below its lower partner, is a crossed one."""
    rest_ripple = {name: ripple(rest[list(idx)]) for name, idx in LIP_CONTOURS.items()}
    outer = list(topo.LIP_OUTER_UPPER) + list(reversed(topo.LIP_OUTER_LOWER[1:-1]))
    wavy = crossed = 0
    for frame in np.asarray(points):
        excess = max(ripple(frame[list(idx)]) - rest_ripple[name] for name, idx in LIP_CONTOURS.items())
        if excess > RIPPLE_LIMIT_IOD:
            wavy += 1
        upper, lower = frame[list(topo.LIP_INNER_UPPER[1:-1])], frame[list(topo.LIP_INNER_LOWER[1:-1])]
        # y points down: an upper inner-lip point clearly below its lower partner is lips passing through
        through = bool(np.any(upper[:, 1] - lower[:, 1] > 0.02))
        if through or self_intersections(frame[outer]) > 0:
            crossed += 1
    return LipCheck(frames=len(points), wavy_frames=wavy, crossed_frames=crossed)
