"""Per-word prosody reshaping of natural speech with the WORLD vocoder (pyworld).

A neural voice has no pitch control, so Piper's audio is analysed into F0, spectral envelope and
aperiodicity every 5 ms, and each word's frames are changed towards its emotion:

- pitch: log-F0 is moved by `semitones` and its excursions around the sentence median are scaled by
  `pitch_range` (sad speech flattens, surprise widens);
- energy: the spectral envelope is scaled by `gain_db`;
- rate: frames are resampled along time by a smooth rate curve (only where words of one sentence ask
  for different rates; the sentence's own rate already came from Piper's length_scale);
- contour: `declination_st_s` tilts the sentence's log-F0 line about its middle (actors' emotional
  speech falls less across a sentence than their neutral reading);
- voice quality: `tilt_db` raises 1-4 kHz against 0-1 kHz in the envelope (vocal effort), `breath_db`
  raises the aperiodicity of voiced frames (breathiness). Both keep the loudness the gain asks for.

F0 comes from YIN, not from WORLD's own trackers: Piper's vocoder leaves the fundamental weak, and
harvest and dio lock onto the second harmonic in about half of the voiced frames (median 145 Hz against
87 Hz by cepstrum, autocorrelation and YIN), which a resynthesis turns into a voice an octave up.
dio still decides voicing (it is fast and its voiced/unvoiced split is good enough for D4C).

Every per-word target is turned into a per-frame curve that holds the word's value over the word and is
smoothed with an ~80 ms Hann window, so pitch, loudness and tempo glide across emotion boundaries
instead of jumping. Sentences whose words need no pitch or tempo change skip WORLD entirely (it costs
some naturalness) and only get a smoothed gain curve in the time domain.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

with warnings.catch_warnings():
    # pyworld 0.3.5 imports pkg_resources at import time, which only warns
    warnings.simplefilter("ignore")
    import pyworld

FRAME_S = 0.005
RAMP_S = 0.08
F0_FLOOR, F0_CEIL = 60.0, 400.0  # search range for the analysis (a speaking voice)

TimeMap = Callable[[float], float]


@dataclass(frozen=True)
class WordShape:
    """What to do to one word: its span in the input audio and its prosody deltas."""

    start: float
    end: float
    semitones: float = 0.0
    pitch_range: float = 1.0
    gain_db: float = 0.0
    rate: float = 1.0  # relative to the rate the audio was synthesised at (>1 faster)
    declination_st_s: float = 0.0
    tilt_db: float = 0.0
    breath_db: float = 0.0


def needs_world(shapes: Sequence[WordShape]) -> bool:
    """True when some word asks for a pitch or tempo change (gain alone needs no vocoder)."""
    return any(
        abs(s.semitones) > 1e-3
        or abs(s.pitch_range - 1.0) > 1e-3
        or abs(s.rate - 1.0) > 1e-3
        or abs(s.declination_st_s) > 1e-3
        or abs(s.tilt_db) > 1e-3
        or abs(s.breath_db) > 1e-3
        for s in shapes
    )


def frame_curves(
    shapes: Sequence[WordShape], n_frames: int, frame_s: float = FRAME_S, ramp_s: float = RAMP_S
) -> dict[str, np.ndarray]:
    """Per-frame values of every WordShape field, held per word and smoothed over `ramp_s`.

    The audio between two words belongs half to each; before the first and after the last word the
    edge word's value holds.
    """
    times = np.arange(n_frames) * frame_s
    boundaries = np.array([(a.end + b.start) / 2 for a, b in itertools.pairwise(shapes)])
    owner = np.searchsorted(boundaries, times, side="right")
    curves = {
        "semitones": np.array([s.semitones for s in shapes])[owner],
        "pitch_range": np.array([s.pitch_range for s in shapes])[owner],
        "gain_db": np.array([s.gain_db for s in shapes])[owner],
        "declination_st_s": np.array([s.declination_st_s for s in shapes])[owner],
        "tilt_db": np.array([s.tilt_db for s in shapes])[owner],
        "breath_db": np.array([s.breath_db for s in shapes])[owner],
        # smooth tempo in the log domain so that speeding up and slowing down glide symmetrically
        "log_rate": np.log(np.array([max(s.rate, 1e-3) for s in shapes]))[owner],
    }
    width = max(3, round(ramp_s / frame_s) | 1)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    half = width // 2
    smoothed = {
        name: np.convolve(np.pad(curve.astype(np.float64), half, mode="edge"), window, mode="valid")
        for name, curve in curves.items()
    }
    smoothed["rate"] = np.exp(smoothed.pop("log_rate"))
    return smoothed


def apply_gain(x: np.ndarray, sample_rate: int, shapes: Sequence[WordShape]) -> np.ndarray:
    """Time-domain version of the gain curve, for sentences that need no vocoder."""
    n_frames = int(len(x) / (sample_rate * FRAME_S)) + 2
    gain_db = frame_curves(shapes, n_frames)["gain_db"]
    if not np.any(np.abs(gain_db) > 1e-4):
        return np.asarray(x, dtype=np.float32)
    sample_times = np.arange(len(x)) / sample_rate
    gain = 10.0 ** (np.interp(sample_times, np.arange(n_frames) * FRAME_S, gain_db) / 20.0)
    return (x * gain).astype(np.float32)


def reshape(x: np.ndarray, sample_rate: int, shapes: Sequence[WordShape]) -> tuple[np.ndarray, TimeMap]:
    """Reshape pitch, energy and tempo word by word; returns the audio and a map from input to output time."""
    # 1. Analyse
    signal = np.ascontiguousarray(x, dtype=np.float64)
    f0, times = track_f0(signal, sample_rate)
    sp = pyworld.cheaptrick(signal, f0, times, sample_rate)
    ap = pyworld.d4c(signal, f0, times, sample_rate)
    curves = frame_curves(shapes, len(f0))

    # 2. Pitch: shift, scale excursions around the sentence's own median log-F0, tilt its line
    voiced = f0 > 0
    new_f0 = np.zeros_like(f0)
    if voiced.any():
        log_f0 = np.log(f0[voiced])
        centre = float(np.median(log_f0))  # the median, not the mean: emphatic peaks skew the mean up
        voiced_times = times[voiced]
        middle = 0.5 * (voiced_times[0] + voiced_times[-1])
        semitones = curves["semitones"][voiced] + curves["declination_st_s"][voiced] * (voiced_times - middle)
        shifted = (
            centre + curves["pitch_range"][voiced] * (log_f0 - centre) + semitones * math.log(2.0) / 12.0
        )
        new_f0[voiced] = np.clip(np.exp(shifted), 40.0, 700.0)

    # 3. Energy and voice quality: the envelope is a power spectrum, aperiodicity an amplitude ratio
    sp = sp * (10.0 ** (curves["gain_db"] / 10.0))[:, None]
    if np.any(np.abs(curves["tilt_db"]) > 1e-4):
        sp = sp * 10.0 ** (np.outer(curves["tilt_db"], tilt_shape(sp.shape[1], sample_rate)) / 10.0)
    if np.any(np.abs(curves["breath_db"]) > 1e-4):
        breath = np.where(voiced, curves["breath_db"], 0.0)
        ap = np.minimum(ap * (10.0 ** (breath / 20.0))[:, None], 1.0)

    # 4. Tempo: resample frames along a cumulative time axis
    rate = curves["rate"]
    out_pos = np.concatenate([[0.0], np.cumsum(1.0 / rate[:-1])])  # output frame of each input frame
    if np.any(np.abs(rate - 1.0) > 1e-3):
        n_out = round(out_pos[-1]) + 1
        position = np.interp(np.arange(n_out), out_pos, np.arange(len(f0), dtype=np.float64))
        new_f0, sp, ap = _resample_frames(new_f0, sp, ap, position)

    # 5. Synthesise
    y = pyworld.synthesize(
        np.ascontiguousarray(new_f0),
        np.ascontiguousarray(sp),
        np.ascontiguousarray(ap),
        sample_rate,
        FRAME_S * 1e3,
    )
    # WORLD resynthesis comes out about 1 dB louder than its input: match the mean power the gain
    # curve asks for, so that a sentence that went through WORLD is as loud as one that did not
    sample_times = np.arange(len(signal)) / sample_rate
    gain = 10.0 ** (np.interp(sample_times, times, curves["gain_db"]) / 20.0)
    wanted, got = float(np.mean((signal * gain) ** 2)), float(np.mean(y**2))
    if got > 0:
        y = y * math.sqrt(wanted / got)
    frames_in = np.arange(len(out_pos), dtype=np.float64)

    def time_map(t: float) -> float:
        frame = t / FRAME_S
        return (
            float(np.interp(frame, frames_in, out_pos, right=out_pos[-1] + frame - frames_in[-1])) * FRAME_S
        )

    return y.astype(np.float32), time_map


def tilt_shape(n_bins: int, sample_rate: int) -> np.ndarray:
    """dB per 1 dB of tilt for each envelope bin: 0 below 1 kHz, rising with log-frequency to 4 kHz and
    held above, scaled so that the 1-4 kHz band's mean moves by exactly 1 dB (as the measure defines it)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    ramp = np.clip(np.log2(np.maximum(freqs, 1.0) / 1000.0) / 2.0, 0.0, 1.0)
    band = (freqs >= 1000.0) & (freqs < 4000.0)
    return ramp / ramp[band].mean() if band.any() else ramp


def track_f0(signal: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 per WORLD frame (0 = unvoiced) and the frame times: dio's voicing, YIN's values."""
    import librosa

    voicing, times = pyworld.dio(
        signal, sample_rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_S * 1e3
    )
    hop = max(1, int(FRAME_S * sample_rate))
    frame_length = 1 << math.ceil(math.log2(2.2 * sample_rate / F0_FLOOR))  # > 2 periods of the floor
    yin = librosa.yin(
        signal.astype(np.float32),
        fmin=F0_FLOOR,
        fmax=F0_CEIL,
        sr=sample_rate,
        frame_length=frame_length,
        hop_length=hop,
        center=True,
    )
    values = np.interp(times, np.arange(len(yin)) * hop / sample_rate, yin)
    voiced = voicing > 0
    f0 = np.where(voiced, values, 0.0)
    if voiced.sum() >= 3:
        # fold octave errors back towards the sentence's median, then remove single-frame spikes
        median = float(np.median(f0[voiced]))
        f0[voiced & (f0 > 1.8 * median)] /= 2.0
        f0[voiced & (f0 < 0.55 * median)] *= 2.0
        padded = np.pad(f0, 1, mode="edge")
        smoothed = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
        f0 = np.where(voiced & (smoothed > 0), smoothed, f0)
    return f0, times


def _resample_frames(
    f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames at fractional input positions: envelopes blended linearly, F0 in log where both are voiced."""
    lo = np.clip(np.floor(position).astype(int), 0, len(f0) - 1)
    hi = np.minimum(lo + 1, len(f0) - 1)
    w = (position - lo)[:, None]
    new_sp = (1 - w) * sp[lo] + w * sp[hi]
    new_ap = (1 - w) * ap[lo] + w * ap[hi]
    both = (f0[lo] > 0) & (f0[hi] > 0)
    nearest = np.where(w[:, 0] < 0.5, lo, hi)
    new_f0 = f0[nearest].copy()
    wf = w[both, 0]
    new_f0[both] = np.exp((1 - wf) * np.log(f0[lo][both]) + wf * np.log(f0[hi][both]))
    return new_f0, new_sp, new_ap
