"""Prosody evidence: per-word F0, energy and speaking rate, z-scored per utterance, scored by profile."""

from __future__ import annotations

import math

import numpy as np

from models.efp.params import EFPConfig
from models.vocabulary import Vocabulary

FEATURES = ("f0", "energy", "rate")
MIN_WORD_S = 0.01  # shorter words carry no usable acoustics


def _mono(samples: np.ndarray) -> np.ndarray:
    y = np.asarray(samples, dtype=np.float32)
    if y.ndim == 2:  # tolerate (n, channels) or (channels, n) even though the contract says mono
        y = y.mean(axis=int(np.argmin(y.shape)))
    return np.nan_to_num(y.reshape(-1))


def measure(
    samples: np.ndarray,
    sample_rate: int,
    spans: list[tuple[float, float]],
    units: list[float],
    config: EFPConfig,
) -> np.ndarray:
    """[words, 3] raw features (f0 semitones re 100 Hz, energy dB, units per second); NaN where unusable.

    A word is unusable when it is shorter than 10 ms or silent; F0 alone is NaN when no frame is voiced.
    """
    import librosa  # imported here: librosa pulls in numba, which only the EFP needs

    out = np.full((len(spans), len(FEATURES)), np.nan)
    y = _mono(samples)
    sr = int(sample_rate)
    if sr <= 0 or y.size == 0 or not spans:
        return out
    frame = 2 ** math.ceil(math.log2(0.046 * sr))  # ~46 ms: two periods of the lowest F0 fit
    hop = frame // 4
    if y.size < frame:
        y = np.pad(y, (0, frame - y.size))
    f0 = librosa.yin(y, fmin=config.fmin, fmax=config.fmax, sr=sr, frame_length=frame, hop_length=hop)
    rms_db = 20 * np.log10(librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)[0] + 1e-10)
    n = min(len(f0), len(rms_db))
    f0, rms_db = f0[:n], rms_db[:n]
    ref_db = float(np.percentile(rms_db, 95))
    if ref_db < -70.0:  # the whole utterance is silent
        return out
    # yin has no voicing decision: trust frames that are loud enough and not pinned to the search bounds
    voiced = (f0 > config.fmin * 1.02) & (f0 < config.fmax * 0.98) & (rms_db > ref_db - 30.0)
    times = np.arange(n) * hop / sr

    for i, ((start, end), count) in enumerate(zip(spans, units, strict=True)):
        duration = end - start
        if not (math.isfinite(duration) and duration >= MIN_WORD_S):
            continue
        segment = y[max(0, int(start * sr)) : max(0, int(end * sr))]
        if segment.size == 0:
            continue
        energy = 10 * math.log10(float(np.mean(np.square(segment, dtype=np.float64))) + 1e-12)
        if energy < ref_db - config.silence_db:
            continue
        out[i, 1] = energy
        out[i, 2] = count / duration
        frames = voiced & (times >= start) & (times < end)
        if frames.any():
            out[i, 0] = float(np.median(12 * np.log2(f0[frames] / 100.0)))
    return out


def zscores(features: np.ndarray, config: EFPConfig) -> np.ndarray:
    """Per-utterance z-scores per column; NaN stays NaN. Spread floors keep tiny wobbles from looking big."""
    z = np.full_like(features, np.nan)
    for j, name in enumerate(FEATURES):
        column = features[:, j]
        valid = np.isfinite(column)
        if not valid.any():
            continue
        mean = float(column[valid].mean())
        floor = config.z_floor.get(name, 0.0)
        if name == "rate":
            floor *= abs(mean)  # the rate floor is relative: 15 % of the mean rate
        spread = max(float(column[valid].std()), floor, 1e-6)
        z[valid, j] = np.clip((column[valid] - mean) / spread, -config.z_clip, config.z_clip)
    return z


def profiles(vocabulary: Vocabulary) -> np.ndarray:
    """[labels, 3] expected z-scores of a strong emotion (the vocabulary's `acoustic` entries)."""
    return np.array(
        [[vocabulary.emotions[label].acoustic.get(f, 0.0) for f in FEATURES] for label in vocabulary.labels]
    )


def score(z: np.ndarray, profile: np.ndarray, temperature: float) -> np.ndarray:
    """[words, labels] p ~ exp(-d^2 / 2T^2) over the features the word has; rows of NaN where it has none."""
    out = np.full((z.shape[0], profile.shape[0]), np.nan)
    for i, row in enumerate(z):
        have = np.isfinite(row)
        if not have.any():
            continue
        d2 = ((row[have][None, :] - profile[:, have]) ** 2).sum(axis=1)
        logits = -d2 / (2 * temperature**2)
        e = np.exp(logits - logits.max())
        out[i] = e / e.sum()
    return out


def arousal(z_row: np.ndarray, direction: np.ndarray) -> float:
    """How much of a label's acoustic profile the word expresses (1 = all of it, negative = the opposite)."""
    have = np.isfinite(z_row) & (direction != 0)
    norm = float((direction[have] ** 2).sum())
    if norm == 0.0:
        return 0.0
    return float((z_row[have] * direction[have]).sum() / norm)
