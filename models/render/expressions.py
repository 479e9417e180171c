"""Expressions from real motion: per emotion, how real actors' landmarks move from their own neutral.

    MEAD tracks -> per actor, the median move of every landmark over the clip (face frame, IOD), at the
        clip's strong moments (90th percentile along it)
        -> mirrored and averaged over actors -> prompts/expressions.json
    the renderer: field x intensity, in the portrait's own face frame (IOD scales it to the person)

Speech moves the mouth in every MEAD clip, the neutral one too, so the median over a clip keeps the
emotion's lasting offset and not the talking.

The face mesh under-reports expression (its shape prior pulls towards a mean face): a brow warped down by
0.05 IOD is re-detected as about 0.03. The fields were measured through that detector, and the renderer
plays them as measured, so a re-detected render moves about each region's gain (`detector_gain`, 0.35-0.7
outside the jaw, measured by warping tuning portraits and re-detecting them) of the actors' move. The
gain-corrected fields (`ExpressionTable.from_document`) are what the FACS explanation is fitted to, and
what bench/face_tables.py's closed loop checks. Playing them was tried (bench/README.md, "Playing the
fields over the detector's gain"): EF-agreement did not move, while more clips left the actors' range
and smiles rippled the lips, so the renderer does not.

Speech opens the lips as the actors' does in each emotion (`speech_opening`): per emotion, the spread of
their inner-lip gap while talking over their neutral talking's (sad speakers open less), and a scale that
brings neutral speech to the actors' neutral range on the tuning portraits (bench/face_tables.py).

Each played field is also explained in FACS terms: non-negative action-unit activations fitted to it
(`units`), which drive what geometry cannot show (wrinkle shading, bared teeth and sclera) and say in words
what the field does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernel.errors import EngineError
from models.render.topology import FACE_REGIONS, LIP_INNER_MID

if TYPE_CHECKING:
    from models.evaluate.real_faces import LandmarkTrack
    from models.render.tables import FacsTable, VisemeTable

EXPRESSIONS_FILE = Path(__file__).resolve().parents[2] / "prompts" / "expressions.json"
# the actors' range per emotion and region (median, p95), which the naturalness measure also reads
RANGE_FILE = Path(__file__).resolve().parents[2] / "prompts" / "expression_range.json"
N_LANDMARKS = 468
_AMPLITUDE_CAP = 1.6
_STRONG_QUANTILE = 0.9  # intensity 1.0: level 3 at its strong moments, not its average
_UPPER_FACE = ("brows", "upper_lids", "lower_lids", "cheeks")
# landmarks nearer than this to the mirror image of another (IOD, on the neutral face) are its partner
_MIRROR_MATCH_IOD = 0.05


@dataclass(frozen=True)
class ExpressionTable:
    """Per emotion: the displacement field (468, 2) in IOD the renderer plays, and its FACS explanation."""

    fields: dict[str, np.ndarray]
    units: dict[str, dict[str, float]]  # emotion -> action unit -> fitted activation
    source: str
    document: str  # the file's text, for the renderer's identity (cache key)
    # speech's lip opening: `speech_scale` for neutral speech (calibrated to the actors' neutral talking),
    # times each emotion's ratio to neutral in the actors' lip-gap motion (sad speakers open less)
    speech_scale: float = 1.0
    speech_ratio: dict[str, float] = dataclass_field(default_factory=dict)
    # per emotion, the factor the field was scaled by to stay within the actors' p95 (1: already within)
    range_scale: dict[str, float] = dataclass_field(default_factory=dict)

    def speech_factor(self, labels: list[str], weights: np.ndarray) -> np.ndarray:
        """(frames,) the speech opening's factor for per-frame weights (frames, labels) = probability x
        intensity; weight not given to an emotion is neutral's."""
        ratio = np.array([self.speech_ratio.get(label, 1.0) for label in labels])
        return np.asarray(self.speech_scale * np.clip(1.0 + weights @ (ratio - 1.0), 0.3, 2.0))

    @classmethod
    def from_document(cls, doc: dict[str, Any], text: str = "") -> ExpressionTable:
        """Played fields = measured fields / the detector's gain of each landmark's region."""
        neutral = np.asarray(doc["neutral"], dtype=np.float64)
        gain = landmark_gain(neutral, doc.get("detector_gain", {}))
        fields = {e: np.asarray(f, dtype=np.float64) / gain[:, None] for e, f in doc["fields"].items()}
        units = {e: {u: float(a) for u, a in acts.items()} for e, acts in doc.get("units", {}).items()}
        scale, ratio = _speech(doc)
        return cls(fields, units, str(doc.get("source", "")), text, scale, ratio)

    def field_stack(self, labels: list[str]) -> np.ndarray:
        """(labels, 468 * 2): labels the table does not know (a curve label with no field) move nothing."""
        zero = np.zeros((N_LANDMARKS, 2))
        return np.stack([self.fields.get(label, zero).reshape(-1) for label in labels])

    def unit_weights(self, labels: list[str], unit_names: list[str]) -> np.ndarray:
        """(labels, units): the fitted activations, in the order of `unit_names`."""
        return np.array([[self.units.get(label, {}).get(u, 0.0) for u in unit_names] for label in labels])


def landmark_gain(neutral: np.ndarray, region_gain: dict[str, float]) -> np.ndarray:
    """(468,) each landmark takes the gain of the region of its nearest region landmark (1 where unknown)."""
    members = [(i, name) for name, idx in FACE_REGIONS.items() for i in idx]
    index = np.array([i for i, _ in members])
    d = np.linalg.norm(neutral[:, None] - neutral[index][None], axis=2)
    nearest = [members[j][1] for j in d.argmin(axis=1)]
    return np.array([float(region_gain.get(name, 1.0)) for name in nearest])


def mirror_pairs(neutral: np.ndarray) -> np.ndarray:
    """For every landmark, its left-right partner on a frontal neutral face in the face frame (x = 0 is the
    midline); a landmark on the midline is its own partner."""
    reflected = neutral * np.array([-1.0, 1.0])
    d = np.linalg.norm(neutral[:, None] - reflected[None], axis=2)  # (landmark, reflected landmark)
    partner = d.argmin(axis=0)
    if float(d[partner, np.arange(len(neutral))].max()) > 4 * _MIRROR_MATCH_IOD:
        raise EngineError("the neutral face is not frontal enough to pair its left and right landmarks")
    return np.asarray(partner)


def symmetrise(field: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """The mean of a field and its mirror image: an actor's lopsided expression becomes symmetric."""
    mirrored = field[partner] * np.array([-1.0, 1.0])
    return np.asarray((field + mirrored) / 2)


def strong_field(track: LandmarkTrack) -> np.ndarray:
    """A clip's expression at its strong moments: the median move (468, 2), scaled to the 90th percentile
    of how far each frame's upper face (brows, lids, cheeks: speech moves them least) goes along it."""
    moves = track.displacement
    median = np.median(moves, axis=0)
    upper = sorted({i for name in _UPPER_FACE for i in FACE_REGIONS[name]})
    norm = float((median[upper] ** 2).sum())
    if norm < 1e-12:
        return np.asarray(median)
    along = (moves[:, upper] * median[upper]).sum(axis=(1, 2)) / norm
    return np.asarray(median * max(float(np.quantile(along, _STRONG_QUANTILE)), 1.0))


def expression_fields(tracks: list[LandmarkTrack]) -> dict[str, Any]:
    """The expressions.json document from real tracks: fields per emotion, averaged over speakers."""

    speakers = sorted({t.speaker for t in tracks})
    neutral = np.mean([next(t.neutral for t in tracks if t.speaker == s) for s in speakers], axis=0)
    partner = mirror_pairs(neutral)
    fields: dict[str, np.ndarray] = {}
    for emotion in sorted({t.emotion for t in tracks}):
        per_speaker = [strong_field(t) for t in tracks if t.emotion == emotion]
        mean = symmetrise(np.mean(per_speaker, axis=0), partner)
        # where actors disagree the mean shrinks: restore their typical amplitude along the shared part
        # (capped, so a near-cancelled mean is not blown up into noise)
        typical = float(np.mean([np.linalg.norm(f) for f in per_speaker]))
        fields[emotion] = mean * min(typical / max(float(np.linalg.norm(mean)), 1e-9), _AMPLITUDE_CAP)
    fields["neutral"] = np.zeros((N_LANDMARKS, 2))  # by definition: the reference itself
    return {
        "source": f"MEAD front clips at level 3, speakers {', '.join(speakers)}: median landmark move "
        "from the speaker's neutral over each clip (3-D aligned), scaled to the clip's 90th percentile "
        "along it, mirrored, averaged over speakers at their typical amplitude (IOD, face frame)",
        "landmarks": N_LANDMARKS,
        "neutral": np.round(neutral, 4).tolist(),
        "detector_gain": {},
        "units": {},
        "fields": {e: np.round(f, 4).tolist() for e, f in fields.items()},
    }


def with_gain(doc: dict[str, Any], region_gain: dict[str, float], how: str) -> dict[str, Any]:
    """The document with the detector's gain set, and the FACS explanation fitted to the played fields."""
    from models.render.tables import load_facs, load_visemes

    out = {**doc, "detector_gain": {k: round(v, 3) for k, v in region_gain.items()}, "gain_source": how}
    table = ExpressionTable.from_document(out)
    out["units"] = explain(table.fields, np.asarray(doc["neutral"]), load_facs(), load_visemes())
    return out


def explain(
    fields: dict[str, np.ndarray], neutral: np.ndarray, facs: FacsTable, visemes: VisemeTable
) -> dict[str, dict[str, float]]:
    """Non-negative FACS activations that best reproduce each field on the actors' mean neutral face."""
    from scipy.optimize import nnls  # here, not at the top: scipy.optimize costs every CLI process ~0.4 s

    from models.render.rig import FaceRig

    iod_px = 100.0
    rig = FaceRig(neutral * iod_px + 300.0, None, facs, visemes)
    basis = rig.unit_basis / iod_px  # (units, 936) IOD per activation
    out = {}
    for emotion, field in fields.items():
        played = rig.field_moves(field) / iod_px  # as the rig plays it: the lip gap is speech's
        activations, _ = nnls(basis.T, played.reshape(-1))
        out[emotion] = {
            name: round(float(a), 3) for name, a in zip(rig.unit_names, activations, strict=True) if a >= 0.01
        }
    return out


@lru_cache(maxsize=4)
def load_expressions(path: Path = EXPRESSIONS_FILE, range_path: Path | None = RANGE_FILE) -> ExpressionTable:
    """The table the renderer plays: the fields as the face mesh measured them on the actors (not over
    its gain; see the module's docstring), each brought within the actors' range (`within_range`; none
    with range_path=None), with the FACS explanation and the speech opening."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = json.loads(text)
        fields = {e: np.asarray(f, dtype=np.float64) for e, f in doc["fields"].items()}
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"cannot read the expression table {path}: {exc}") from exc
    try:
        limits = None if range_path is None else json.loads(Path(range_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read the actors' expression range {range_path}: {exc}") from exc
    bad = [e for e, f in fields.items() if f.shape != (N_LANDMARKS, 2)]
    if bad:
        raise EngineError(f"{path}: fields of {bad} are not {N_LANDMARKS} x 2 displacements")
    units = {e: {u: float(a) for u, a in acts.items()} for e, acts in doc.get("units", {}).items()}
    scales = {} if limits is None else within_range(fields, limits.get("emotions", {}))
    for emotion, factor in scales.items():
        fields[emotion] = fields[emotion] * factor
        units[emotion] = {u: a * factor for u, a in units.get(emotion, {}).items()}
    scale, ratio = _speech(doc)
    return ExpressionTable(fields, units, str(doc.get("source", "")), text, scale, ratio, scales)


def within_range(
    fields: dict[str, np.ndarray], p95: dict[str, dict[str, dict[str, float]]]
) -> dict[str, float]:
    """Per emotion, the factor (<= 1) that brings the field's largest region move, as a ratio to the
    actors' p95 for that emotion and region, down to 1: intensity 1.0 never asks a region to move
    further than the actors' own strong moments did. The whole field is scaled, so its shape (and its
    FACS explanation, scaled alike) stays; averaging two actors who disagree and restoring their typical
    amplitude is what pushes a region over (surprise's brows to 1.28 of the p95)."""
    scales = {}
    for emotion, field in fields.items():
        limits = p95.get(emotion, {})
        ratios = [
            float(np.linalg.norm(field[list(idx)], axis=1).mean()) / limits[name]["p95"]
            for name, idx in FACE_REGIONS.items()
            if limits.get(name, {}).get("p95", 0.0) > 0.0
        ]
        worst = max(ratios, default=0.0)
        scales[emotion] = 1.0 / worst if worst > 1.0 else 1.0
    return scales


def _speech(doc: dict[str, Any]) -> tuple[float, dict[str, float]]:
    spec = doc.get("speech_opening", {})
    ratio = {str(e): float(r) for e, r in spec.get("ratio", {}).items()}
    return float(spec.get("scale", 1.0)), ratio


def speech_opening(tracks: list[LandmarkTrack]) -> dict[str, float]:
    """Per emotion, how far the actors' lips part in speech against their neutral talking: the standard
    deviation of the inner-lip gap over each clip (the talking, not the expression's offset), per
    speaker over that speaker's neutral, averaged over speakers."""
    top, bottom = LIP_INNER_MID
    spread: dict[str, dict[str, float]] = {}
    for track in tracks:
        gap = track.points[:, bottom, 1] - track.points[:, top, 1]
        spread.setdefault(track.speaker, {})[track.emotion] = float(np.std(gap))
    emotions = sorted({t.emotion for t in tracks})
    return {
        e: round(float(np.mean([s[e] / s["neutral"] for s in spread.values() if e in s])), 3)
        for e in emotions
    }
