"""The preview render engine: a fast CPU warp of the portrait driven by speech and the emotion curve.

    portrait + speech + EmotionCurve -> frames (RGB uint8, size x size, fps)

No neural network: MediaPipe landmarks are moved by FACS action units (prompts/facs.yaml), visemes or
loudness (prompts/visemes.yaml), blinks and a little head motion, and the image follows through a
piecewise-affine warp with a fixed image border. Everything that depends only on the portrait is built
once (and cached for the next clip of the same portrait); a frame then costs a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kernel.errors import InputError
from models.identity import EngineIdentity, TablePart, describe
from models.render import motion
from models.render import topology as topo
from models.render.expressions import EXPRESSIONS_FILE, RANGE_FILE, ExpressionTable, load_expressions
from models.render.inputs import check_portrait, check_render_inputs, frame_count
from models.render.mouth import EyeWhitePainter, MouthPainter, WrinklePainter, close_mouth_texture
from models.render.rig import N_LANDMARKS, FaceFrame, FaceRig, HeadPose
from models.render.tables import FacsTable, VisemeTable, load_facs, load_visemes
from models.render.warp import PiecewiseAffineWarp
from models.types import EmotionCurve, ProgressFn, Speech
from models.vision.face import Portrait

_PROGRESS_EVERY = 10  # frames
_BORDER_POINTS = 8  # fixed control points per image edge
# where lids or lips meet, the warp is solved at full resolution (see PiecewiseAffineWarp.maps)
_MOUTH_BOX = list(topo.LIP_OUTER_UPPER + topo.LIP_OUTER_LOWER)
_EYE_BOXES = [
    list(topo.EYE_R_UPPER + topo.EYE_R_LOWER + topo.EYE_R_CREASE),
    list(topo.EYE_L_UPPER + topo.EYE_L_LOWER + topo.EYE_L_CREASE),
]


@dataclass
class _Prepared:
    """Per-portrait work, done once."""

    image: np.ndarray
    rig: FaceRig
    warp: PiecewiseAffineWarp
    ring: np.ndarray  # control points around the head, moved rigidly
    border: np.ndarray  # fixed control points on the image border
    movable: np.ndarray  # control points the fold guard may adjust (the landmarks)
    exempt: np.ndarray  # triangles across the lips or lids, which may collapse when they meet
    mouth: MouthPainter
    eyes: EyeWhitePainter


EXPRESSION_SOURCES = ("real", "facs")
_FACS_READ = {"real": ("version", "action_units", "blink", "neutralise"), "facs": ("",)}


@dataclass
class _Tracks:
    """What drives each frame."""

    units: np.ndarray  # (frames, units) action-unit activations (shading, teeth, sclera; FACS geometry)
    fields: np.ndarray | None  # (frames, 468 * 2) real-motion moves in IOD, None with the FACS rows
    mouth_open: np.ndarray  # (frames,) inner-lip gap from speech, IOD
    mouth_width: np.ndarray  # (frames,)
    blink: np.ndarray  # (frames,) 0..1
    head: motion.HeadTrack


class PreviewRenderer:
    """Renders a talking portrait on the CPU, faster than real time at 512 px / 25 fps."""

    name = "preview"
    # 1.1.0: sad/angry/surprise FACS weights tuned against the FER judge; 1.2.0: fear re-weighted, and the
    # sclera bared by AU5 is painted; 1.3.0: the smile neutraliser bends the whole mouth, teeth show by lip
    # raise (not by jaw drop), speech keeps moving a dropped jaw, fear and angry re-chosen
    # 2.0.0: expressions are real actors' landmark motion (prompts/expressions.json, MEAD), not hand-tuned
    # FACS rows; the FACS rows remain as `expressions="facs"` and as the fitted explanation of each field
    # 2.1.0: speech opens the lips as far as the actors' speech does in each emotion (sad less), neutral
    # speech calibrated to theirs (prompts/expressions.json `speech_opening`); taking a field's lip gap
    # out no longer lifts the jaw past rest, and takes the gap out along the whole mouth (#16)
    # 2.2.0: each field is scaled, as a whole, until no region moves further than the actors' p95 for its
    # emotion (prompts/expression_range.json): surprise 0.78, fear 0.89, sad 0.97, angry 0.99; speech
    # widens and rounds the mouth 0.56 as far (`width_scale`: its corners went 1.6-1.8x the actors') (#16)
    version = "2.2.0"

    def __init__(
        self,
        size: int = 512,
        fps: int = 25,
        seed: int = 0,
        head_motion: float = 1.0,
        expressions: str = "real",
    ) -> None:
        if not 64 <= int(size) <= 4096:
            raise InputError(f"size must be between 64 and 4096 px, got {size}")
        if not 1 <= fps <= 120:
            raise InputError(f"fps must be between 1 and 120, got {fps}")
        if not 0.0 <= head_motion <= 5.0:
            raise InputError(f"head_motion must be between 0 (still) and 5, got {head_motion}")
        if expressions not in EXPRESSION_SOURCES:
            raise InputError(
                f"expressions must be one of {', '.join(EXPRESSION_SOURCES)}, got {expressions!r}"
            )
        self.size = int(size)
        self.fps = fps
        self.seed = int(seed)
        self.head_motion = float(head_motion)
        self.facs: FacsTable = load_facs()
        self.visemes: VisemeTable = load_visemes()
        self.expressions = expressions
        self.real: ExpressionTable | None = load_expressions() if expressions == "real" else None
        self._wrinkles = WrinklePainter(self.facs)
        self._cache: OrderedDict[str, _Prepared] = OrderedDict()
        self._lock = threading.Lock()

    def identity(self) -> EngineIdentity:
        """The tables as far as they move the face, the real-motion fields, the rig's code and the landmark
        model."""
        return describe(
            self,
            tables=[
                # with real motion the FACS emotion rows are not read: only the units (shading, teeth,
                # sclera), the blink and the neutraliser's resting-mouth limit
                TablePart(Path(self.facs.source).name, self.facs.document, _FACS_READ[self.expressions]),
                TablePart(Path(self.visemes.source).name, self.visemes.document),
            ],
            files={"expressions": EXPRESSIONS_FILE, "expression_range": RANGE_FILE}
            if self.real is not None
            else None,
            packages=("mediapipe", "opencv-python-headless"),
            version=self.version if self.real is not None else f"{self.version}+facs",
        )

    def frame_count(self, duration_s: float) -> int:
        return frame_count(duration_s, self.fps)

    def render(
        self,
        portrait: Portrait,
        speech: Speech,
        curve: EmotionCurve,
        progress: ProgressFn | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield `frame_count(speech.duration)` RGB uint8 frames, one at a time."""
        # 1. Check inputs (here, not lazily in the generator, so bad input fails at the call).
        check_render_inputs(portrait, speech)
        n_frames = self.frame_count(speech.duration)

        # 2. Per-portrait work (cached) and per-frame tracks.
        prepared, tracks = self._tracks(portrait, speech, curve, n_frames)

        # 3. Frame loop.
        return self._frames(prepared, tracks, progress)

    def landmark_track(
        self, portrait: Portrait, speech: Speech, curve: EmotionCurve, still_head: bool = False
    ) -> np.ndarray:
        """(frames, 468, 2) px: where `render` puts the face's landmarks in each frame, without drawing it
        (the naturalness checks read the geometry the warp is given); still_head leaves the head pose
        out, so only the face's own moves remain."""
        check_render_inputs(portrait, speech)
        prepared, tracks = self._tracks(portrait, speech, curve, self.frame_count(speech.duration))
        if still_head:
            tracks = dataclasses.replace(tracks, head=motion.HeadTrack.still(len(tracks.units)))
        targets = list(self._targets(prepared, tracks))
        return np.stack([t[:N_LANDMARKS] for t in targets]) if targets else np.zeros((0, N_LANDMARKS, 2))

    def _tracks(
        self, portrait: Portrait, speech: Speech, curve: EmotionCurve, n_frames: int
    ) -> tuple[_Prepared, _Tracks]:
        """The portrait's prepared rig, and per frame: emotion -> action units, speech -> mouth, blinks,
        head."""
        prepared = self._prepare(portrait)
        rng = np.random.default_rng(self.seed)
        p = self.visemes.mouth
        level = motion.loudness(speech.samples, speech.sample_rate, self.fps, n_frames, p["energy_range_db"])
        if speech.timings.phonemes:
            mouth_open, mouth_width = motion.mouth_from_phonemes(
                speech.timings.phonemes, self.visemes, self.fps, n_frames, level
            )
        else:
            mouth_open, mouth_width = motion.mouth_from_energy(level, self.visemes, self.fps)
        mouth_open = mouth_open * np.float32(p["open_scale"])
        mouth_width = mouth_width * np.float32(p.get("width_scale", 1.0))
        if n_frames:
            frames = curve.per_frame(self.fps, n_frames)
            weights = frames.probs * frames.intensity[:, None]
            units, fields = self._expression(frames.labels, weights)
            if self.real is not None:  # real speakers' opening changes with their emotion
                factor = self.real.speech_factor(frames.labels, weights)
                mouth_open = (mouth_open * factor).astype(np.float32)
        else:
            units, fields = self._expression(list(curve.labels), np.zeros((0, len(curve.labels))))
        blink = motion.blinks(n_frames, self.fps, rng)
        head = motion.head_motion(n_frames, self.fps, rng, self.head_motion, level)
        return prepared, _Tracks(units, fields, mouth_open, mouth_width, blink, head)

    def expression_still(self, portrait: Portrait, labels: list[str], weights: np.ndarray) -> np.ndarray:
        """The portrait with one expression and nothing else: mouth at rest, eyes open, head still.

        weights: per label, probability x intensity (a clip's mean, say). The diffusion renderer feeds
        this image to its ReferenceNet, so the expression reaches Hallo's weights without training.
        """
        check_portrait(portrait)
        prepared = self._prepare(portrait)
        units, fields = self._expression(labels, np.asarray(weights, dtype=np.float64).reshape(1, -1))
        rest = np.zeros(1, dtype=np.float32)
        still = motion.HeadTrack.still(1)
        return next(self._frames(prepared, _Tracks(units, fields, rest, rest, rest, still), None))

    def prepared_rig(self, portrait: Portrait) -> FaceRig:
        """The portrait's face rig, as `render` builds it (cached)."""
        return self._prepare(portrait).rig

    # -- steps -----------------------------------------------------------------------------------------

    def _expression(self, labels: list[str], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """For per-frame emotion weights (frames, labels) = probability x intensity: the action-unit
        activations (frames, units), which drive shading, teeth and sclera, and the real-motion landmark
        moves (frames, 468 * 2) in IOD, or None when the FACS rows move the face themselves."""
        if self.real is None:
            table = np.asarray(self.facs.weights(labels), dtype=np.float32)  # (labels, units)
            return (weights @ table).astype(np.float32), None
        units = weights @ self.real.unit_weights(labels, list(self.facs.units))
        return units.astype(np.float32), weights @ self.real.field_stack(labels)

    def _prepare(self, portrait: Portrait) -> _Prepared:
        key = self._key(portrait)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        image = np.ascontiguousarray(portrait.image)
        landmarks = np.asarray(portrait.landmarks, dtype=np.float64)
        depth = None if portrait.depth is None else np.asarray(portrait.depth, dtype=np.float64)
        if image.shape[0] != self.size:
            scale = self.size / image.shape[0]
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            image = cv2.resize(image, (self.size, self.size), interpolation=interp)
            landmarks = landmarks * scale
            depth = None if depth is None else depth * scale
        landmarks = np.clip(landmarks, 1.0, self.size - 2.0)
        smile = None if self.real is None else self.real.fields.get("happy")
        rig = FaceRig(landmarks, depth, self.facs, self.visemes, smile)
        # colours from the portrait's own lips and skin
        mouth = MouthPainter(image, landmarks, self.visemes.mouth)
        eyes = EyeWhitePainter(image, landmarks)
        if rig.rest_gap > 0.02:  # the portrait shows teeth: give it closed-lip texture to close onto
            image = close_mouth_texture(image, landmarks, rig.frame.ey)

        # fixed border, a rigid ring around the head, and the landmarks; ring points crowding a landmark
        # or the border would make slivers, so they are dropped
        edge = np.linspace(0, self.size - 1, _BORDER_POINTS + 1)
        last = self.size - 1.0
        border = np.array(
            [(x, 0.0) for x in edge]
            + [(x, last) for x in edge]
            + [(0.0, y) for y in edge[1:-1]]
            + [(last, y) for y in edge[1:-1]]
        )
        ring = rig.head_ring(self.size)
        if len(ring):
            near = np.min(np.linalg.norm(ring[:, None] - landmarks[None], axis=2), axis=1)
            ring = ring[near > 0.15 * rig.frame.iod]
        border = border[np.min(np.linalg.norm(border[:, None] - landmarks[None], axis=2), axis=1) > 2.0]
        source = np.vstack([landmarks, ring, border])
        warp = PiecewiseAffineWarp(source, self.size)
        movable = np.zeros(len(source), dtype=bool)
        movable[: len(landmarks)] = True
        corners = {*topo.MOUTH_CORNERS, topo.LIP_INNER_UPPER[0], topo.LIP_INNER_UPPER[-1]}
        upper = sorted(
            {*topo.LIP_INNER_UPPER, *sum(topo.LIP_UPPER_RINGS, ()), *topo.LIP_OUTER_UPPER} - corners
        )
        lower = sorted(
            {*topo.LIP_INNER_LOWER, *sum(topo.LIP_LOWER_RINGS, ()), *topo.LIP_OUTER_LOWER} - corners
        )
        tri = warp.triangles
        # triangles between the lips or between the lids may collapse when they meet
        exempt = np.isin(tri, upper).any(axis=1) & np.isin(tri, lower).any(axis=1)
        assert isinstance(exempt, np.ndarray)  # any(axis=1) of a 2-D array: numpy types it array | bool
        for lid_up, lid_lo in ((topo.EYE_R_UPPER, topo.EYE_R_LOWER), (topo.EYE_L_UPPER, topo.EYE_L_LOWER)):
            exempt |= np.isin(tri, lid_up[1:-1]).any(axis=1) & np.isin(tri, lid_lo[1:-1]).any(axis=1)
        prepared = _Prepared(
            image=image,
            rig=rig,
            warp=warp,
            ring=ring,
            border=border,
            movable=movable,
            exempt=exempt,
            mouth=mouth,
            eyes=eyes,
        )
        with self._lock:
            self._cache[key] = prepared
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return prepared

    def _key(self, portrait: Portrait) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.ascontiguousarray(portrait.image).tobytes())
        digest.update(np.ascontiguousarray(portrait.landmarks, dtype=np.float32).tobytes())
        if portrait.depth is not None:
            digest.update(np.ascontiguousarray(portrait.depth, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def _targets(self, prepared: _Prepared, tracks: _Tracks) -> Iterator[np.ndarray]:
        """Per frame, the warp's target control points (landmarks first, then the head ring and border)."""
        rig, warp = prepared.rig, prepared.warp
        units, fields, head = tracks.units, tracks.fields, tracks.head
        mouth_open, mouth_width, blink = tracks.mouth_open, tracks.mouth_width, tracks.blink
        limit, speech_max = self.visemes.mouth["max_total_open"], self.visemes.mouth["max_open"]
        lo, hi = 1.0, self.size - 2.0
        for i in range(len(units)):
            pose = HeadPose(
                yaw=float(head.yaw[i]),
                pitch=float(head.pitch[i]),
                roll=float(head.roll[i]),
                tx=float(head.tx[i]),
                ty=float(head.ty[i]),
            )
            # speech moves the jaw on top of a jaw-drop AU: its range is scaled into the room left below a
            # plausible maximum (clipping it there would freeze the mouth and lose the lip sync)
            field = None if fields is None else fields[i].reshape(N_LANDMARKS, 2)
            au_open = 0.0 if field is not None else float(units[i] @ rig.unit_open)
            opening = float(mouth_open[i]) * min(1.0, max(limit - au_open, 0.0) / speech_max)
            points = rig.pose(units[i], opening, float(mouth_width[i]), float(blink[i]), pose, field)
            ring = rig.move_head(prepared.ring, pose, 0.0) if len(prepared.ring) else prepared.ring
            target = np.vstack([np.clip(points, lo, hi), ring.reshape(-1, 2), prepared.border])
            yield warp.untangle(target, prepared.movable, prepared.exempt)

    def _frames(
        self, prepared: _Prepared, tracks: _Tracks, progress: ProgressFn | None
    ) -> Iterator[np.ndarray]:
        units, blink = tracks.units, tracks.blink
        n_frames = len(units)
        rig, warp = prepared.rig, prepared.warp
        targets = self._targets(prepared, tracks)
        for i, target in enumerate(targets):
            points = target[:N_LANDMARKS]
            boxes = [points[_MOUTH_BOX]] + ([points[box] for box in _EYE_BOXES] if blink[i] > 0.02 else [])
            # map2=None is what remap takes with an (H, W, 2) map1; opencv's stubs leave None out
            frame = cv2.remap(  # type: ignore[call-overload]
                prepared.image,
                warp.maps(target, boxes),
                None,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            geom = FaceFrame.from_landmarks(points)
            teeth = max(float(units[i] @ rig.unit_teeth), 0.0)
            prepared.mouth.paint(frame, points, geom.ex, geom.ey, geom.iod, teeth)
            rise = rig.bared_sclera(units[i])
            if rise.any():
                prepared.eyes.paint(frame, points, rise * (1.0 - float(blink[i])), geom.ex, geom.ey)
            self._wrinkles.paint(
                frame, points, units[i], geom.ex, geom.ey, geom.iod, prepared.mouth.colourful
            )
            yield frame
            if progress is not None and ((i + 1) % _PROGRESS_EVERY == 0 or i + 1 == n_frames):
                progress(i + 1, n_frames)
