"""Region masks from MediaPipe landmarks (TIE-TFG eq. 8), as Hallo prepares its face and lip masks.

    lip        the outer lip contour, dilated: where speech moves the face
    expression the face oval: where emotion shows (brows, eyes, cheeks, mouth)
    pose       the face oval's box grown to take in hair, ears and neck: where head motion shows

Each mask is drawn at full image size, blurred so branches blend without seams, then area-resized to
every feature-map size of the UNet (64/32/16/8 at 512 px).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.render import topology as topo

_LIP_DILATE = 0.25  # lip box growth, in lip widths: the jaw and chin move with the lips
_POSE_GROW = 1.6  # pose box side, in face-oval box sides
_BLUR = 0.04  # Gaussian sigma, in image sides


def _blur(mask: np.ndarray, size: int) -> np.ndarray:
    sigma = max(0.5, _BLUR * size)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma)


def region_masks_from_landmarks(landmarks: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """{lip, expression, pose, face} float32 [size, size] masks in [0, 1].

    `face` is the unblurred face oval, the face locator's input.
    """
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape != (468, 2):
        raise ValueError(f"landmarks must have shape (468, 2), got {points.shape}")
    lips = points[list(topo.LIP_OUTER_UPPER + topo.LIP_OUTER_LOWER)]
    oval = points[list(topo.FACE_OVAL)]

    lip = np.zeros((size, size), np.float32)
    lo, hi = lips.min(axis=0), lips.max(axis=0)
    grow = _LIP_DILATE * float(hi[0] - lo[0])
    x0, y0 = np.floor(lo - grow).astype(int)
    x1, y1 = np.ceil(hi + grow).astype(int)
    lip[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1.0

    face = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(oval).astype(np.int32)), 1.0)

    pose = np.zeros((size, size), np.float32)
    centre = (oval.min(axis=0) + oval.max(axis=0)) / 2
    half = _POSE_GROW * float((oval.max(axis=0) - oval.min(axis=0)).max()) / 2
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    pose[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 1.0

    return {
        "lip": np.clip(_blur(lip, size), 0, 1),
        "expression": np.clip(_blur(face, size), 0, 1),
        "pose": np.clip(_blur(pose, size), 0, 1),
        "face": face,
    }


def mask_pyramid(
    masks: dict[str, np.ndarray], latent_size: int, levels: int, regions: tuple[str, ...]
) -> dict[int, dict[str, torch.Tensor]]:
    """{tokens per map: {region: [1, tokens, 1]}} for maps of latent_size, /2, /4, ... (`levels` sizes)."""
    pyramid: dict[int, dict[str, torch.Tensor]] = {}
    for level in range(levels):
        side = max(1, latent_size // 2**level)
        pyramid[side * side] = {
            region: F.interpolate(
                torch.from_numpy(masks[region])[None, None], size=(side, side), mode="area"
            ).reshape(1, side * side, 1)
            for region in regions
        }
    return pyramid
