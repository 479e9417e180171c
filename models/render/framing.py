"""Output framing: a renderer's square face frames pasted back into the whole portrait at an output size.

    crop frames (size x size) + the portrait's source image and crop box -> frames (width x height)

Renderers animate the square crop around the face; content teams deliver 16:9, 9:16 and square video.
`frame: portrait` shows the whole portrait at its own resolution and aspect, `frame: WxH` the largest
region of that aspect around the face. Everything outside the crop is the still portrait. The crop goes
back with the affine map it was cut with and is blended through a feathered mask: the preview renderer
pins the crop's border (nothing moves there), so where the mask fades the two images already agree and
there is no seam. The diffusion renderer does not pin its border; the feather hides its small drift there.

Built once per portrait (the still background, the mask, the map); a frame then costs one warp of the crop
and one blend over the crop's footprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from kernel.errors import InputError
from kernel.jobs import FRAME_CROP, FRAME_PORTRAIT, MAX_FRAME_SIDE, frame_size
from models.vision.face import CropBox, Portrait

_FEATHER = 0.05  # of the crop's side: the band where the crop fades into the still
_FACE_MARGIN = 0.1  # of the face mesh's extent, kept in view around it by `frame: WxH`


@dataclass(frozen=True)
class Region:
    """The part of the source image an output frame shows, in whole source pixels."""

    x0: int
    y0: int
    width: int
    height: int


def output_region(portrait: Portrait, frame: str) -> tuple[Region, tuple[int, int]]:
    """(region of the source, (width, height) of the output) for a frame option other than "crop".

    "portrait": the whole image, its sides rounded down to even numbers (H.264 needs them even) and scaled
    down to fit MAX_FRAME_SIDE if larger. "WxH": the largest region of that aspect, centred on the crop and
    slid inside the image; refused when the face would not fit in it.
    """
    source, crop = _framed(portrait)
    height, width = source.shape[:2]
    if frame == FRAME_PORTRAIT:
        scale = min(1.0, MAX_FRAME_SIDE / max(width, height))
        out = (_even(width * scale), _even(height * scale))
        if min(out) < 2:
            raise InputError(f"the portrait is too small to frame ({width}x{height} px)")
        return Region(0, 0, width, height), out
    size = frame_size(frame)
    if size is None:
        raise InputError(f"frame {frame!r} has no output region: the crop is the frame")
    aspect = size[0] / size[1]
    # the largest region of that aspect inside the image
    rw, rh = (round(height * aspect), height) if width / height > aspect else (width, round(width / aspect))
    rw, rh = max(1, min(rw, width)), max(1, min(rh, height))
    lo, hi = _face_extent(portrait)
    if np.any(hi - lo > (rw, rh)):
        raise InputError(
            f"frame {frame} cannot keep the face in view: that aspect fits only {rw}x{rh} px of this "
            f"{width}x{height} portrait, and the face spans {hi[0] - lo[0]:.0f}x{hi[1] - lo[1]:.0f} px; "
            "use frame: portrait or crop, an aspect closer to the portrait's, or a portrait with more room "
            "around the face"
        )
    x0 = _place(crop.x0 + crop.side / 2, rw, width, float(lo[0]), float(hi[0]))
    y0 = _place(crop.y0 + crop.side / 2, rh, height, float(lo[1]), float(hi[1]))
    return Region(x0, y0, rw, rh), size


def _face_extent(portrait: Portrait) -> tuple[np.ndarray, np.ndarray]:
    """The face mesh's bounding box in source pixels (forehead to chin, cheek to cheek)."""
    _, crop = _framed(portrait)
    points = crop_to_source(np.asarray(portrait.landmarks, dtype=np.float64), crop, portrait.size)
    return points.min(axis=0), points.max(axis=0)


def _place(centre: float, length: int, limit: int, lo: float, hi: float) -> int:
    """Start of a `length` span centred on `centre`, slid to keep [lo, hi] (with a margin where it fits)
    inside it, then inside [0, limit]."""
    start = centre - length / 2
    margin = min(_FACE_MARGIN * (hi - lo), max(0.0, (length - (hi - lo)) / 2))
    start = min(max(start, hi + margin - length), lo - margin)
    return int(min(max(round(start), 0), limit - length))


def crop_to_source(points: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Crop pixel coordinates (x, y) of a `size` px crop as source pixel coordinates."""
    return np.asarray(points, dtype=np.float64) * (crop.side / size) + (crop.x0, crop.y0)


class Framer:
    """Pastes frames of one portrait's crop into its source image at one output size."""

    def __init__(self, portrait: Portrait, frame: str, feather: float = _FEATHER) -> None:
        source, crop = _framed(portrait)
        region, (width, height) = output_region(portrait, frame)
        self.size = (width, height)
        self.crop_size = portrait.size
        k = width / region.width  # output px per source px (the same vertically, up to rounding)
        ky = height / region.height
        # 1. The still background: the region resized once.
        patch = source[region.y0 : region.y0 + region.height, region.x0 : region.x0 + region.width]
        interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        self.still = np.ascontiguousarray(cv2.resize(patch, (width, height), interpolation=interpolation))
        # 2. The crop's map into the output, in cv2.resize's pixel-centre convention, so the pasted crop
        # lands exactly on the still it was cut from: X = u * a + t.
        a = crop.side / portrait.size * k
        ay = crop.side / portrait.size * ky
        tx = (crop.x0 - region.x0 + 0.5) * k - 0.5
        ty = (crop.y0 - region.y0 + 0.5) * ky - 0.5
        # the crop's footprint in the output, clipped: only there is anything warped or blended
        x_lo, y_lo = max(0, int(np.floor(tx))), max(0, int(np.floor(ty)))
        x_hi = min(width, int(np.ceil(tx + a * portrait.size)) + 1)
        y_hi = min(height, int(np.ceil(ty + ay * portrait.size)) + 1)
        if x_lo >= x_hi or y_lo >= y_hi:
            raise InputError(f"frame {frame}: the face crop lies outside the framed region")
        self.roi = (slice(y_lo, y_hi), slice(x_lo, x_hi))
        self._roi_size = (x_hi - x_lo, y_hi - y_lo)
        # a crop shrunk below half size is area-averaged first, or the warp alone would alias it
        self._pre: tuple[int, int] | None = None
        scale_x, scale_y = a, ay
        if min(a, ay) < 0.5:
            side = max(2, round(portrait.size * min(a, ay) * 2))
            self._pre = (side, side)
            scale_x, scale_y = a * portrait.size / side, ay * portrait.size / side
        self._matrix = np.array([[scale_x, 0.0, tx - x_lo], [0.0, scale_y, ty - y_lo]], dtype=np.float64)
        # 3. The feathered mask: 1 inside, fading to 0 over a band at the crop's border, where nothing moves.
        n = portrait.size
        band = max(1.0, feather * n)
        edge = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n)).astype(np.float32)
        ramp = np.clip(edge / band, 0.0, 1.0)
        ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no kink where the band meets the inside
        mask = np.minimum(ramp[:, None], ramp[None, :])
        if self._pre is not None:
            mask = cv2.resize(mask, self._pre, interpolation=cv2.INTER_AREA)
        self.alpha = self._warp(mask, cv2.INTER_LINEAR)
        # the mask is 1 on a rectangle and fades on the ring around it: copy the one, blend only the other
        full = self.alpha >= 1.0 - 1e-6
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        h, w = self.alpha.shape
        i0, i1 = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (h, h)
        j0, j1 = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (w, w)
        self._inner = (slice(i0, i1), slice(j0, j1))
        ring = [
            (slice(0, i0), slice(0, w)),
            (slice(i1, h), slice(0, w)),
            (slice(i0, i1), slice(0, j0)),
            (slice(i0, i1), slice(j1, w)),
        ]
        self._ring = [
            (where, np.ascontiguousarray(self.alpha[where]), np.ascontiguousarray(1.0 - self.alpha[where]))
            for where in ring
            if self.alpha[where].size
        ]

    def _warp(self, image: np.ndarray, flags: int) -> np.ndarray:
        return cv2.warpAffine(
            image, self._matrix, self._roi_size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One crop frame, (size, size, 3) uint8, as an output frame (height, width, 3) uint8."""
        if frame.shape != (self.crop_size, self.crop_size, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"framing expects ({self.crop_size}, {self.crop_size}, 3) uint8 crop frames, got "
                f"{frame.shape} {frame.dtype}"
            )
        source = frame if self._pre is None else cv2.resize(frame, self._pre, interpolation=cv2.INTER_AREA)
        warped = self._warp(np.ascontiguousarray(source), cv2.INTER_LINEAR)
        out = self.still.copy()
        footprint = out[self.roi]
        footprint[self._inner] = warped[self._inner]
        for where, alpha, beta in self._ring:
            # blendLinear: (alpha * crop + beta * still) / (alpha + beta + 1e-5), exact to a grey level
            footprint[where] = cv2.blendLinear(
                np.ascontiguousarray(warped[where]), np.ascontiguousarray(footprint[where]), alpha, beta
            )
        return out

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self(frame)


def framer_for(portrait: Portrait, frame: str) -> Framer | None:
    """The portrait's Framer for a frame option; None for "crop", where a renderer's frames are the video."""
    return None if frame == FRAME_CROP else Framer(portrait, frame)


def _framed(portrait: Portrait) -> tuple[np.ndarray, CropBox]:
    if portrait.source is None or portrait.crop is None:
        raise InputError(
            "this portrait has no source image and crop box to frame: prepare it with prepare_portrait"
        )
    return portrait.source, portrait.crop


def _even(value: float) -> int:
    return int(value) // 2 * 2
