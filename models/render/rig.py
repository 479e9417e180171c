"""A per-portrait face rig: turns (action units, mouth opening/width, blink, head pose) into target landmarks.

Everything that depends only on the portrait (the face frame, one displacement basis per action unit, the
mouth bases) is computed once in `FaceRig.__init__`; `FaceRig.pose` is a few small matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import spsolve
from scipy.spatial import Delaunay

from kernel.errors import InputError
from models.render import topology as topo
from models.render.tables import FacsTable, VisemeTable

N_LANDMARKS = 468
# a portrait's smile is taken out as this many real smiles at most: its own grin may be broader than the
# actors' (the astronaut's is 1.8 of theirs), but at 2 the warp folded hallo_3's upper lip into the nose
_UNSMILE_MAX = 1.5


@dataclass(frozen=True)
class FaceFrame:
    """Origin between the eye centres, x along the eye line, y down, unit = inter-ocular distance."""

    origin: np.ndarray  # (2,) px
    ex: np.ndarray  # (2,) unit vector
    ey: np.ndarray  # (2,) unit vector
    iod: float  # px

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceFrame:
        right = landmarks[list(topo.EYE_R_CORNERS)].mean(axis=0)
        left = landmarks[list(topo.EYE_L_CORNERS)].mean(axis=0)
        axis = left - right
        iod = float(np.linalg.norm(axis))
        if iod < 4.0:
            raise InputError(f"eye distance of {iod:.1f} px is too small for a face rig")
        ex = axis / iod
        ey = np.array([-ex[1], ex[0]])
        return cls(origin=(right + left) / 2, ex=ex, ey=ey, iod=iod)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        rel = points - self.origin
        return np.stack([rel @ self.ex, rel @ self.ey], axis=-1) / self.iod

    def to_pixels(self, moves: np.ndarray) -> np.ndarray:
        """Displacements (..., 2) in IOD in the face frame -> pixel displacements."""
        return self.iod * (moves[..., :1] * self.ex + moves[..., 1:] * self.ey)


@dataclass(frozen=True)
class HeadPose:
    """Small rigid head motion: angles in radians, translation in IOD."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0


def spread(norm: np.ndarray, moves: dict[int, tuple[float, float]], radius: float) -> np.ndarray:
    """Landmark displacements (468, 2) in IOD: listed landmarks move as given and neighbours follow with
    Gaussian weights of `radius`, normalised so that overlapping keys average instead of adding up.

    With a radius, listed landmarks also take the smooth field instead of their exact value: an exact
    value next to a smoothly moving neighbour a few pixels away folds the mesh (seen at the mouth corners).
    """
    out = np.zeros((len(norm), 2), dtype=np.float64)
    if not moves:
        return out
    keys = np.array(list(moves), dtype=np.int64)
    vectors = np.array([moves[k] for k in keys], dtype=np.float64)
    if radius <= 0:
        out[keys] = vectors
        return out
    d2 = ((norm[:, None, :] - norm[keys][None, :, :]) ** 2).sum(axis=2)
    weights = np.exp(-0.5 * d2 / radius**2)
    weights[weights < 1e-3] = 0.0
    return weights @ vectors / np.maximum(1.0, weights.sum(axis=1, keepdims=True))


def _harmonic(points: np.ndarray, values: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Fill the free entries of `values` harmonically over the Delaunay graph of `points`."""
    tri = Delaunay(points).simplices
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    n = len(points)
    adj = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    lap = diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    free = np.flatnonzero(~fixed)
    out = values.astype(np.float64).copy()
    if free.size:
        lap = lap.tocsr()
        rhs = -lap[free][:, np.flatnonzero(fixed)] @ out[fixed]
        out[free] = spsolve(lap[free][:, free].tocsc(), rhs)
    return out


class FaceRig:
    def __init__(
        self,
        landmarks: np.ndarray,
        depth: np.ndarray | None,
        facs: FacsTable,
        visemes: VisemeTable,
        smile: np.ndarray | None = None,
    ) -> None:
        """`smile`: a real smile's field (468, 2 IOD, the expression table's happy); with one, a smiling
        portrait is neutralised by taking that smile back out, at most once over, instead of by the FACS
        neutraliser's bend."""
        self.rest = landmarks.astype(np.float64)
        self.frame = FaceFrame.from_landmarks(self.rest)
        norm = self.frame.normalise(self.rest)
        self.norm = norm
        mouth = visemes.mouth

        # 1. Lip regions and the taper that keeps the mouth corners in place when the lips part.
        corners = norm[list(topo.MOUTH_CORNERS)]
        self.mouth_center = corners.mean(axis=0)
        half_width = max(abs(corners[1, 0] - corners[0, 0]) / 2, 0.1)
        taper = np.clip(1.0 - ((norm[:, 0] - self.mouth_center[0]) / half_width) ** 2, 0.0, 1.0)
        taper = taper ** mouth["lip_taper_power"]
        upper = np.zeros(N_LANDMARKS)
        lower = np.zeros(N_LANDMARKS)
        upper[list(topo.LIP_OUTER_UPPER + topo.LIP_INNER_UPPER + sum(topo.LIP_UPPER_RINGS, ()))] = 1.0
        lower[list(topo.LIP_OUTER_LOWER + topo.LIP_INNER_LOWER + sum(topo.LIP_LOWER_RINGS, ()))] = 1.0
        # each lip point's distance from its lip's inner edge (IOD), for AUs that thin or press the lips
        upper_edge = np.interp(norm[:, 0], *self._polyline(topo.LIP_INNER_UPPER))
        lower_edge = np.interp(norm[:, 0], *self._polyline(topo.LIP_INNER_LOWER))
        self.regions = {
            "upper_lip": upper * taper,
            "lower_lip": lower * taper,
            "upper_lip_depth": upper * np.clip(upper_edge - norm[:, 1], 0.0, None),
            "lower_lip_depth": lower * np.clip(norm[:, 1] - lower_edge, 0.0, None),
        }

        # 2. Jaw: how far each landmark follows the lower lip. Fixed on the lips (the taper), on the face
        #    outline (the chin follows by jaw_follow, less towards the jaw angles, nothing above the mouth)
        #    and above the mouth line (0); harmonic in between, so the chin, lower lip and cheeks move as
        #    one smooth sheet with no fold, whatever the size of the mouth.
        lateral = np.exp(-0.5 * ((norm[:, 0] - self.mouth_center[0]) / mouth["jaw_sigma"]) ** 2)
        mouth_line = corners[:, 1].mean()
        below = np.clip((norm[:, 1] - mouth_line) / 0.3, 0.0, 1.0)
        fixed = np.zeros(N_LANDMARKS, dtype=bool)
        jaw = np.zeros(N_LANDMARKS)
        oval = np.array(topo.FACE_OVAL)
        fixed[oval] = True
        jaw[oval] = mouth["jaw_follow"] * lateral[oval] * below[oval] ** 2
        fixed[norm[:, 1] < mouth_line - 0.05] = True
        lips = (upper > 0) | (lower > 0)
        fixed[lips] = True
        jaw[lips] = 0.0
        jaw[lower > 0] = taper[lower > 0]
        jaw[np.array(topo.MOUTH_CORNERS)] = 0.0
        jaw = _harmonic(self.rest, jaw, fixed)
        self.regions["lower_face"] = jaw.copy()  # lower lip and chin as one sheet
        jaw[lips] = 0.0  # the lips get their own terms below

        # 3. Mouth bases (px per IOD of inner-lip gap change). Opening is mostly the jaw; closing an open
        #    portrait mouth is mostly the lips, so the face does not shrink.
        up_share = mouth["upper_lip_follow"]
        open_dy = (self.regions["lower_lip"] + jaw) * (1 - up_share)
        open_dy -= self.regions["upper_lip"] * up_share
        close_up = mouth["close_upper_share"]
        close_dy = (self.regions["lower_lip"] + jaw * mouth["close_jaw_share"]) * (1 - close_up)
        close_dy -= self.regions["upper_lip"] * close_up
        self._open_dy, self._close_dy = open_dy, close_dy  # IOD per IOD of gap, face-frame y
        self._jaw_sheet = ~lips & ((np.abs(open_dy) > 1e-9) | (np.abs(close_dy) > 1e-9))
        self.open_basis = self.frame.to_pixels(np.stack([np.zeros_like(open_dy), open_dy], axis=1))
        self.close_basis = self.frame.to_pixels(np.stack([np.zeros_like(close_dy), close_dy], axis=1))
        left, right = topo.MOUTH_CORNERS
        inner_left, inner_right = topo.LIP_INNER_UPPER[0], topo.LIP_INNER_UPPER[-1]
        width_moves = {left: (-1.0, 0.0), right: (1.0, 0.0), inner_left: (-0.9, 0.0), inner_right: (0.9, 0.0)}
        self.width_basis = self.frame.to_pixels(spread(norm, width_moves, mouth["width_radius"]))
        # a field's change of the lip gap, spread from each inner-lip pair over its whole lip (so the lip
        # keeps its thickness): `field_moves` takes it out
        self._gap_pairs = (list(topo.LIP_INNER_UPPER[1:-1]), list(topo.LIP_INNER_LOWER[1:-1]))
        pair_x = (norm[self._gap_pairs[0], 0] + norm[self._gap_pairs[1], 0]) / 2
        anchors = np.concatenate(
            [[norm[topo.LIP_INNER_UPPER[0], 0]], pair_x, [norm[topo.LIP_INNER_UPPER[-1], 0]]]
        )
        order = np.argsort(anchors)
        self._gap_spread: list[tuple[np.ndarray, np.ndarray]] = []
        for lip in (upper, lower):
            index = np.flatnonzero(lip * taper > 0)
            spread_m = np.zeros((len(index), len(pair_x)))
            for k in range(len(pair_x)):
                one = np.zeros(len(anchors))
                one[k + 1] = 1.0  # the corners (first and last anchors) stay put
                spread_m[:, k] = np.interp(norm[index, 0], anchors[order], one[order], left=0.0, right=0.0)
            for k, point in enumerate(self._gap_pairs[len(self._gap_spread)]):
                spread_m[index == point] = np.eye(len(pair_x))[k]  # each pair's own points exactly
            self._gap_spread.append((index, spread_m))
        top, bottom = topo.LIP_INNER_MID
        # the portrait's own inner-lip gap (IOD); > 0 when it shows teeth
        self.rest_gap = max(0.0, float(norm[bottom, 1] - norm[top, 1]))

        # 4. Neutralise the portrait's own smile: lower the corners towards the closed lip line.
        close_line = norm[top, 1] + close_up * self.rest_gap
        lift = close_line - float(corners[:, 1].mean())
        spec = facs.neutralise
        drop = min(spec.strength * max(0.0, lift - spec.max_corner_lift), spec.max_drop)
        # a smile bends the whole mouth up towards its corners: bend it back with a parabola across the
        # mouth, fading above and below it, so both lips keep their shape (moving only the corners
        # kinks the lips)
        side = np.abs(norm[:, 0] - self.mouth_center[0]) / half_width
        across = np.where(side <= 1.0, side**2, np.exp(-0.5 * ((side - 1.0) / spec.bend_fade) ** 2))
        fade = np.exp(-0.5 * ((norm[:, 1] - self.mouth_center[1]) / spec.radius) ** 2)
        bend = drop * across * fade
        self.neutral_offset = self.frame.to_pixels(np.stack([np.zeros_like(bend), bend], axis=1))
        self.corner_lift = lift

        # 5. One basis per action unit (px per unit activation), plus their mouth terms.
        self.unit_names = list(facs.units)
        bases = []
        for unit in facs.units.values():
            moves = spread(norm, unit.moves, unit.radius)
            for name, (dx, dy) in unit.regions.items():
                moves += self.regions[name][:, None] * np.array([dx, dy])
            bases.append(self.frame.to_pixels(moves))
        self.unit_basis = np.stack(bases).reshape(len(bases), -1)  # (units, 468*2)
        # the rest of the smile (cheeks, corners drawn outwards) is undone by negative activations,
        # in proportion to how far the corners sit above the lip line
        self.smile = min(max(0.0, lift - spec.max_corner_lift) / spec.smile_lift, 1.5)
        undo = np.array([spec.undo.get(name, 0.0) for name in self.unit_names])
        self.neutral_offset -= (self.smile * undo @ self.unit_basis).reshape(N_LANDMARKS, 2)
        if smile is not None:
            self.neutral_offset = self._unsmile(smile, lift - spec.max_corner_lift)
        self.neutral_offset[list(topo.FACE_OVAL)] = 0.0  # the outline stays: moving it steps the jaw line
        self.unit_open = np.array([u.mouth_open for u in facs.units.values()])
        self.unit_width = np.array([u.mouth_width for u in facs.units.values()])
        self.unit_teeth = np.array([u.teeth for u in facs.units.values()])
        # how far each upper-lid point rises (px, up > 0) per unit activation: every unit's move, and the
        # part that bares the sclera (a warp only stretches the iris, so that white is painted, see
        # mouth.EyeWhitePainter and `bared_sclera`)
        lids = list(topo.EYE_R_UPPER + topo.EYE_L_UPPER)
        self.lid_lift = np.stack([-(base[lids] @ self.frame.ey) for base in bases])  # (units, lid points)
        sclera = np.array([unit.sclera for unit in facs.units.values()])
        self.lid_sclera = (sclera[:, None] * self.lid_lift).clip(0.0, None)
        self.blink = facs.blink

        # 6. Per lip line, the projection onto smooth moves (see `_smooth_lips`), from the rest x positions.
        self._lip_smoothers = []
        lines = (topo.LIP_OUTER_UPPER, topo.LIP_OUTER_LOWER, topo.LIP_INNER_UPPER, topo.LIP_INNER_LOWER)
        for line in (*lines, *topo.LIP_UPPER_RINGS, *topo.LIP_LOWER_RINGS):
            x = norm[list(line), 0]
            t = (x - x.min()) / max(float(np.ptp(x)), 1e-6)
            basis = np.stack([1 - t, t, t * (1 - t), t * (1 - t) * (t - 0.5)], axis=1)
            self._lip_smoothers.append((list(line), basis @ np.linalg.pinv(basis)))

        # 7. Depth relative to the head's turning axis (about the face outline), for yaw/pitch parallax.
        if depth is None or len(depth) != N_LANDMARKS:
            radius = np.linalg.norm((norm - norm[list(topo.FACE_OVAL)].mean(axis=0)) / [1.1, 1.3], axis=1)
            depth_px = -self.frame.iod * 0.9 * np.clip(1 - radius**2, 0, 1)
        else:
            # MediaPipe's z is noisy between near-coincident points on the outline; smooth it a little
            near = ((norm[:, None] - norm[None]) ** 2).sum(axis=2)
            kernel = np.exp(-0.5 * near / 0.05**2)
            depth_px = kernel @ depth.astype(np.float64) / kernel.sum(axis=1)
        self.depth = depth_px - float(np.median(depth_px[list(topo.FACE_OVAL)]))
        chin = self.rest[topo.CHIN]
        self.pivot = chin + 0.5 * self.frame.iod * self.frame.ey  # the head turns about the neck

    def _polyline(self, indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of a left-to-right contour in the face frame, sorted by x for np.interp."""
        pts = self.norm[list(indices)]
        order = np.argsort(pts[:, 0])
        return pts[order, 0], pts[order, 1]

    def expression(self, units: np.ndarray) -> tuple[np.ndarray, float, float]:
        """For AU activations: (landmark moves px (468, 2), extra mouth opening IOD, extra width IOD)."""
        moves = (units @ self.unit_basis).reshape(N_LANDMARKS, 2)
        return moves, float(units @ self.unit_open), float(units @ self.unit_width)

    def _unsmile(self, smile: np.ndarray, excess_lift: float) -> np.ndarray:
        """Moves (468, 2 px) that take a real smile back out of the portrait: as much of it as lifts the
        corners by `excess_lift` (IOD above a resting mouth), and never more than _UNSMILE_MAX smiles, so
        the neutral stays a face a person makes (1.3.0's stronger bend turned broad grins into frowns)."""
        left, right = topo.MOUTH_CORNERS
        top = topo.LIP_INNER_MID[0]
        played = self.smile_moves(smile)
        # how far one smile, as the rig plays it on this face, raises the corners above the upper lip's
        # middle (where the closed lips meet), in IOD; y points down
        down = played @ self.frame.ey / self.frame.iod
        corner_rise = float(down[top] - down[[left, right]].mean())
        if corner_rise <= 1e-6 or excess_lift <= 0:
            return np.zeros_like(self.rest)
        share = min(excess_lift / corner_rise, _UNSMILE_MAX)
        self.smile = share
        return -share * played

    def smile_moves(self, field: np.ndarray) -> np.ndarray:
        """A smile's field as moves (468, 2 px) less its centre gap, taken out with the speech bases (jaw
        and lips together): the neutraliser takes this back out of smiling portraits. It was looked at
        and kept from 2.0.0; taking the gap from the lips alone left the astronaut's neutralised mouth
        half open to the face mesh (narration lip sync 0.62 -> 0.39)."""
        top, bottom = topo.LIP_INNER_MID
        gap = float(field[bottom, 1] - field[top, 1])
        basis = self.open_basis if gap >= 0 else self.close_basis
        return np.asarray(self.frame.to_pixels(field) - gap * basis)

    def field_moves(self, field: np.ndarray) -> np.ndarray:
        """A real-motion field (468, 2 IOD) as landmark moves (468, 2 px), less its change of the inner-lip
        gap: the actors were talking, so how far their lips part is speech's (the mouth track's), and
        the emotion keeps the lips' shape. Left in, a still emotional face shows a slit of teeth, and a
        field that closes the gap pushes the lips through each other.

        The centre gap is taken out as speech makes it (the lower lip and jaw with it, the speech bases),
        but the jaw only back towards rest, never past it: angry's gap (0.13 IOD) comes mostly from a
        raised upper lip, and 2.0.0, closing it with the jaw, lifted the chin 0.06 IOD above rest; the
        face mesh then read the astronaut's closed angry mouth as open (narration lip sync 0.31 against
        neutral's 0.62 at 256 px, 0.46 with the jaw stopped at rest; bench/README.md, issue #16). What
        gap is left along the sides is taken out too, half from each lip, each lip moved as a whole so
        it keeps its thickness."""
        top, bottom = topo.LIP_INNER_MID
        gap = float(field[bottom, 1] - field[top, 1])
        shape = self._open_dy if gap >= 0 else self._close_dy
        y = field[:, 1] - gap * shape
        jaw = self._jaw_sheet
        y[jaw] = np.clip(y[jaw], np.minimum(field[jaw, 1], 0.0), np.maximum(field[jaw, 1], 0.0))
        up, lo = self._gap_pairs
        residual = y[lo] - y[up]  # (pairs,) the gap change left along the mouth, IOD
        (up_index, up_spread), (lo_index, lo_spread) = self._gap_spread
        y[up_index] += up_spread @ residual / 2
        y[lo_index] -= lo_spread @ residual / 2
        return np.asarray(self.frame.to_pixels(np.stack([field[:, 0], y], axis=1)))

    def bared_sclera(self, units: np.ndarray) -> np.ndarray:
        """Height (px) of eye white to paint under each upper-lid point: what the sclera-baring AUs raise,
        but never more than the lid's net rise (a lid tightener pulling it down covers the white again)."""
        return np.minimum(units @ self.lid_sclera, np.maximum(units @ self.lid_lift, 0.0))

    def pose(
        self,
        units: np.ndarray,
        mouth_open: float,
        mouth_width: float,
        blink: float,
        head: HeadPose,
        field: np.ndarray | None = None,
    ) -> np.ndarray:
        """Target landmarks (468, 2) px. With a real-motion `field` (468, 2 moves in IOD) the expression's
        geometry is the field's, and `units` only shade; without one, the action units move the face."""
        if field is None:
            moves, extra_open, extra_width = self.expression(units)
        else:
            moves, extra_open, extra_width = self.field_moves(field), 0.0, 0.0
        points = self.rest + self.neutral_offset + moves
        # mouth: the inner-lip gap becomes `mouth_open` (+ AU26), whatever the portrait's own gap was
        delta = max(mouth_open + extra_open, 0.004) - self.rest_gap
        points += delta * (self.open_basis if delta >= 0 else self.close_basis)
        points += (mouth_width + extra_width) * self.width_basis
        points = self._smooth_lips(points)
        if blink > 0:
            self._blink(points, blink)
        return self.move_head(points, head, self.depth)

    def _smooth_lips(self, points: np.ndarray) -> np.ndarray:
        """Keep every lip contour's shape smooth and the lips from passing through each other.

        Along each lip line, the move from rest is replaced by its best fit of a line plus a bend plus an
        asymmetric bend (`_lip_smoothers`): the lip may rise, fall, tilt and curve, but not ripple (stacked
        moves, such as closing a smiling open mouth under a neutraliser, rippled the lower lip). Then an
        upper inner-lip point below its lower partner meets it halfway: real lips touch, they never cross.
        """
        out = points.copy()
        moves = points - self.rest
        for index, smoother in self._lip_smoothers:
            out[index] = self.rest[index] + smoother @ moves[index]
        ey = self.frame.ey
        upper, lower = list(topo.LIP_INNER_UPPER[1:-1]), list(topo.LIP_INNER_LOWER[1:-1])
        overlap = (out[upper] - out[lower]) @ ey  # > 0: the upper lip is below the lower one
        crossed = overlap > 0
        if crossed.any():
            fix = np.outer(overlap[crossed] / 2, ey)
            out[np.array(upper)[crossed]] -= fix
            out[np.array(lower)[crossed]] += fix
        return out

    def _blink(self, points: np.ndarray, amount: float) -> None:
        """Close the eyes by `amount` (0..1). The crease above the lid closes nearly as far as the lid:
        MediaPipe's lid contour often sits inside the visible lid on drawn or made-up eyes, and only
        squeezing the crease band too hides the iris; the lid skin above stretches to cover the eye."""
        spec = self.blink
        close = amount * spec.close
        ex, ey = self.frame.ex, self.frame.ey
        for upper, lower, crease, skin in (
            (topo.EYE_R_UPPER, topo.EYE_R_LOWER, topo.EYE_R_CREASE, topo.EYE_R_LID_SKIN),
            (topo.EYE_L_UPPER, topo.EYE_L_LOWER, topo.EYE_L_CREASE, topo.EYE_L_LID_SKIN),
        ):
            up, lo, cr, sk = list(upper), list(lower), list(crease), list(skin)
            # eye-local coordinates: u along the eye line, v down; lids meet where the lower one would be
            # reached after (1 - lower_lid_rise) of the way, matched by u, not by index
            u_up, v_up = points[up] @ ex, points[up] @ ey
            u_lo, v_lo = points[lo] @ ex, points[lo] @ ey
            o_up, o_lo = np.argsort(u_up), np.argsort(u_lo)
            meet_up = v_up + (1 - spec.lower_lid_rise) * (np.interp(u_up, u_lo[o_lo], v_lo[o_lo]) - v_up)
            meet_lo = v_lo - spec.lower_lid_rise * (v_lo - np.interp(u_lo, u_up[o_up], v_up[o_up]))
            u_cr, v_cr = points[cr] @ ex, points[cr] @ ey
            meet_cr = np.interp(u_cr, u_up[o_up], meet_up[o_up])
            crease_move = close * spec.crease_close * (meet_cr - v_cr)
            points[up] += np.outer(close * (meet_up - v_up), ey)
            points[lo] += np.outer(close * (meet_lo - v_lo), ey)
            points[cr] += np.outer(crease_move, ey)
            points[sk] += np.outer(spec.skin_follow * crease_move, ey)

    def move_head(self, points: np.ndarray, head: HeadPose, depth: np.ndarray | float) -> np.ndarray:
        """Rigid head motion about the neck, with depth parallax for yaw and pitch."""
        frame = self.frame
        depth_arr = np.asarray(depth, dtype=np.float64)
        shifted = (
            points
            + np.multiply.outer(head.yaw * depth_arr, frame.ex)
            - np.multiply.outer(head.pitch * depth_arr, frame.ey)
        )
        c, s = np.cos(head.roll), np.sin(head.roll)
        rot = np.array([[c, -s], [s, c]])
        out = (shifted - self.pivot) @ rot.T + self.pivot
        return out + frame.iod * (head.tx * frame.ex + head.ty * frame.ey)

    def head_ring(self, size: int) -> np.ndarray:
        """Points around the head (hair, ears, neck) that move rigidly with it."""
        oval = self.rest[list(topo.FACE_OVAL)]
        center = oval.mean(axis=0)
        rel = oval - center
        up = (rel @ self.frame.ey) < 0
        scale = np.where(up, 1.5, 1.35)[:, None]
        ring = (center + rel * scale)[::2]
        margin = 0.04 * size
        keep = np.all((ring > margin) & (ring < size - 1 - margin), axis=1)
        return ring[keep]
