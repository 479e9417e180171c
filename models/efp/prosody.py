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
    out = np.full((len(spans), len(FEATURES)), np.nan)
    y = _mono(samples)
    sr = int(sample_rate)
    if sr <= 0 or y.size == 0 or not spans:
        return out
    frame = 2 ** math.ceil(math.log2(0.046 * sr))  # ~46 ms: two periods of the lowest F0 fit
    hop = frame // 4
    if y.size < frame:
        y = np.pad(y, (0, frame - y.size))
    f0, rms_db = _frames(y, sr, frame, hop, config)
    n = min(len(f0), len(rms_db))
    f0, rms_db = f0[:n], rms_db[:n]
    ref_db = float(np.percentile(rms_db, 95))
    if ref_db < -70.0:  # the whole utterance is silent
        return out
    # yin has no voicing decision: trust frames that are loud enough and not pinned to the search bounds
    voiced = (f0 > config.fmin * 1.02) & (f0 < config.fmax * 0.98) & (rms_db > ref_db - 30.0)
    # frame i is centred at i * hop: a word's frames are one contiguous run, found by bisection
    starts = np.array([s for s, _ in spans], dtype=float)
    ends = np.array([e for _, e in spans], dtype=float)
    centres = np.arange(n) * hop / sr
    first = np.searchsorted(centres, np.nan_to_num(starts), side="left")
    stop = np.searchsorted(centres, np.nan_to_num(ends), side="left")

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
        pitch = f0[first[i] : stop[i]][voiced[first[i] : stop[i]]]
        if pitch.size:
            out[i, 0] = float(np.median(12 * np.log2(pitch / 100.0)))
    return out


CHUNK_FRAMES = 4096  # frames per yin call: long audio is analysed in pieces so memory stays flat


def _frames(y: np.ndarray, sr: int, frame: int, hop: int, config: EFPConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F0 (yin) and RMS dB, frames centred at multiples of `hop`, computed chunk by chunk.

    Same frames as librosa's centred analysis (zero padding of half a frame), so short and long audio are
    measured alike; the chunks only bound the size of yin's frame matrix.
    """
    import librosa

    padded = np.pad(y, (frame // 2, frame // 2))
    n = 1 + len(y) // hop
    f0_parts: list[np.ndarray] = []
    rms_parts: list[np.ndarray] = []
    for a in range(0, n, CHUNK_FRAMES):
        b = min(n, a + CHUNK_FRAMES)
        piece = padded[a * hop : (b - 1) * hop + frame]
        if piece.size < frame:
            piece = np.pad(piece, (0, frame - piece.size))
        f0 = librosa.yin(
            piece, fmin=config.fmin, fmax=config.fmax, sr=sr, frame_length=frame, hop_length=hop, center=False
        )
        f0_parts.append(f0)
        rms = librosa.feature.rms(y=piece, frame_length=frame, hop_length=hop, center=False)[0]
        rms_parts.append(20 * np.log10(rms + 1e-10))
    return np.concatenate(f0_parts), np.concatenate(rms_parts)


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


def squared_distances(z: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """[words, labels] squared distance from each word's z-scores to each profile, over the features the
    word has; rows of NaN where it has none."""
    have = np.isfinite(z)
    diff = np.where(have[:, None, :], np.nan_to_num(z)[:, None, :] - profile[None, :, :], 0.0)
    d2 = (diff**2).sum(axis=2)
    d2[~have.any(axis=1)] = np.nan
    return d2


def score(z: np.ndarray, profile: np.ndarray, temperature: float) -> np.ndarray:
    """[words, labels] p ~ exp(-d^2 / 2T^2) over the features the word has; rows of NaN where it has none."""
    logits = -squared_distances(z, profile) / (2 * temperature**2)
    usable = np.isfinite(logits).all(axis=1)
    out = np.full(logits.shape, np.nan)
    if usable.any():
        shifted = logits[usable] - logits[usable].max(axis=1, keepdims=True)
        e = np.exp(shifted)
        out[usable] = e / e.sum(axis=1, keepdims=True)
    return out


def arousal(z_row: np.ndarray, direction: np.ndarray) -> float:
    """How much of a label's acoustic profile the word expresses (1 = all of it, negative = the opposite)."""
    have = np.isfinite(z_row) & (direction != 0)
    norm = float((direction[have] ** 2).sum())
    if norm == 0.0:
        return 0.0
    return float((z_row[have] * direction[have]).sum() / norm)
