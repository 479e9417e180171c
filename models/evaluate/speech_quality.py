"""Whether reshaped speech stays natural: F0 continuity at emotion boundaries, clicks, spectral distortion.

- `boundary_jumps`: the largest frame-to-frame F0 step (semitones, voiced frames 5 ms apart) within
  ±`window_s` of each boundary where the emotion changes. Natural speech moves a few tenths of a semitone
  per 5 ms; a reshaping that jumps at a boundary shows as a step of several.
- `clicks`: samples whose jump from the previous sample is far above every other jump around it (a
  discontinuity an ear hears as a click).
- `voiced_share`: the share of frames pYIN hears as voiced; resynthesis that turns voice into noise shows
  as a drop against the same plan spoken without it.
- `spectral_distortion`: the mean Euclidean distance of MFCCs 1-24 (librosa's, in its dB units) between
  the reshaped and the unmodified speech of the same plan, frames paired by DTW since rate changes move
  them. A relative figure for comparing rows of one table, not the MCD of published papers: it says how
  far the timbre moved, so emotional speech is expected to move somewhat and neutral should not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.evaluate.prosody import FRAME_S, track_f0


def boundary_jumps(
    samples: np.ndarray, sample_rate: int, boundaries: Sequence[float], window_s: float = 0.05
) -> list[float]:
    """Per boundary, the largest F0 step between consecutive voiced frames near it (NaN: no voicing)."""
    n_frames = int(len(samples) / (sample_rate * FRAME_S)) + 1
    f0 = track_f0(np.asarray(samples, dtype=np.float32), sample_rate, n_frames)
    semitones = np.where(f0 > 0, 12.0 * np.log2(np.maximum(f0, 1e-6) / 100.0), np.nan)
    steps = np.abs(np.diff(semitones))  # NaN where either frame is unvoiced
    times = (np.arange(len(steps)) + 0.5) * FRAME_S
    out = []
    for boundary in boundaries:
        near = steps[np.abs(times - boundary) <= window_s]
        near = near[np.isfinite(near)]
        out.append(float(near.max()) if near.size else float("nan"))
    return out


def voiced_share(samples: np.ndarray, sample_rate: int) -> float:
    """The share of 5 ms frames pYIN calls voiced: a vocoder that turns voice into noise lowers it."""
    n_frames = int(len(samples) / (sample_rate * FRAME_S)) + 1
    f0 = track_f0(np.asarray(samples, dtype=np.float32), sample_rate, n_frames)
    return float(np.mean(f0 > 0))


def clicks(samples: np.ndarray, sample_rate: int, ratio: float = 3.0, window_s: float = 0.025) -> int:
    """Sample-to-sample jumps over 0.05 full scale that are `ratio` times larger than any other jump within
    `window_s` either side (outside ±1 ms). A voice's glottal pulses recur every period, so each one has an
    equal neighbour; a click has none."""
    x = np.asarray(samples, dtype=np.float64)
    jump = np.abs(np.diff(x))
    window, guard = round(window_s * sample_rate), max(1, round(0.001 * sample_rate))
    count = 0
    for i in np.flatnonzero(jump > 0.05):
        left = jump[max(0, i - window) : max(0, i - guard)]
        right = jump[i + guard + 1 : i + window + 1]
        neighbour = max(left.max(initial=0.0), right.max(initial=0.0))
        count += int(jump[i] > ratio * max(neighbour, 1e-6))
    return count


def spectral_distortion(reshaped: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean MFCC 1-24 distance between two renderings of the same words, DTW-paired frames."""
    import librosa

    def mfcc(x: np.ndarray) -> np.ndarray:
        hop = round(0.01 * sample_rate)
        coefficients = librosa.feature.mfcc(
            y=np.asarray(x, dtype=np.float32), sr=sample_rate, n_mfcc=25, hop_length=hop, n_fft=1024
        )
        return np.asarray(coefficients[1:], dtype=np.float64)  # c0 is loudness, which the gain sets

    a, b = mfcc(reshaped), mfcc(reference)
    _, path = librosa.sequence.dtw(X=a, Y=b, metric="euclidean")
    diff = a[:, path[:, 0]] - b[:, path[:, 1]]
    return float(np.mean(np.sqrt(np.sum(diff**2, axis=0))))
