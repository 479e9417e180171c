"""Shading painted over the warped frame: the mouth interior when the lips part, the eye white that a raised
upper lid bares, and expression wrinkles.

A jaw drop that only stretches the lips looks grotesque (../shared/GUIDE.md, calibration), so whenever the
inner lips are apart the gap is painted: a dark cavity, the upper teeth just under the upper lip, a hint of
lower teeth and tongue when the mouth is wide open. Colours come from the portrait itself (its lips and
skin, its saturation), so a greyscale sketch gets grey teeth and a dim painting gets dim ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from models.render import topology as topo
from models.render.tables import FacsTable

_WARM_WHITE = np.array([238.0, 232.0, 216.0], dtype=np.float32)
_SHADOW_TINT = np.array([0.8, 1.0, 1.12], dtype=np.float32)
_CREASE_SHOULDER = 2.5  # the lit skin beside a crease spreads this many times wider than its shadow
_CREASE_LIGHT = 0.8  # and takes back this share of the shadow's darkening


def _smoothstep(edge0: float, edge1: float, x: np.ndarray | float) -> np.ndarray:
    """0 at edge0, 1 at edge1 (either order), smooth in between."""
    span = edge1 - edge0
    if abs(span) < 1e-6:
        span = 1e-6
    t = np.clip((np.asarray(x, dtype=np.float32) - edge0) / span, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _region_median(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    pixels = image[mask > 0]
    if len(pixels) < 4:
        return np.array([150.0, 110.0, 100.0], dtype=np.float32)
    return np.median(pixels, axis=0).astype(np.float32)


def close_mouth_texture(image: np.ndarray, landmarks: np.ndarray, ey: np.ndarray) -> np.ndarray:
    """A copy of `image` whose open mouth (teeth, cavity) is filled with lip texture and a parting line.

    Closing an open portrait mouth squeezes its interior into a thin band; squeezed teeth read as a
    grimace. With the interior replaced by lips, the squeezed band reads as lips meeting. Frames that
    open the mouth paint their own interior over it.
    """
    upper = landmarks[list(topo.LIP_INNER_UPPER)]
    lower = landmarks[list(topo.LIP_INNER_LOWER)]
    polygon = np.vstack([upper - 2.0 * ey, lower[::-1] + 1.5 * ey])  # the dark edge along the teeth too
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int) - 8, 0)
    x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 8, [w, h])
    roi = np.ascontiguousarray(image[y0:y1, x0:x1])
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon - [x0, y0]).astype(np.int32)], 255)
    filled = cv2.inpaint(roi, mask, 4, cv2.INPAINT_TELEA)
    # the line where the lips meet, half way between the inner contours
    middle = (upper + lower) / 2 - [x0, y0]
    line: np.ndarray = np.zeros(roi.shape[:2], np.float32)
    cv2.polylines(line, [np.round(middle * 4).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA, 2)
    line = cv2.GaussianBlur(line, (5, 5), 1.0)
    filled = (filled.astype(np.float32) * (1.0 - 0.4 * line[..., None])).clip(0, 255).astype(np.uint8)
    out = image.copy()
    out[y0:y1, x0:x1] = filled
    return out


class MouthPainter:
    """Paints the mouth interior into frames of one portrait."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, style: dict[str, float]) -> None:
        """`style`: the teeth_* entries of prompts/visemes.yaml's `mouth` section."""
        self.style = style
        lips = np.vstack([landmarks[list(topo.LIP_OUTER_LOWER)], landmarks[list(topo.LIP_INNER_LOWER[::-1])]])
        lip = _region_median(image, lips)
        cheek_l = landmarks[[117, 118, 101, 36, 205, 187, 123]]
        cheek_r = landmarks[[346, 347, 330, 266, 425, 411, 352]]
        skin = (_region_median(image, cheek_l) + _region_median(image, cheek_r)) / 2
        # how colourful the face is: 0 for a greyscale photo or sketch
        swatch = np.array([[skin.clip(0, 255)], [lip.clip(0, 255)]], dtype=np.uint8)
        hsv = cv2.cvtColor(swatch, cv2.COLOR_RGB2HSV)
        colourful = float(np.clip(hsv[:, 0, 1].max() / 90.0, 0.0, 1.0))
        skin_lum = float(skin @ np.array([0.299, 0.587, 0.114]))

        def grade(rgb: np.ndarray) -> np.ndarray:
            grey = float(rgb @ np.array([0.299, 0.587, 0.114]))
            return (grey + (rgb - grey) * colourful).astype(np.float32)

        teeth_lum = float(np.clip(skin_lum * 0.55 + 115.0, 140.0, 232.0))
        self.colourful = colourful
        self.teeth = grade(_WARM_WHITE * teeth_lum / 232.0 * style["teeth_light"])
        self.cavity = grade(lip * np.array([0.40, 0.22, 0.22]))
        self.deep = grade(lip * np.array([0.15, 0.07, 0.07]))
        self.tongue = grade(lip * 0.62 + np.array([18.0, -4.0, -4.0]))

    def paint(
        self,
        frame: np.ndarray,
        points: np.ndarray,
        ex: np.ndarray,
        ey: np.ndarray,
        iod: float,
        teeth_bared: float = 0.0,
    ) -> None:
        """Paint in place where the inner lips of `points` (target landmarks, px) are apart.

        The upper teeth show `teeth_max` below the upper lip, plus `teeth_bared` (IOD) when an action unit
        raises the lip: a dropped jaw opens the mouth under the teeth, it does not bare more of them."""
        upper = points[list(topo.LIP_INNER_UPPER)]
        lower = points[list(topo.LIP_INNER_LOWER)]
        center = (points[topo.MOUTH_CORNERS[0]] + points[topo.MOUTH_CORNERS[1]]) / 2
        # the mouth in its own (u along the eye line, v down) coordinates
        up_u, up_v = (upper - center) @ ex, (upper - center) @ ey
        lo_u, lo_v = (lower - center) @ ex, (lower - center) @ ey
        gap_mid = float(np.interp(0.0, lo_u, lo_v) - np.interp(0.0, up_u, up_v))
        strength = float(_smoothstep(0.8, 3.0, gap_mid))
        if strength <= 0.0:
            return

        # 1. Region of interest around the gap.
        box = np.vstack([upper, lower])
        h, w = frame.shape[:2]
        x0, y0 = np.floor(box.min(axis=0) - 3).astype(int)
        x1, y1 = np.ceil(box.max(axis=0) + 3).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rel_x, rel_y = xs - center[0], ys - center[1]
        u = rel_x * ex[0] + rel_y * ex[1]
        v = rel_x * ey[0] + rel_y * ey[1]

        # 2. Inside the gap: between the two inner-lip curves, anti-aliased over one pixel.
        v_top = np.interp(u, up_u, up_v).astype(np.float32)
        v_bot = np.interp(u, lo_u, lo_v).astype(np.float32)
        gap = np.maximum(v_bot - v_top, 1e-3)
        half = max(float(min(up_u.max(), lo_u.max()) - max(up_u.min(), lo_u.min())) / 2, 1.0)
        inside = np.clip(np.minimum(v - v_top, v_bot - v) + 0.5, 0.0, 1.0)
        inside *= np.clip(half - np.abs(u), 0.0, 1.0)
        depth = np.clip((v - v_top) / gap, 0.0, 1.0)  # 0 under the upper lip, 1 on the lower lip

        # 3. Cavity: darkest at the back, a little lighter towards the lower lip.
        paint = self.deep + (self.cavity - self.deep) * depth[..., None] ** 0.7

        # 4. Tongue low in the mouth once it is open enough to see.
        open_iod = gap_mid / iod
        if open_iod > 0.08:
            tongue = _smoothstep(0.45, 0.85, depth) * _smoothstep(half * 0.75, half * 0.35, np.abs(u))
            tongue *= float(_smoothstep(0.08, 0.2, open_iod)) * 0.8
            paint += (self.tongue - paint) * tongue[..., None]

        # 5. Upper teeth right under the upper lip, across the front of the mouth only.
        style = self.style
        teeth_h = min(style["teeth_share"] * gap_mid, (style["teeth_max"] + teeth_bared) * iod)
        below_lip = v - v_top
        front_edge = style["teeth_front"]
        front = _smoothstep(half * front_edge, half * (front_edge - 0.26), np.abs(u))
        teeth = _smoothstep(teeth_h + 0.8, teeth_h - 0.8, below_lip) * (below_lip > -1.0) * front
        shade = 0.72 + 0.28 * _smoothstep(0.0, 0.45 * teeth_h + 0.5, below_lip)  # shadow of the upper lip
        shade *= 1.0 - 0.1 * _smoothstep(0.6 * teeth_h, teeth_h, below_lip)  # translucent biting edges
        shade *= 0.82 + 0.18 * _smoothstep(half * 0.75, half * 0.1, np.abs(u))  # side teeth sit deeper
        incisor = 0.135 * iod  # faint gaps between the front teeth
        seams = np.abs(((u + incisor / 2) % incisor) - incisor / 2) if incisor > 4 else np.full_like(u, 9.0)
        shade *= 1.0 - 0.12 * _smoothstep(1.2, 0.0, seams)
        paint += (self.teeth * shade[..., None] - paint) * teeth[..., None]

        # 6. A sliver of lower teeth when the mouth is wide open.
        low_h = float(np.clip(0.3 * (open_iod - 0.2), 0.0, 0.04)) * iod
        if low_h > 0.5:
            above_lip = v_bot - v
            low = _smoothstep(low_h + 0.8, low_h - 0.8, above_lip) * (above_lip > -1.0)
            low *= _smoothstep(half * 0.55, half * 0.25, np.abs(u))
            paint += (self.teeth * 0.7 - paint) * low[..., None]

        alpha = cv2.GaussianBlur(inside * strength, (3, 3), 0.6)[..., None]
        paint = cv2.GaussianBlur(paint, (3, 3), 0.6)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + (paint - roi) * alpha, 0, 255).astype(np.uint8)


class WrinklePainter:
    """Darkens expression lines (brow furrows, nasolabial folds, forehead lines) by AU activation."""

    def __init__(self, facs: FacsTable) -> None:
        self.unit_wrinkles = [
            (i, unit.wrinkles) for i, unit in enumerate(facs.units.values()) if unit.wrinkles
        ]

    def paint(
        self,
        frame: np.ndarray,
        points: np.ndarray,
        units: np.ndarray,
        ex: np.ndarray,
        ey: np.ndarray,
        iod: float,
        colourful: float = 1.0,
    ) -> None:
        """Darken the wrinkles of active AUs in place; `colourful` 0 keeps a greyscale portrait grey."""
        lines = []
        for i, wrinkles in self.unit_wrinkles:
            act = float(units[i])
            if act < 0.03:
                continue
            for wrinkle in wrinkles:
                path = np.array(
                    [points[p.landmark] + iod * (p.offset[0] * ex + p.offset[1] * ey) for p in wrinkle.path]
                )
                lines.append((path, min(act, 1.5) * wrinkle.depth, wrinkle.width * iod))
        if not lines:
            return
        h, w = frame.shape[:2]
        allpts = np.vstack([p for p, _, _ in lines])
        pad = int(max(lw for _, _, lw in lines) * 5) + 4  # room for the shoulders' wider blur
        x0, y0 = np.maximum(np.floor(allpts.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.ceil(allpts.max(axis=0)).astype(int) + pad
        x1, y1 = min(x1, w), min(y1, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        shift = 2
        sigma = 0.0
        for path, depth, width in lines:
            pts = np.round((path - [x0, y0]) * (1 << shift)).astype(np.int32)
            thickness = max(1, round(width * 0.5))
            layer = np.zeros_like(mask)
            cv2.polylines(layer, [pts], False, float(depth), thickness, cv2.LINE_AA, shift)
            mask = np.maximum(mask, layer)
            sigma = max(sigma, width * 0.45)  # a soft shadow, not a drawn line
        sigma = max(sigma, 0.8)
        # a crease, not a drawn line: dark in the fold, a little lighter on the skin pushed up beside it
        # (a difference of Gaussians of the same lines; the shoulders take back most of the darkening)
        shadow = cv2.GaussianBlur(mask, (0, 0), sigma)
        shoulders = cv2.GaussianBlur(mask, (0, 0), _CREASE_SHOULDER * sigma)
        shade = np.clip(shadow - _CREASE_LIGHT * shoulders, -0.15, 0.6)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        # skin shadows are warm: blue and green darken more than red; the lit shoulders are not tinted
        tint = 1.0 + (_SHADOW_TINT - 1.0) * colourful
        dark = np.clip(shade, 0.0, None)[..., None] * tint
        light = np.clip(-shade, 0.0, None)[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi * (1.0 - dark + light), 0, 255).astype(np.uint8)


class EyeWhitePainter:
    """Paints the sclera that a raised upper lid bares (AU5, fear's wide eyes).

    Warping the lid up only stretches the iris under it, which no one reads as wide eyes; the white above
    the iris is what does. The band between the raised lid and where the lid was is painted in the
    portrait's own eye-white colour, shaded under the lid and fading into the iris below.
    """

    _EYES = ((topo.EYE_R_UPPER, topo.EYE_R_LOWER), (topo.EYE_L_UPPER, topo.EYE_L_LOWER))

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        pixels = []
        for upper, lower in self._EYES:
            polygon = np.round(landmarks[list(upper) + list(lower[-2:0:-1])]).astype(np.int32)
            mask = np.zeros(image.shape[:2], np.uint8)
            cv2.fillPoly(mask, [polygon], 1)
            pixels.append(image[mask > 0].reshape(-1, 3))
        eye = np.vstack(pixels).astype(np.float32)
        if len(eye) < 8:
            self.white = np.array([225.0, 222.0, 215.0], dtype=np.float32)
        else:
            # the brightest fifth of the eye is its white (the iris and lashes are darker)
            lum = eye @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            self.white = np.median(eye[lum >= np.percentile(lum, 80)], axis=0)

    def paint(
        self, frame: np.ndarray, points: np.ndarray, rise: np.ndarray, ex: np.ndarray, ey: np.ndarray
    ) -> None:
        """Paint in place; `rise` is each upper-lid point's rise (px) over its place without the AU,
        right eye's points then left eye's, in the order of topology.EYE_*_UPPER."""
        n = len(topo.EYE_R_UPPER)
        for k, (upper_ids, lower_ids) in enumerate(self._EYES):
            lift = rise[k * n : (k + 1) * n]
            if float(lift.max()) < 0.75:
                continue
            upper, lower = points[list(upper_ids)], points[list(lower_ids)]
            center = (upper[0] + upper[-1]) / 2
            up_u, up_v = (upper - center) @ ex, (upper - center) @ ey
            lo_u, lo_v = (lower - center) @ ex, (lower - center) @ ey
            o_up, o_lo = np.argsort(up_u), np.argsort(lo_u)
            box = np.vstack([upper, lower])
            h, w = frame.shape[:2]
            x0, y0 = np.maximum(np.floor(box.min(axis=0) - 2).astype(int), 0)
            x1, y1 = np.ceil(box.max(axis=0) + 2).astype(int)
            x1, y1 = min(x1, w), min(y1, h)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            rel_x, rel_y = xs - center[0], ys - center[1]
            u = rel_x * ex[0] + rel_y * ex[1]
            v = rel_x * ey[0] + rel_y * ey[1]
            v_top = np.interp(u, up_u[o_up], up_v[o_up]).astype(np.float32)
            v_bot = np.interp(u, lo_u[o_lo], lo_v[o_lo]).astype(np.float32)
            band = np.interp(u, up_u[o_up], lift[o_up]).astype(np.float32)
            # the white ends where the lid used to be, and never reaches the lower lid
            bottom = np.minimum(v_top + band, v_top + 0.6 * (v_bot - v_top))
            below = v - v_top
            alpha = np.clip(below - 0.5, 0.0, 1.0) * _smoothstep(1.0, -1.0, v - bottom)
            alpha *= np.clip(band - 0.5, 0.0, 1.0)  # nothing where the lid did not rise (the corners)
            under = np.clip(below / (0.5 * band + 0.5), 0.0, 1.0)
            shade = 0.72 + 0.28 * under * under * (3.0 - 2.0 * under)  # shadow of the lid
            alpha = cv2.GaussianBlur(alpha * 0.92, (3, 3), 0.6)[..., None]
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            paint = self.white * shade[..., None]
            frame[y0:y1, x0:x1] = np.clip(roi + (paint - roi) * alpha, 0, 255).astype(np.uint8)
