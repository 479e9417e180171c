"""Piecewise-affine image warp over a fixed Delaunay triangulation, with the expensive part cached.

Built once per portrait: the triangulation of the *source* control points, each triangle's neighbours,
a full-resolution map of which source triangle covers each pixel, and barycentric tables. Each frame
then needs the inverse warp (for every output pixel, where to sample the source), found without
rasterising the moved triangles:

  0. a first guess: the pixel minus the displacement interpolated over its source triangle;
  1. fixed-point steps: apply the target->source affine map of the triangle the estimate lies in.
     Every estimate is scored by pushing it forward through the warp and measuring how far it lands
     from the pixel (0 for the exact inverse); the best is kept. Where triangles are large compared
     with the motion (almost everywhere) the first step is already exact;
  2. pixels still unresolved (next to triangles squeezed flat, where step 1 is thrown far off) walk the
     moved mesh from triangle to neighbour until they find the one that holds them.

The map is solved on a half-resolution grid and upsampled, adding the residual (source - pixel) to an
exact identity so that pixels that do not move (the fixed image border) stay exactly in place. Where
the map is discontinuous (lids or lips meeting), bilinear upsampling would blend the two sides into a
smear of iris or teeth, so boxes around the eyes and lips are solved again at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

# Target triangles smaller than this (px^2), or flipped, fall back to a translation: their affine map
# would blow up.
_MIN_AREA = 0.5


class PiecewiseAffineWarp:
    def __init__(self, source: np.ndarray, size: int, grid_step: int = 2) -> None:
        self.size = size
        self.source = source.astype(np.float64)
        delaunay = Delaunay(self.source)
        self.triangles = delaunay.simplices.astype(np.int64)  # (T, 3)
        n_tri = len(self.triangles)
        # neighbours across each edge (the identity row for the hull), for walking out of squeezed triangles
        neighbours = delaunay.neighbors.astype(np.int64)
        neighbours[neighbours < 0] = n_tri
        self.neighbours = np.vstack([neighbours, np.full((1, 3), n_tri)])

        # 1. Half-resolution grid; cv2.resize maps output pixel X to grid coordinate (X + 0.5) / scale - 0.5.
        self.grid = int(np.ceil(size / grid_step))
        self.scale = size / self.grid
        coords = (np.arange(self.grid) + 0.5) * self.scale - 0.5
        gx, gy = np.meshgrid(coords, coords)
        self.gx = gx.astype(np.float32).ravel()
        self.gy = gy.astype(np.float32).ravel()

        # 2. Which source triangle covers each pixel (full resolution, so thin triangles around the eyes
        #    and lips are found exactly); -1 (outside every triangle) maps to an identity.
        tri_map = np.full((size, size), -1, dtype=np.int32)
        shift = 4
        verts = np.round(self.source * (1 << shift)).astype(np.int32)
        for t, tri in enumerate(self.triangles):
            cv2.fillConvexPoly(tri_map, verts[tri], int(t), lineType=cv2.LINE_8, shift=shift)
        tri_map[tri_map < 0] = n_tri
        self.tri_map = tri_map.ravel()
        self.identity_index = n_tri

        # 3. Barycentric coordinates in each source triangle, as affine maps (x, y) -> (l1, l2).
        self.tri_ext = np.vstack([self.triangles, np.zeros((1, 3), np.int64)])
        a, b, c = (self.source[self.tri_ext[:, k]] for k in range(3))
        e1, e2 = b - a, c - a
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        self.source_sign = np.sign(det[:n_tri])
        self.source_area = np.abs(det[:n_tri])
        det[n_tri] = 1.0
        det[np.abs(det) < 1e-9] = 1e-9
        inv = np.stack([e2[:, 1], -e2[:, 0], -e1[:, 1], e1[:, 0]], axis=1) / det[:, None]
        off1 = -(inv[:, 0] * a[:, 0] + inv[:, 1] * a[:, 1])
        off2 = -(inv[:, 2] * a[:, 0] + inv[:, 3] * a[:, 1])
        bary = np.stack([inv[:, 0], inv[:, 1], off1, inv[:, 2], inv[:, 3], off2], axis=1)
        bary[n_tri] = 0.0
        self.bary = bary.astype(np.float32)

        # 4. The first guess on the grid is one sparse product per frame: (cells x points) weights.
        cells = self._lookup(self.gx, self.gy)
        l1, l2 = self._apply(self.bary[cells], self.gx, self.gy)
        weights = np.stack([1 - l1 - l2, l1, l2], axis=1)
        weights[cells == n_tri] = 0.0
        rows = np.repeat(np.arange(len(cells)), 3)
        self.interp = csr_matrix(
            (weights.astype(np.float32).ravel(), (rows, self.tri_ext[cells].ravel())),
            shape=(len(cells), len(self.source)),
        )

        ident = np.indices((size, size), dtype=np.float32)
        self.identity = np.ascontiguousarray(np.stack([ident[1], ident[0]], axis=2))  # (H, W, 2) x, y

    def untangle(
        self, target: np.ndarray, movable: np.ndarray, exempt: np.ndarray, rounds: int = 8
    ) -> np.ndarray:
        """Relax the displacement of vertices of flipped triangles towards their neighbours' until none is
        flipped (or `rounds` runs out). `exempt` triangles may collapse (the lips meeting); `movable` marks
        the control points that may be changed."""
        target = target.astype(np.float64).copy()
        tri = self.triangles
        for _ in range(rounds):
            a, b, c = (target[tri[:, k]] for k in range(3))
            e1, e2 = b - a, c - a
            det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
            flipped = (np.sign(det) != self.source_sign) & ~exempt
            if not flipped.any():
                break
            disp = target - self.source
            mean = disp[tri[flipped]].mean(axis=1)  # (F, 2)
            acc = np.zeros_like(disp)
            count = np.zeros(len(disp))
            for k in range(3):
                np.add.at(acc, tri[flipped, k], mean)
                np.add.at(count, tri[flipped, k], 1.0)
            hit = (count > 0) & movable
            disp[hit] = 0.5 * disp[hit] + 0.5 * acc[hit] / count[hit, None]
            target = self.source + disp
        return target

    def _lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Source triangle under (x, y), to the nearest pixel."""
        xi = np.clip(np.rint(x), 0, self.size - 1).astype(np.int32)
        yi = np.clip(np.rint(y), 0, self.size - 1).astype(np.int32)
        return self.tri_map[yi * self.size + xi]

    def _locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Source triangle containing (x, y) exactly: the pixel lookup, then up to two steps across the
        edge with the most negative barycentric coordinate. Needed where triangles are thinner than a
        pixel (closing lids and lips), where the nearest-pixel answer is often a neighbour."""
        t = self._lookup(x, y)
        for _ in range(2):
            l1, l2 = self._apply(self.bary[t], x, y)
            coords = np.stack([1.0 - l1 - l2, l1, l2], axis=1)
            worst = coords.argmin(axis=1)
            outside = (coords[np.arange(len(t)), worst] < -1e-4) & (t < self.identity_index)
            if not outside.any():
                break
            t = np.where(outside, self.neighbours[t, worst], t)
        return t

    @staticmethod
    def _affine_coefs(tri: np.ndarray, frm: np.ndarray, to: np.ndarray, valid_sign: np.ndarray) -> np.ndarray:
        """(T+1, 6) coefficients [a, b, c, d, e, f] of the per-triangle affine map frm -> to:
        (x, y) -> (a x + b y + c, d x + e y + f). Degenerate or flipped triangles get a translation; the
        last row is the identity, for pixels outside every triangle."""
        fa, fb, fc = (frm[tri[:, k]] for k in range(3))
        ta, tb, tc = (to[tri[:, k]] for k in range(3))
        e1, e2 = fb - fa, fc - fa
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        bad = (np.abs(det) < 2 * _MIN_AREA) | (np.sign(det) != valid_sign)
        safe = np.where(bad, 1.0, det)
        inv = (
            np.stack([e2[:, 1], -e2[:, 0], -e1[:, 1], e1[:, 0]], axis=1).reshape(-1, 2, 2)
            / safe[:, None, None]
        )
        lin = np.stack([tb - ta, tc - ta], axis=2) @ inv  # (T, 2, 2)
        lin[bad] = np.eye(2)
        offset = ta - np.einsum("tij,tj->ti", lin, fa)
        offset[bad] = ((ta + tb + tc - fa - fb - fc) / 3)[bad]
        coef = np.concatenate([lin[:, 0, :], offset[:, :1], lin[:, 1, :], offset[:, 1:]], axis=1)
        identity = np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
        return np.vstack([coef, identity]).astype(np.float32)

    @staticmethod
    def _apply(coef: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return coef[:, 0] * x + coef[:, 1] * y + coef[:, 2], coef[:, 3] * x + coef[:, 4] * y + coef[:, 5]

    def _barycentric(self, points: np.ndarray) -> np.ndarray:
        """(T+1, 6) affine maps (x, y) -> (l1, l2), barycentric coordinates in each triangle of `points`."""
        a, b, c = (points[self.tri_ext[:, k]] for k in range(3))
        e1, e2 = b - a, c - a
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        det = np.where(np.abs(det) < 1e-9, 1e-9, det)
        inv = np.stack([e2[:, 1], -e2[:, 0], -e1[:, 1], e1[:, 0]], axis=1) / det[:, None]
        off1 = -(inv[:, 0] * a[:, 0] + inv[:, 1] * a[:, 1])
        off2 = -(inv[:, 2] * a[:, 0] + inv[:, 3] * a[:, 1])
        bary = np.stack([inv[:, 0], inv[:, 1], off1, inv[:, 2], inv[:, 3], off2], axis=1)
        bary[-1] = [0.0, 0.0, 1.0 / 3, 0.0, 0.0, 1.0 / 3]  # the identity row counts as "inside"
        return bary

    def _walk(self, x: np.ndarray, y: np.ndarray, start: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Triangles containing (x, y) in the mesh whose barycentric tables are `bary`, found by walking
        from `start` across the edge with the most negative coordinate; -1 where the walk does not end."""
        t = start.copy()
        active = np.arange(len(t))
        for _ in range(24):
            l1, l2 = self._apply(bary[t[active]], x[active], y[active])
            coords = np.stack([1.0 - l1 - l2, l1, l2], axis=1)
            worst = coords.argmin(axis=1)
            outside = coords[np.arange(len(active)), worst] < -1e-5
            if not outside.any():
                return t
            step = active[outside]
            t[step] = self.neighbours[t[step], worst[outside]]
            active = step
        t[active] = -1
        return t

    def _frame_maps(self, target: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-frame tables: backward and forward affine maps per triangle, and the squeeze penalty.

        A triangle squeezed almost flat (closing lids, closing lips) maps its whole source area onto a
        thin line, so every pixel near that line would "find" a source inside it (the iris of a closed
        eye). Such answers are charged extra, so the stretched skin around them wins.
        """
        backward = self._affine_coefs(self.triangles, target, self.source, self.source_sign)
        forward = self._affine_coefs(self.triangles, self.source, target, self.source_sign)
        tri = self.triangles
        ta, tb, tc = (target[tri[:, k]] for k in range(3))
        t_area = np.abs((tb - ta)[:, 0] * (tc - ta)[:, 1] - (tb - ta)[:, 1] * (tc - ta)[:, 0])
        ratio = t_area / np.maximum(self.source_area, 1e-6)
        penalty = np.append(np.clip(1.0 - ratio / 0.25, 0.0, 1.0) * 4.0, 0.0).astype(np.float32)
        return backward, forward, penalty, self._barycentric(target)

    def _solve(
        self,
        px: np.ndarray,
        py: np.ndarray,
        guess_x: np.ndarray,
        guess_y: np.ndarray,
        tables: tuple[np.ndarray, ...],
        rounds: int = 4,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source positions of target pixels (px, py), starting from a guess."""
        backward, forward, penalty, target_bary = tables
        locate = self._locate if exact else self._lookup

        def miss(sx: np.ndarray, sy: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
            """How far the forward warp of (sx, sy) lands from the pixel: 0 for the true inverse."""
            t = locate(sx, sy)
            fx, fy = self._apply(forward[t], sx, sy)
            return np.hypot(fx - qx, fy - qy) + penalty[t]

        best_x, best_y = guess_x.copy(), guess_y.copy()
        best_err = miss(best_x, best_y, px, py)
        cur_x, cur_y = best_x, best_y
        todo = np.arange(len(px))
        # Fixed-point steps: apply the inverse affine map of the triangle the estimate lies in; keep,
        # per pixel, the estimate whose forward warp lands closest to the pixel.
        for _ in range(rounds):
            keep = best_err[todo] > 0.25
            todo, cur_x, cur_y = todo[keep], cur_x[keep], cur_y[keep]
            if not todo.size:
                break
            qx, qy = px[todo], py[todo]
            cur_x, cur_y = self._apply(backward[locate(cur_x, cur_y)], qx, qy)
            err = miss(cur_x, cur_y, qx, qy)
            better = err < best_err[todo]
            idx = todo[better]
            best_x[idx], best_y[idx], best_err[idx] = cur_x[better], cur_y[better], err[better]
        # Walk: where that has not converged (next to a squeezed triangle, whose inverse map throws the
        # estimate far away), find the moved triangle that holds the pixel by walking the moved mesh.
        todo = np.flatnonzero(best_err > 0.25)
        if todo.size:
            qx, qy = px[todo].astype(np.float64), py[todo].astype(np.float64)
            found = self._walk(qx, qy, self._lookup(qx, qy), target_bary)
            ok = found >= 0
            sx, sy = self._apply(backward[found[ok]], qx[ok], qy[ok])
            best_x[todo[ok]], best_y[todo[ok]] = sx, sy
        return best_x, best_y

    def residual(self, target: np.ndarray, tables: tuple[np.ndarray, ...]) -> np.ndarray:
        """(grid, grid, 2) float32: source position minus pixel position on the half-resolution grid."""
        guess = self.interp @ (target - self.source).astype(np.float32)
        sx, sy = self._solve(self.gx, self.gy, self.gx - guess[:, 0], self.gy - guess[:, 1], tables)
        return np.stack([sx - self.gx, sy - self.gy], axis=1).reshape(self.grid, self.grid, 2)

    def _refine(
        self,
        maps: np.ndarray,
        target: np.ndarray,
        box: tuple[int, int, int, int],
        tables: tuple[np.ndarray, ...],
    ) -> None:
        """Solve a box at full resolution, where the map is discontinuous (lids or lips meeting) and the
        upsampled half-resolution map would blend the two sides into the iris or the teeth."""
        x0, y0, x1, y1 = box
        ys, xs = np.mgrid[y0:y1, x0:x1]
        px, py = xs.ravel().astype(np.float32), ys.ravel().astype(np.float32)
        t = self._locate(px, py)
        l1, l2 = self._apply(self.bary[t], px, py)
        disp = (target - self.source).astype(np.float32)
        verts = self.tri_ext[t]
        gx = px - (
            (1 - l1 - l2) * disp[verts[:, 0], 0] + l1 * disp[verts[:, 1], 0] + l2 * disp[verts[:, 2], 0]
        )
        gy = py - (
            (1 - l1 - l2) * disp[verts[:, 0], 1] + l1 * disp[verts[:, 1], 1] + l2 * disp[verts[:, 2], 1]
        )
        sx, sy = self._solve(px, py, gx, gy, tables, exact=True)
        maps[y0:y1, x0:x1, 0] = sx.reshape(y1 - y0, x1 - x0)
        maps[y0:y1, x0:x1, 1] = sy.reshape(y1 - y0, x1 - x0)

    def maps(self, target: np.ndarray, boxes: list[np.ndarray] | None = None) -> np.ndarray:
        """(H, W, 2) float32 map for cv2.remap: output pixel -> source position. `boxes` are groups of
        target points (eyes, lips) around which the map is solved at full resolution."""
        target = target.astype(np.float64)
        tables = self._frame_maps(target)
        res: np.ndarray = self.residual(target, tables).astype(np.float32)
        if res.shape[0] != self.size:
            res = cv2.resize(res, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        maps = self.identity + res
        for points in boxes or []:
            lo = np.clip(np.floor(points.min(axis=0)).astype(int) - 3, 0, self.size)
            hi = np.clip(np.ceil(points.max(axis=0)).astype(int) + 4, 0, self.size)
            if np.all(hi > lo):
                self._refine(maps, target, (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), tables)
        return maps

    def warp(self, image: np.ndarray, target: np.ndarray) -> np.ndarray:
        # map2=None is what remap takes with an (H, W, 2) map1; opencv's stubs leave None out
        return cv2.remap(  # type: ignore[call-overload]
            image, self.maps(target), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
