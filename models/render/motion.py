"""Per-frame animation tracks: mouth (from phonemes or loudness), blinks and head motion.

Tracks are small float arrays (a few numbers per frame), computed up front so the frame loop only reads
them. Random ones come from one seeded generator, drawn in a fixed order, so a seed fixes the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.render.tables import VisemeTable
from models.types import PhonemeTiming

_BLOCK_S = 0.01  # loudness analysis hop
_CHUNK = 1 << 20  # samples per chunk, so long audio never needs a second full-size copy


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.3 or len(x) < 2:
        return x
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(np.pad(x, radius, mode="edge"), kernel, mode="valid")


def loudness(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int, range_db: float) -> np.ndarray:
    """Per-frame loudness in 0..1: 1 at the 95th-percentile level, 0 at `range_db` below it or in silence."""
    samples = np.asarray(samples).reshape(-1)
    block = max(1, round(sample_rate * _BLOCK_S))
    n_blocks = int(np.ceil(len(samples) / block))
    power = np.zeros(max(n_blocks, 1), dtype=np.float64)
    chunk_len = max(block, (_CHUNK // block) * block)  # whole blocks per chunk
    for start in range(0, len(samples), chunk_len):
        chunk = samples[start : start + chunk_len].astype(np.float32)
        chunk = np.pad(chunk, (0, (-len(chunk)) % block))
        first = start // block
        power[first : first + len(chunk) // block] = (chunk.reshape(-1, block) ** 2).mean(axis=1)
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)
    # average power over a 60 ms window centred on each frame
    times = np.arange(n_frames) / fps
    cum = np.concatenate([[0.0], np.cumsum(power)])
    block_s = block / sample_rate  # exact, so long audio does not drift against the frames
    lo = np.clip(np.round((times - 0.03) / block_s).astype(int), 0, len(power))
    hi = np.clip(np.round((times + 0.03) / block_s).astype(int), 0, len(power))
    frame_power = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
    db = 10 * np.log10(frame_power + 1e-12)
    voiced = power > 1e-8  # about -80 dBFS: digital silence does not set the reference
    if not voiced.any():
        return np.zeros(n_frames, dtype=np.float32)
    ref = float(np.percentile(10 * np.log10(power[voiced]), 95))
    level = np.clip((db - (ref - range_db)) / range_db, 0.0, 1.0)
    level[frame_power < 1e-7] = 0.0
    return level.astype(np.float32)


def mouth_from_energy(level: np.ndarray, table: VisemeTable, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Opening follows the loudness envelope: fast to open, a little slower to close, shut in silence."""
    p = table.mouth
    target = p["energy_open"] * level.astype(np.float64) ** 1.4
    up = 1.0 - np.exp(-1.0 / (fps * p["attack_s"]))
    down = 1.0 - np.exp(-1.0 / (fps * p["release_s"]))
    out = np.zeros_like(target)
    state = 0.0
    for i, value in enumerate(target):
        state += (value - state) * (up if value > state else down)
        out[i] = state
    return np.minimum(out, p["max_open"]).astype(np.float32), np.zeros(len(level), dtype=np.float32)


def mouth_from_phonemes(
    phonemes: list[PhonemeTiming], table: VisemeTable, fps: float, n_frames: int, level: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Viseme targets on a 100 Hz grid, coarticulated by a short blur, sampled at the frame times."""
    p = table.mouth
    rate = 100.0
    duration = n_frames / fps
    n = int(np.ceil(duration * rate)) + 2
    grid_t = np.arange(n) / rate
    open_ = np.zeros(n)
    width = np.zeros(n)
    known = np.ones(n, dtype=bool)  # silence is a known "closed" target; transparent phonemes are not
    bilabial = np.zeros(n, dtype=bool)
    for ph in sorted(phonemes, key=lambda x: x.start):
        lo = int(np.clip(np.floor(ph.start * rate), 0, n))
        hi = int(np.clip(np.ceil(ph.end * rate), lo, n))
        if hi <= lo:
            continue
        viseme = table.lookup(ph.phoneme)
        if viseme is None:
            known[lo:hi] = False
            continue
        known[lo:hi] = True
        open_[lo:hi] = viseme.open
        width[lo:hi] = viseme.width
        bilabial[lo:hi] = table.is_bilabial(ph.phoneme)
    if known.any() and not known.all():  # transparent stretches take their neighbours' shape
        idx = np.flatnonzero(known)
        open_[~known] = np.interp(np.flatnonzero(~known), idx, open_[idx])
        width[~known] = np.interp(np.flatnonzero(~known), idx, width[idx])
    sigma = p["smooth_s"] * rate
    open_ = _gaussian_blur(open_, sigma)
    width = _gaussian_blur(width, sigma)
    # lips really meet on p/b/m even inside a vowel-heavy blur
    open_[bilabial] *= p["closure_keep"]
    open_ = _gaussian_blur(open_, 0.012 * rate)
    times = np.arange(n_frames) / fps
    frame_open = np.interp(times, grid_t, open_)
    frame_width = np.interp(times, grid_t, width)
    frame_open *= (1.0 - p["loudness_mix"]) + p["loudness_mix"] * level
    return (
        np.clip(frame_open, 0.0, p["max_open"]).astype(np.float32),
        frame_width.astype(np.float32),
    )


def blinks(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Lid closure 0..1 per frame: a blink every 2-6 s, ~150 ms, closing faster than it opens."""
    out = np.zeros(n_frames, dtype=np.float32)
    duration = n_frames / fps
    t = float(rng.uniform(0.6, 2.5))
    times = np.arange(n_frames) / fps
    while t < duration:
        peak = round(t * fps) / fps  # put full closure on a frame so no blink is missed at 25 fps
        rel = times - peak
        near = np.abs(rel) < 0.3
        shape = np.where(rel < 0, np.exp(-((rel / 0.035) ** 2)), np.exp(-((rel / 0.07) ** 2)))
        out[near] = np.maximum(out[near], shape[near])
        t += float(rng.uniform(2.0, 6.0))
    return out


@dataclass
class HeadTrack:
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray

    @classmethod
    def still(cls, n_frames: int) -> HeadTrack:
        """A head that does not move for `n_frames`."""
        rest = np.zeros(n_frames, dtype=np.float32)
        return cls(yaw=rest, pitch=rest, roll=rest, tx=rest, ty=rest)


# Amplitudes at head_motion = 1: radians for angles, inter-ocular distances for translation.
_HEAD_AMPLITUDE = {"yaw": 0.022, "pitch": 0.015, "roll": 0.02, "tx": 0.025, "ty": 0.012}


def head_motion(
    n_frames: int, fps: float, rng: np.random.Generator, amount: float, level: np.ndarray
) -> HeadTrack:
    """Slow seeded sway (three incommensurate sines per axis) plus a small nod that follows speech."""
    t = np.arange(n_frames) / fps
    axes = {}
    for name, amplitude in _HEAD_AMPLITUDE.items():
        freqs = rng.uniform(0.06, 0.45, size=3)
        phases = rng.uniform(0.0, 2 * np.pi, size=3)
        weights = rng.uniform(0.5, 1.0, size=3)
        weights /= weights.sum()
        wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(
            axis=0
        )
        axes[name] = amplitude * wave
    emphasis = _gaussian_blur(level.astype(np.float64), 0.18 * fps)
    axes["pitch"] = axes["pitch"] + 0.012 * (emphasis - emphasis.mean() if len(emphasis) else emphasis)
    axes["ty"] = axes["ty"] + 0.008 * (emphasis - emphasis.mean() if len(emphasis) else emphasis)
    return HeadTrack(**{k: (amount * v).astype(np.float32) for k, v in axes.items()})
