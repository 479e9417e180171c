"""Hallo's face-region and attention masks, from a MediaPipe face mesh.

    masks = hallo_masks(portrait.landmarks, portrait.size)
    masks.face_region  [3, S, S]       the face box, the face locator's input
    masks.full/face/lip  4 x [1, n*n]  n = S/8, S/16, S/32, S/64: Hallo's pose, face and lip weights

As Hallo's `get_mask` and `ImageProcessor.preprocess` build them: a box around the outer lip contour grown
2x and one around the face oval grown `face_expand_ratio`x (1.2 in Hallo's inference config), each drawn
at full size, shrunk to 64x64, Gaussian-blurred (51 px for the face, 31 for the lips) and stretched to
0..255. The pose ("full") mask is the blurred face inverted, the face mask the blurred face less the
blurred lips, the lip mask the blurred lips; each is resized to every UNet feature-map size. All
arithmetic stays in uint8 where Hallo's does (its masks pass through PNG files), so values match its.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from kernel.errors import InputError
from models.render import topology as topo

# Hallo's lip ids are the outer lip contour (both corners once); its silhouette ids are the face oval.
LIP_IDS = (*topo.LIP_OUTER_UPPER, *topo.LIP_OUTER_LOWER[1:-1])
FACE_IDS = topo.FACE_OVAL
LIP_EXPAND = 2.0
FACE_EXPAND = 1.2
LEVELS = 4  # feature maps at S/8, S/16, S/32, S/64
_BLUR_SIDE = 64  # masks are blurred at this size whatever the portrait size
_FACE_KERNEL = 51
_LIP_KERNEL = 31

# Hallo inverts through float and truncates ((1 - v/255) * 255 -> uint8); that is 255 - v less one for
# 50 of the 256 levels, so the table is built the same way rather than as 255 - v.
_INVERT = ((1.0 - np.arange(256) / 255.0) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class HalloMasks:
    """Hallo's mask inputs for one portrait of side S; every value in 0..1."""

    face_region: torch.Tensor  # [3, S, S] the unblurred face box, the face locator's input
    full: list[torch.Tensor]  # LEVELS x [1, n*n] pose weight: 1 - blurred face
    face: list[torch.Tensor]  # LEVELS x [1, n*n] expression weight: blurred face - blurred lips
    lip: list[torch.Tensor]  # LEVELS x [1, n*n] lip weight: blurred lips


def _box(points: np.ndarray, size: int, ratio: float) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the points' box, grown `ratio`x about its centre and shifted back inside the image.

    Integer steps as in Hallo's `expand_region`: the box corners are rounded, the centre and half sides
    floored.
    """
    lo, hi = np.round(points.min(axis=0)), np.round(points.max(axis=0))
    span: list[int] = []
    for axis in (0, 1):
        mid = (hi[axis] + lo[axis]) // 2
        half = (hi[axis] - lo[axis]) * ratio // 2
        start, stop = mid - half, mid + half
        if start < 0:
            start, stop = 0.0, stop - start
        if stop > size:
            start, stop = start - (stop - size), float(size)
        span += [round(start), round(stop)]
    return span[0], span[1], span[2], span[3]


def _rectangle(points: np.ndarray, size: int, ratio: float) -> np.ndarray:
    x0, x1, y0, y1 = _box(points, size, ratio)
    mask = np.zeros((size, size), np.uint8)
    # a box wider than the image has a negative start even after the shift; Hallo's slice would wrap
    # around there, this one stops at the edge
    mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 255
    return mask


def _blur(mask: np.ndarray, kernel: int) -> np.ndarray:
    small = cv2.resize(mask, (_BLUR_SIDE, _BLUR_SIDE))  # bilinear, as Hallo's blur_mask
    blurred = cv2.GaussianBlur(small, (kernel, kernel), 0)
    return np.asarray(cv2.normalize(blurred, np.empty_like(blurred), 0, 255, cv2.NORM_MINMAX))


def _pyramid(mask: np.ndarray, size: int) -> list[torch.Tensor]:
    """The uint8 mask resized to S/8 .. S/64 and flattened to [1, n*n] in 0..1.

    Hallo resizes with torchvision's Resize on a PIL image, which is PIL's antialiased bilinear resize.
    """
    image = Image.fromarray(mask)
    levels = []
    for level in range(LEVELS):
        side = size // (8 * 2**level)
        small = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
        levels.append(torch.from_numpy(small / 255.0).reshape(1, side * side))
    return levels


def hallo_masks(landmarks: np.ndarray, size: int, face_expand_ratio: float = FACE_EXPAND) -> HalloMasks:
    """Hallo's masks for a square portrait of side `size` (a multiple of 64) with these mesh points.

    `landmarks` are the 468 MediaPipe face-mesh points in the portrait's pixels (`Portrait.landmarks`).
    """
    if not isinstance(size, int | np.integer) or isinstance(size, bool) or size <= 0 or size % 64:
        raise InputError(f"mask size must be a positive multiple of 64 px (e.g. 512), got {size!r}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (468, 2):
        raise InputError(
            f"landmarks must be the 468 MediaPipe face-mesh points as (468, 2), got {points.shape}"
        )
    if not np.isfinite(points).all():
        raise InputError("landmarks contain NaN or infinite coordinates; detect the face again")
    if not (np.isfinite(face_expand_ratio) and face_expand_ratio > 0):
        raise InputError(
            f"face expand ratio must be a positive number (Hallo: 1.2), got {face_expand_ratio!r}"
        )

    size = int(size)
    lip_box = _rectangle(points[list(LIP_IDS)], size, LIP_EXPAND)
    face_box = _rectangle(points[list(FACE_IDS)], size, face_expand_ratio)
    face = _blur(face_box, _FACE_KERNEL)
    lip = _blur(lip_box, _LIP_KERNEL)
    region = torch.from_numpy(face_box.astype(np.float32) / 255.0)
    return HalloMasks(
        face_region=region[None].expand(3, size, size).contiguous(),
        full=_pyramid(_INVERT[face], size),
        face=_pyramid(cv2.subtract(face, lip), size),  # saturating: no negative weights
        lip=_pyramid(lip, size),
    )
