"""Loads the emotion vocabulary from prompts/emotions.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import InputError
from models.identity import TablePart


@dataclass(frozen=True)
class Prosody:
    """Speech at intensity 1.0, relative to neutral (the units of prompts/emotions.yaml's header)."""

    pitch_semitones: float
    pitch_range: float
    rate: float
    energy_db: float
    pause_ms: float
    # the F0 contour's shape and the voice's quality; engines that cannot do them ignore them
    declination_st_s: float = 0.0  # change of the F0 slope across a sentence (> 0: flatter or rising)
    tilt_db: float = 0.0  # spectral level of 1-4 kHz against 0-1 kHz (> 0: a tenser, brighter voice)
    breath_db: float = 0.0  # aperiodicity of voiced sound (> 0: breathier)

    def scaled(self, intensity: float) -> Prosody:
        """Linear interpolation from neutral (intensity 0) to this emotion's full prosody (1)."""
        k = max(0.0, min(1.0, intensity))
        return Prosody(
            pitch_semitones=self.pitch_semitones * k,
            pitch_range=1.0 + (self.pitch_range - 1.0) * k,
            rate=1.0 + (self.rate - 1.0) * k,
            energy_db=self.energy_db * k,
            pause_ms=self.pause_ms * k,
            declination_st_s=self.declination_st_s * k,
            tilt_db=self.tilt_db * k,
            breath_db=self.breath_db * k,
        )


PROSODY_KEYS = frozenset(Prosody.__dataclass_fields__)
REQUIRED_PROSODY_KEYS = frozenset({"pitch_semitones", "pitch_range", "rate", "energy_db", "pause_ms"})


def _prosody(name: str, spec: dict[str, Any], path: Path) -> Prosody:
    """An emotion's prosody row; InputError names the file, the emotion and the key that is wrong."""
    unknown = sorted(set(spec) - PROSODY_KEYS)
    missing = sorted(REQUIRED_PROSODY_KEYS - set(spec))
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
        raise InputError(f"{path}: emotion {name!r}: prosody has {problem}; keys are {sorted(PROSODY_KEYS)}")
    try:
        return Prosody(**{k: float(v) for k, v in spec.items()})
    except (TypeError, ValueError):
        raise InputError(f"{path}: emotion {name!r}: every prosody value must be a number") from None


@dataclass(frozen=True)
class Emotion:
    name: str
    color: str
    default_intensity: float
    synonyms: dict[str, float]
    prosody: Prosody
    acoustic: dict[str, float]
    prototypes: tuple[str, ...]


@dataclass(frozen=True)
class Blend:
    """A mixed feeling ("bittersweet"): its parts as (label, intensity), the dominant part first."""

    name: str
    parts: tuple[tuple[str, float], ...]

    @property
    def dominant(self) -> tuple[str, float]:
        return self.parts[0]


@dataclass(frozen=True)
class Vocabulary:
    emotions: dict[str, Emotion]
    intensity_words: dict[str, float]
    neutral: str
    source: str  # file the vocabulary came from, for the audit trail
    blends: dict[str, Blend] = field(default_factory=dict)
    manners: dict[str, tuple[str, float]] = field(default_factory=dict)  # delivery stem -> (label, intensity)
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as parsed

    @property
    def labels(self) -> list[str]:
        return list(self.emotions)

    def emotion(self, name: str) -> Emotion:
        """The emotion called `name` or one of its synonyms; InputError lists the valid names."""
        key = name.strip().lower()
        if key in self.emotions:
            return self.emotions[key]
        for emotion in self.emotions.values():
            if key in emotion.synonyms:
                return emotion
        raise InputError(f"unknown emotion {name!r}; valid emotions are: {', '.join(self.labels)}")

    def lookup(self, word: str) -> tuple[str, float] | None:
        """(label, implied intensity) for an emotion word or synonym, else None."""
        key = word.strip().lower()
        for emotion in self.emotions.values():
            if key == emotion.name:
                return emotion.name, emotion.default_intensity
            if key in emotion.synonyms:
                return emotion.name, emotion.synonyms[key]
        return None

    def manner(self, word: str) -> tuple[str, float] | None:
        """(label, intensity) for a delivery word in any simple form: whisper(s/ed/ing), sobbing, cried."""
        key = word.strip().lower()
        candidates = [key]
        for suffix in ("ing", "ed", "es", "s", "ily", "ly"):
            if key.endswith(suffix) and len(key) > len(suffix) + 2:
                stem = key[: -len(suffix)]
                candidates += [stem, stem + "e"]
                if len(stem) > 2 and stem[-1] == stem[-2]:  # sobbing -> sob
                    candidates.append(stem[:-1])
                if stem.endswith("i"):  # cried -> cry
                    candidates.append(stem[:-1] + "y")
        return next((self.manners[c] for c in candidates if c in self.manners), None)


# The parts of emotions.yaml each kind of engine reads: their digests go into its cache keys, so
# retuning a voice's prosody re-speaks without re-planning.
PLANNING_PARTS = ("neutral_label", "emotions.*.synonyms", "intensity_words", "blends", "manners")
PROSODY_PARTS = ("neutral_label", "emotions.*.prosody")
COLOR_PARTS = ("neutral_label", "emotions.*.color")


def vocabulary_table(vocabulary: Vocabulary, *parts: str) -> TablePart:
    """The table as the vocabulary parsed it, narrowed to `parts` (all of it when none are given)."""
    return TablePart(Path(vocabulary.source).name, vocabulary.document, parts or ("",))


def _default_path() -> Path:
    return Path(str(resources.files("prompts") / "emotions.yaml"))


@lru_cache(maxsize=4)
def load_vocabulary(path: Path | None = None) -> Vocabulary:
    path = path or _default_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    emotions = {
        name: Emotion(
            name=name,
            color=spec["color"],
            default_intensity=float(spec["default_intensity"]),
            synonyms={k.lower(): float(v) for k, v in spec["synonyms"].items()},
            prosody=_prosody(name, spec["prosody"], path),
            acoustic={k: float(v) for k, v in spec["acoustic"].items()},
            prototypes=tuple(spec["prototypes"]),
        )
        for name, spec in data["emotions"].items()
    }
    blends = {
        name.lower(): Blend(name.lower(), tuple((str(label), float(value)) for label, value in parts))
        for name, parts in (data.get("blends") or {}).items()
    }
    manners = {
        stem.lower(): (str(label), float(value))
        for stem, (label, value) in (data.get("manners") or {}).items()
    }
    used = [label for blend in blends.values() for label, _ in blend.parts] + [m[0] for m in manners.values()]
    unknown = sorted({label for label in used if label not in emotions})
    if unknown:
        raise InputError(
            f"{path}: blends/manners use unknown emotions {unknown}; valid: {', '.join(emotions)}"
        )
    return Vocabulary(
        emotions=emotions,
        intensity_words={k.lower(): float(v) for k, v in data["intensity_words"].items()},
        neutral=data["neutral_label"],
        source=str(path),
        blends=blends,
        manners=manners,
        document=data,
    )
