"""Loads the renderer's data tables: prompts/facs.yaml (emotion -> action units -> landmark moves) and
prompts/visemes.yaml (IPA phoneme -> mouth opening and width)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import EngineError

N_LANDMARKS = 468
# landmark fields the face rig computes per portrait (models/render/rig.py) that AUs may move
REGIONS = frozenset({"upper_lip", "lower_lip", "upper_lip_depth", "lower_lip_depth", "lower_face"})


def _prompt_path(name: str) -> Path:
    return Path(str(resources.files("prompts") / name))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"renderer table {path} could not be read: {exc}") from exc
    if not isinstance(data, dict):
        raise EngineError(f"renderer table {path} must be a YAML mapping")
    return data


@dataclass(frozen=True)
class WrinklePoint:
    landmark: int
    offset: tuple[float, float]  # (dx, dy) in IOD in the face frame


@dataclass(frozen=True)
class Wrinkle:
    path: tuple[WrinklePoint, ...]
    depth: float  # darkening at activation 1
    width: float  # line width, IOD


@dataclass(frozen=True)
class ActionUnit:
    name: str
    description: str
    radius: float
    moves: dict[int, tuple[float, float]]  # landmark -> (dx, dy) in IOD
    regions: dict[str, tuple[float, float]]  # region name -> (dx, dy) in IOD
    mouth_open: float
    mouth_width: float
    wrinkles: tuple[Wrinkle, ...]
    sclera: float = 0.0  # share of the upper lid's rise painted as eye white (AU5 shows the sclera)
    teeth: float = 0.0  # IOD of upper teeth bared beyond the resting show (a raised upper lip)


@dataclass(frozen=True)
class BlinkSpec:
    close: float  # fraction of the lid gap closed at the peak
    lower_lid_rise: float  # share of the closing done by the lower lid
    crease_close: float  # the crease above the lid travels this fraction of its way to the closed lid line
    skin_follow: float  # the next ring up follows the crease by this fraction


@dataclass(frozen=True)
class NeutraliseSpec:
    max_corner_lift: float  # IOD
    strength: float  # corner drop per IOD of excess lift
    radius: float  # IOD, how far above and below the mouth the bend fades
    max_drop: float = 0.2  # IOD: a broad grin is only partly straightened (fully, it turns into a frown)
    bend_fade: float = 0.5  # beyond the corners the bend fades over this many mouth half-widths
    smile_lift: float = 0.1  # IOD of excess lift at which `undo` applies in full
    undo: dict[str, float] = field(default_factory=dict)  # AU -> activation removed per full smile


@dataclass(frozen=True)
class FacsTable:
    emotions: dict[str, dict[str, float]]  # emotion label -> AU name -> weight
    units: dict[str, ActionUnit]
    blink: BlinkSpec
    neutralise: NeutraliseSpec
    source: str
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as parsed

    def weights(self, labels: list[str]) -> list[list[float]]:
        """[label][AU] weight matrix in the order of `labels` and `units`; unknown labels get no AUs."""
        return [[self.emotions.get(label, {}).get(au, 0.0) for au in self.units] for label in labels]


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise EngineError(f"{where}: expected [dx, dy], got {value!r}")
    return float(value[0]), float(value[1])


def _landmark(value: Any, where: str) -> int:
    index = int(value)
    if not 0 <= index < N_LANDMARKS:
        raise EngineError(f"{where}: landmark index {index} is outside 0..{N_LANDMARKS - 1}")
    return index


@lru_cache(maxsize=4)
def load_facs(path: Path | None = None) -> FacsTable:
    path = path or _prompt_path("facs.yaml")
    data = _read_yaml(path)
    units: dict[str, ActionUnit] = {}
    for name, spec in data["action_units"].items():
        where = f"{path}: {name}"
        wrinkles = []
        for item in spec.get("wrinkles", []):
            points = []
            for p in item["path"]:
                if isinstance(p, list):
                    points.append(WrinklePoint(_landmark(p[0], where), (float(p[1]), float(p[2]))))
                else:
                    points.append(WrinklePoint(_landmark(p, where), (0.0, 0.0)))
            wrinkles.append(Wrinkle(tuple(points), float(item["depth"]), float(item["width"])))
        unknown_regions = set(spec.get("regions") or {}) - REGIONS
        if unknown_regions:
            raise EngineError(f"{where}: unknown regions {sorted(unknown_regions)}; known: {sorted(REGIONS)}")
        units[name] = ActionUnit(
            name=name,
            description=str(spec.get("name", "")),
            radius=float(spec.get("radius", 0.0)),
            moves={_landmark(k, where): _pair(v, where) for k, v in (spec.get("move") or {}).items()},
            regions={str(k): _pair(v, where) for k, v in (spec.get("regions") or {}).items()},
            mouth_open=float(spec.get("mouth_open", 0.0)),
            mouth_width=float(spec.get("mouth_width", 0.0)),
            wrinkles=tuple(wrinkles),
            sclera=float(spec.get("sclera", 0.0)),
            teeth=float(spec.get("teeth", 0.0)),
        )
    emotions = {}
    for label, aus in data["emotions"].items():
        unknown = set(aus or {}) - set(units)
        if unknown:
            raise EngineError(f"{path}: emotion {label} uses undefined action units {sorted(unknown)}")
        emotions[str(label)] = {str(k): float(v) for k, v in (aus or {}).items()}
    blink = BlinkSpec(**{k: float(v) for k, v in data["blink"].items()})
    spec = dict(data["neutralise"])
    undo = {str(k): float(v) for k, v in (spec.pop("undo", None) or {}).items()}
    unknown_undo = sorted(set(undo) - set(units))
    if unknown_undo:
        raise EngineError(f"{path}: neutralise undoes undefined action units {unknown_undo}")
    neutralise = NeutraliseSpec(**{k: float(v) for k, v in spec.items()}, undo=undo)
    return FacsTable(
        emotions=emotions, units=units, blink=blink, neutralise=neutralise, source=str(path), document=data
    )


@dataclass(frozen=True)
class Viseme:
    open: float  # inner-lip gap, IOD
    width: float  # corner move outwards, IOD


# What a phoneme means for the mouth: a shape, a closed mouth, or "whatever the neighbours do".
SILENCE = Viseme(0.0, 0.0)


@dataclass(frozen=True)
class VisemeTable:
    visemes: dict[str, Viseme]
    default: Viseme
    silence: frozenset[str]
    transparent: frozenset[str]
    strip: frozenset[str]
    mouth: dict[str, float]
    source: str
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as parsed

    def lookup(self, phoneme: str) -> Viseme | None:
        """The viseme of an IPA phoneme; SILENCE for pauses; None if it takes its neighbours' shape."""
        raw = unicodedata.normalize("NFC", phoneme)
        if raw in self.transparent:
            return None
        if raw.strip() in self.silence:
            return SILENCE
        # drop stress, length and diacritics, in decomposed form so combining marks come apart
        clean = "".join(
            c for c in unicodedata.normalize("NFD", raw) if c not in self.strip and not c.isspace()
        )
        clean = unicodedata.normalize("NFC", clean)
        if not clean:
            return None
        for end in range(len(clean), 0, -1):  # longest known prefix: "aɪə" -> "aɪ", "tʃʰ" -> "tʃ"
            found = self.visemes.get(clean[:end])
            if found is not None:
                return found
        # a base letter under a combining mark that NFC composed, e.g. "ẽ" -> "e"
        base = unicodedata.normalize("NFD", clean)[0]
        return self.visemes.get(base, self.default)

    def is_bilabial(self, phoneme: str) -> bool:
        clean = "".join(c for c in unicodedata.normalize("NFD", phoneme) if c not in self.strip)
        return clean[:1] in ("p", "b", "m")


@lru_cache(maxsize=4)
def load_visemes(path: Path | None = None) -> VisemeTable:
    path = path or _prompt_path("visemes.yaml")
    data = _read_yaml(path)

    def viseme(spec: dict[str, Any]) -> Viseme:
        return Viseme(float(spec["open"]), float(spec.get("width", 0.0)))

    strip = frozenset(unicodedata.normalize("NFD", s) for s in data.get("strip", []))
    return VisemeTable(
        visemes={unicodedata.normalize("NFC", str(k)): viseme(v) for k, v in data["visemes"].items()},
        default=viseme(data["default"]),
        silence=frozenset(str(s) for s in data.get("silence", [])),
        transparent=frozenset(str(s) for s in data.get("transparent", [])),
        strip=frozenset(c for s in strip for c in s),
        mouth={str(k): float(v) for k, v in data["mouth"].items()},
        source=str(path),
        document=data,
    )
