"""Prosody of a spoken clip, measured the same way on human actors and on the project's voices.

One clip gives (5 ms frames; F0 by pYIN, envelope and aperiodicity by WORLD):
- F0 level (mean semitones re 100 Hz over voiced frames) and range (10th-90th percentile span);
- F0 shape: declination (slope of a line fitted to the voiced semitones, st/s), accent height (how far the
  contour's local peaks rise above that line, st) and the final movement (slope over the last 0.3 s of
  voiced speech, st/s; only where the clip holds the end of its sentence);
- energy: RMS over voiced frames, dB;
- spectral tilt: mean spectral-envelope level of 1-4 kHz minus 0-1 kHz, dB (tense voices are flatter);
- breathiness: WORLD's band aperiodicity below 4 kHz over voiced frames, dB (closer to 0: breathier);
- voicing: the share of voiced frames.

`emodb_profile` turns EmoDB's clips into per-emotion deltas from each speaker's own neutral clips of the same
sentence (a speaker's voice and a sentence's wording cancel out) and takes the median over speakers, so one
actor cannot set a row.
"""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyworld imports pkg_resources, which only warns
    import pyworld

FRAME_S = 0.005
FINAL_S = 0.3
TRAILING_SILENCE_S = 0.1  # a clip whose voice stops this long before its end holds its sentence's end
MEASURES = (
    "f0_st",
    "range_st",
    "declination_st_s",
    "accent_st",
    "final_st_s",
    "energy_db",
    "tilt_db",
    "aperiodicity_db",
    "voiced_share",
)


@dataclass(frozen=True)
class ClipProsody:
    f0_st: float
    range_st: float
    declination_st_s: float
    accent_st: float
    final_st_s: float  # NaN when the clip does not hold its sentence's end
    energy_db: float
    tilt_db: float
    aperiodicity_db: float
    voiced_share: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def track_f0(samples: np.ndarray, sample_rate: int, n_frames: int) -> np.ndarray:
    """pYIN's F0 (0 where unvoiced) on the FRAME_S grid.

    pYIN, not WORLD's trackers: on Piper's voice harvest and dio lock onto the second harmonic in about
    half of the voiced frames (models/tts/shaping.py), which would compare an octave-wrong synthetic voice
    with correctly tracked actors. pYIN runs at a 10 ms hop and is interpolated to the 5 ms grid."""
    import librosa

    hop = round(0.010 * sample_rate)
    f0, voiced, _ = librosa.pyin(
        samples.astype(np.float32), fmin=60.0, fmax=500.0, sr=sample_rate, frame_length=2048, hop_length=hop
    )
    grid = np.arange(n_frames) * FRAME_S
    at = np.arange(len(f0)) * hop / sample_rate
    semitones = np.where(voiced, 12.0 * np.log2(np.nan_to_num(f0, nan=100.0) / 100.0), np.nan)
    nearest = np.clip(np.round(grid / (hop / sample_rate)).astype(int), 0, len(f0) - 1)
    voiced_grid = voiced[nearest]
    filled = np.interp(at, at[voiced], semitones[voiced]) if voiced.any() else np.zeros_like(at)
    out = 100.0 * 2.0 ** (np.interp(grid, at, filled) / 12.0)
    return np.where(voiced_grid, out, 0.0)


def analyse(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F0 (pYIN), WORLD's spectral envelope and aperiodicity at FRAME_S."""
    x = np.ascontiguousarray(samples, dtype=np.float64)
    times = np.arange(int(len(x) / (sample_rate * FRAME_S)) + 1) * FRAME_S
    f0 = track_f0(samples, sample_rate, len(times))
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    return f0, envelope, aperiodicity


def measure(samples: np.ndarray, sample_rate: int) -> ClipProsody:
    """The prosody of one clip (see the module docstring); ValueError for under 0.2 s of voice."""
    f0, envelope, aperiodicity = analyse(samples, sample_rate)
    voiced = f0 > 0
    if voiced.sum() * FRAME_S < 0.2:
        raise ValueError("under 0.2 s of voiced speech")
    times = np.arange(len(f0)) * FRAME_S
    st = 12.0 * np.log2(f0[voiced] / 100.0)
    t = times[voiced]
    slope, intercept = np.polyfit(t, st, 1)
    residual = st - (slope * t + intercept)
    freqs = np.linspace(0, sample_rate / 2, envelope.shape[1])
    level_db = 10.0 * np.log10(np.maximum(envelope[voiced], 1e-12))
    low = level_db[:, (freqs > 50) & (freqs < 1000)].mean(axis=1)
    high = level_db[:, (freqs >= 1000) & (freqs < 4000)].mean(axis=1)
    ap_db = 20.0 * np.log10(np.maximum(aperiodicity[voiced][:, freqs < 4000], 1e-6)).mean()
    hop = round(FRAME_S * sample_rate)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(samples, (0, hop)), hop)[::hop][: len(f0)]
    rms = np.sqrt(np.mean(frames[voiced] ** 2, axis=1) + 1e-12)
    energy_db = 20.0 * np.log10(np.sqrt(np.mean(rms**2)))
    last_voiced = t[-1]
    final = np.nan
    if len(f0) * FRAME_S - last_voiced >= TRAILING_SILENCE_S:
        tail = t >= last_voiced - FINAL_S
        if tail.sum() >= 10:
            final = float(np.polyfit(t[tail], st[tail], 1)[0])
    return ClipProsody(
        f0_st=float(st.mean()),
        range_st=float(np.percentile(st, 90) - np.percentile(st, 10)),
        declination_st_s=float(slope),
        accent_st=float(_peak_heights(residual).mean()) if residual.size else 0.0,
        final_st_s=final,
        energy_db=float(energy_db),
        tilt_db=float((high - low).mean()),
        aperiodicity_db=float(ap_db),
        voiced_share=float(voiced.mean()),
    )


def _peak_heights(residual: np.ndarray, window: int = 30) -> np.ndarray:
    """Heights above the declination line of the contour's local maxima (one per ~150 ms window)."""
    peaks = [residual[i : i + window].max() for i in range(0, len(residual), window)]
    return np.array(peaks)


@dataclass(frozen=True)
class EmodbClip:
    path: Path
    emotion: str  # EmoDB's own class, bored kept apart from neutral
    speaker: str
    text_id: str


def read_emodb(folder: Path) -> list[EmodbClip]:
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return [
            EmodbClip(folder / row["path"], row["emotion"], row["speaker"], row["text_id"])
            for row in csv.DictReader(handle)
        ]


def emodb_profile(
    folder: Path,
    measured: Callable[[Path], ClipProsody],
    word_spans: dict[str, list[tuple[float, float]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per-emotion deltas from each speaker's neutral, median over speakers, with their spread.

    Levels (F0, energy, tilt, breathiness, accent) are differences; `range` is a ratio. With
    `word_spans` (clip path name -> word spans from the aligned clip set) the speaking rate of the same
    words is compared with the same speaker's neutral reading of the same sentence. (That alignment warps
    a pause-free espeak reading onto the clip, so it says nothing about pauses.)
    """
    clips = read_emodb(folder)
    facts: dict[Path, ClipProsody] = {}
    for n, clip in enumerate(clips, start=1):
        with contextlib.suppress(ValueError):  # too little voice to measure
            facts[clip.path] = measured(clip.path)
        if progress is not None:
            progress(n, len(clips))
    neutral: dict[tuple[str, str], list[EmodbClip]] = defaultdict(list)
    for clip in clips:
        if clip.emotion == "neutral" and clip.path in facts:
            neutral[(clip.speaker, clip.text_id)].append(clip)
    # per speaker, per emotion: list of per-clip deltas
    deltas: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for clip in clips:
        refs = neutral.get((clip.speaker, clip.text_id), [])
        if clip.path not in facts or not refs:
            continue
        here = facts[clip.path]
        base = _mean_facts([facts[r.path] for r in refs])
        row = deltas[clip.emotion][clip.speaker]
        for key in MEASURES:
            value, ref = getattr(here, key), base[key]
            if np.isfinite(value) and np.isfinite(ref):
                row[key].append(value / ref if key == "range_st" else value - ref)
        if word_spans is not None:
            rate = _rate(word_spans.get(clip.path.name), [word_spans.get(r.path.name) for r in refs])
            if rate is not None:
                row["rate"].append(rate)
    emotions: dict[str, Any] = {}
    for emotion, by_speaker in sorted(deltas.items()):
        keys = sorted({k for per in by_speaker.values() for k in per})
        summary: dict[str, Any] = {}
        for key in keys:
            per_speaker = [float(np.median(v[key])) for v in by_speaker.values() if v.get(key)]
            if per_speaker:
                summary[key] = {
                    "median": round(float(np.median(per_speaker)), 3),
                    "min": round(min(per_speaker), 3),
                    "max": round(max(per_speaker), 3),
                    "speakers": len(per_speaker),
                    "clips": int(sum(len(v.get(key, [])) for v in by_speaker.values())),
                }
        emotions[emotion] = summary
    return {"clips_measured": len(facts), "clips": len(clips), "emotions": emotions}


def _mean_facts(facts: Iterable[ClipProsody]) -> dict[str, float]:
    rows = [f.as_dict() for f in facts]
    return {
        k: float(np.nanmean([r[k] for r in rows])) if any(np.isfinite(r[k]) for r in rows) else np.nan
        for k in MEASURES
    }


def _rate(
    spans: Sequence[tuple[float, float]] | None, refs: Sequence[Sequence[tuple[float, float]] | None]
) -> float | None:
    """Speaking rate of the words both readings hold: the neutral reading's duration over this one's."""
    ref = next((r for r in refs if r), None)
    if not spans or ref is None:
        return None
    k = min(len(spans), len(ref)) - 1  # the last common word may be cut; stop at the one before
    if k < 2:
        return None
    mine, theirs = spans[k - 1][1] - spans[0][0], ref[k - 1][1] - ref[0][0]
    return theirs / mine if mine > 0 and theirs > 0 else None
