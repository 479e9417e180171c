"""Per-word prosody reshaping of natural speech by pitch-synchronous overlap-add (`psola`).

A neural voice has no pitch control, so Piper's audio is cut into grains one glottal period long and laid
down again, each word's stretch changed towards its emotion:

- pitch: log-F0 is moved by `semitones` and its excursions around the sentence median are scaled by
  `pitch_range` (sad speech flattens, surprise widens); the grains are laid at the new period;
- contour: `declination_st_s` tilts the sentence's log-F0 line about its middle (actors' emotional
  speech falls less across a sentence than their neutral reading);
- rate: grains are repeated or skipped along a smooth rate curve (only where words of one sentence ask
  for different rates; the sentence's own rate already came from Piper's length_scale);
- energy: a gain curve in the time domain;
- voice quality: `tilt_db` raises 1-4 kHz against 0-1 kHz in voiced frames (vocal effort), as a smooth
  time-varying STFT filter. The loudness is then matched, over ~150 ms, to the input's under the gain
  curve, so pitch and tilt change colour, not level. `breath_db` is not applied: envelope-shaped noise
  at the rows' +2-3 dB of aperiodicity cost spectral distance and barely moved the measured aperiodicity
  (bench/README.md).

Why PSOLA and not a vocoder: WORLD's analysis and resynthesis turned a third of this voice's voiced frames
into noise (pYIN's voiced share fell from 0.62 to 0.30-0.51, even for a 0.01-semitone shift); PSOLA
keeps the waveform, and the share stays at 0.54-0.67 (bench/README.md, "Does the reshaping stay natural?").

F0 comes from YIN, not from WORLD's trackers: Piper's vocoder leaves the fundamental weak, and harvest and
dio lock onto the second harmonic in about half of the voiced frames, which would shift the voice an
octave. Voicing is dio's, widened to frames whose period matches the next one and across dropouts of up
to 15 ms, and octave slips are folded back towards the local median (`track_f0`).

Every per-word target is turned into a per-frame curve that holds the word's value over the word and is
smoothed with an ~80 ms Hann window, so pitch, loudness and tempo glide across emotion boundaries
instead of jumping. Sentences whose words need no pitch, tempo or tilt change skip the resynthesis and
only get a smoothed gain curve in the time domain (`needs_resynthesis`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.tts import psola

with warnings.catch_warnings():
    # pyworld 0.3.5 imports pkg_resources at import time, which only warns
    warnings.simplefilter("ignore")
    import pyworld

FRAME_S = 0.005
RAMP_S = 0.08
STFT_N, STFT_HOP = 1024, 256  # the tilt filter's frames: 46 ms at 22.05 kHz, smooth enough in time
LEVEL_HOP_S, LEVEL_SMOOTH_FRAMES = 0.01, 15  # the level match: 10 ms frames, smoothed over ~150 ms
CONTOUR_FRAMES = 7  # the F0 contour whose excursions `pitch_range` scales: median and mean over 35 ms
F0_FLOOR, F0_CEIL = 60.0, 400.0  # search range for the analysis (a speaking voice)
PERIODIC = 0.45  # correlation of one period with the next above which a frame counts as voiced
GAP_FRAMES = 3  # unvoiced dropouts up to 15 ms inside a voiced stretch are treated as voiced

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
    breath_db: float = 0.0  # carried for engines that can apply it; `reshape` does not (see above)


def needs_resynthesis(shapes: Sequence[WordShape]) -> bool:
    """True when some word asks for more than a gain change (gain alone stays in the time domain)."""
    return any(
        abs(s.semitones) > 1e-3
        or abs(s.pitch_range - 1.0) > 1e-3
        or abs(s.rate - 1.0) > 1e-3
        or abs(s.declination_st_s) > 1e-3
        or abs(s.tilt_db) > 1e-3
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
    """The gain curve alone, in the time domain, for sentences that need no resynthesis."""
    n_frames = int(len(x) / (sample_rate * FRAME_S)) + 2
    gain_db = frame_curves(shapes, n_frames)["gain_db"]
    if not np.any(np.abs(gain_db) > 1e-4):
        return np.asarray(x, dtype=np.float32)
    sample_times = np.arange(len(x)) / sample_rate
    gain = 10.0 ** (np.interp(sample_times, np.arange(n_frames) * FRAME_S, gain_db) / 20.0)
    return (x * gain).astype(np.float32)


def reshape(x: np.ndarray, sample_rate: int, shapes: Sequence[WordShape]) -> tuple[np.ndarray, TimeMap]:
    """Reshape pitch, energy, tempo and voice quality word by word; returns the audio and a map from input
    to output time."""
    # 1. Analyse
    signal = np.asarray(x, dtype=np.float64)
    f0, times = track_f0(np.ascontiguousarray(signal), sample_rate)
    curves = frame_curves(shapes, len(f0))
    sample_times = np.arange(len(signal)) / sample_rate
    # the gain goes on first, in the time domain; the level match at the end keeps it
    gained = signal * 10.0 ** (np.interp(sample_times, times, curves["gain_db"]) / 20.0)

    # 2. Tempo: the output time of every input frame, and the input position of every output sample
    rate = curves["rate"]
    out_pos = np.concatenate([[0.0], np.cumsum(1.0 / rate[:-1])])  # output frame of each input frame
    frames_in = np.arange(len(out_pos), dtype=np.float64)

    def time_map(t: float) -> float:
        frame = t / FRAME_S
        return (
            float(np.interp(frame, frames_in, out_pos, right=out_pos[-1] + frame - frames_in[-1])) * FRAME_S
        )

    n_out = max(1, round(time_map(len(signal) / sample_rate) * sample_rate))
    out_frames = np.arange(n_out) / (sample_rate * FRAME_S)
    input_frame = np.interp(out_frames, out_pos, frames_in, right=np.nan)
    beyond = np.isnan(input_frame)  # past the last frame both clocks run at the same speed
    input_frame[beyond] = frames_in[-1] + out_frames[beyond] - out_pos[-1]
    input_position = np.clip(input_frame * FRAME_S * sample_rate, 0.0, len(signal) - 1.0)

    # 3. Pitch and tempo by PSOLA (skipped where neither changes: the input comes back exactly)
    ratio = np.interp(sample_times, times, pitch_ratio(f0, times, curves))
    if np.any(np.abs(ratio - 1.0) > 1e-4) or np.any(np.abs(rate - 1.0) > 1e-3):
        marks, voiced_marks = psola.pitch_marks(gained, sample_rate, f0, FRAME_S)
        out_marks, sources, centres = psola.synthesis_marks(marks, voiced_marks, input_position, ratio)
        y = psola.overlap_add(gained, marks, voiced_marks, out_marks, sources, centres)
    else:
        y = gained.copy()

    # 4. Voice quality (tilt, on voiced frames) and the loudness the gain curve asks for
    at = input_position / sample_rate  # the input time of every output sample
    voicing = np.interp(at, times, _smooth((f0 > 0).astype(np.float64), 5))
    tilt = np.interp(at, times, curves["tilt_db"]) * voicing
    if np.any(np.abs(tilt) > 1e-4):
        y = _apply_tilt(y, sample_rate, tilt)
    y = _match_level(y, gained, input_position, sample_rate)
    return y.astype(np.float32), time_map


def pitch_ratio(f0: np.ndarray, times: np.ndarray, curves: dict[str, np.ndarray]) -> np.ndarray:
    """New F0 over old per frame: shift, excursions scaled about the sentence's median log-F0, its line
    tilted about its voiced middle; unvoiced frames take their voiced neighbours' ratio.

    The excursions are those of the contour median-filtered and smoothed over ~35 ms: a wider range should
    widen the intonation, not the tracker's short slips, which PSOLA would turn into jitter."""
    voiced = f0 > 0
    if not voiced.any():
        return np.ones_like(f0)
    log_f0 = np.log(f0[voiced])
    centre = float(np.median(log_f0))  # the median, not the mean: emphatic peaks skew the mean up
    contour = _smooth(_running_median(log_f0, CONTOUR_FRAMES), CONTOUR_FRAMES)
    voiced_times = times[voiced]
    middle = 0.5 * (voiced_times[0] + voiced_times[-1])
    semitones = curves["semitones"][voiced] + curves["declination_st_s"][voiced] * (voiced_times - middle)
    log_ratio = (curves["pitch_range"][voiced] - 1.0) * (contour - centre) + semitones * math.log(2.0) / 12.0
    new_f0 = np.clip(f0[voiced] * np.exp(log_ratio), 40.0, 700.0)
    return np.interp(times, voiced_times, new_f0 / f0[voiced])


def _apply_tilt(y: np.ndarray, sample_rate: int, tilt_db: np.ndarray) -> np.ndarray:
    """A smooth time-varying STFT filter: `tilt_db[i]` dB of `tilt_shape` at output sample i."""
    import librosa

    spectrum = librosa.stft(y, n_fft=STFT_N, hop_length=STFT_HOP, window="hann", center=True)
    centres = np.minimum(np.arange(spectrum.shape[1]) * STFT_HOP, len(y) - 1)
    shape = tilt_shape(spectrum.shape[0], sample_rate)
    spectrum = spectrum * 10.0 ** (np.outer(shape, tilt_db[centres]) / 20.0)
    return np.asarray(
        librosa.istft(spectrum, hop_length=STFT_HOP, window="hann", center=True, length=len(y)),
        dtype=np.float64,
    )


def _match_level(
    y: np.ndarray, reference: np.ndarray, input_position: np.ndarray, sample_rate: int
) -> np.ndarray:
    """Scale `y` so that its loudness, smoothed over ~150 ms, follows `reference` at the input time each
    output sample stands for (PSOLA and the tilt move the level a little; the gain curve alone should)."""
    hop = max(1, round(LEVEL_HOP_S * sample_rate))

    def power(z: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(z, (hop, 2 * hop)), 3 * hop)[::hop]
        return _smooth(np.mean(frames**2, axis=1), LEVEL_SMOOTH_FRAMES)

    ref, out = power(reference), power(y)
    floor = 1e-3 * float(ref.max()) + 1e-12  # silence: leave as it is
    out_frames = np.arange(len(out)) * hop
    # past the last sample both clocks run alike, so with no change of time a frame reads its own twin
    past = out_frames - (len(y) - 1)
    source = np.where(past > 0, input_position[-1] + past, input_position[np.minimum(out_frames, len(y) - 1)])
    ref_at_out = np.interp(source / hop, np.arange(len(ref)), ref)
    correction = np.clip(np.sqrt((ref_at_out + floor) / (out + floor)), 0.5, 2.0)
    return y * np.interp(np.arange(len(y)), np.arange(len(out)) * hop, correction)


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Hann-weighted moving average over `width` points, edges held."""
    width = max(3, width | 1)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    return np.convolve(np.pad(values, width // 2, mode="edge"), window, mode="valid")


def tilt_shape(n_bins: int, sample_rate: int) -> np.ndarray:
    """dB per 1 dB of tilt for each envelope bin: 0 below 1 kHz, rising with log-frequency to 4 kHz and
    held above, scaled so that the 1-4 kHz band's mean moves by exactly 1 dB (as the measure defines it)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    ramp = np.clip(np.log2(np.maximum(freqs, 1.0) / 1000.0) / 2.0, 0.0, 1.0)
    band = (freqs >= 1000.0) & (freqs < 4000.0)
    return ramp / ramp[band].mean() if band.any() else ramp


def track_f0(signal: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """F0 per 5 ms frame (0 = unvoiced) and the frame times: YIN's values, voiced where dio says so or
    where one period matches the next (dio misses about a fifth of this voice's vowels, and PSOLA must
    see every glottal cycle of a vowel to keep it whole)."""
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
    voiced = _close_gaps((voicing > 0) | (_periodicity(signal, sample_rate, times, values) > PERIODIC))
    f0 = np.where(voiced, values, 0.0)
    if voiced.sum() >= 3:
        # fold octave errors back towards the sentence's median, then towards the local median (~100 ms):
        # YIN halves this voice's period in stretches where the fundamental is weak
        median = float(np.median(f0[voiced]))
        f0[voiced & (f0 > 1.8 * median)] /= 2.0
        f0[voiced & (f0 < 0.55 * median)] *= 2.0
        local = _local_median(f0, voiced, 10)
        f0[voiced & (f0 > 1.6 * local)] /= 2.0
        f0[voiced & (f0 < 0.62 * local)] *= 2.0
        padded = np.pad(f0, 1, mode="edge")
        smoothed = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
        f0 = np.where(voiced & (smoothed > 0), smoothed, f0)
    return f0, times


def _periodicity(signal: np.ndarray, sample_rate: int, times: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Per frame, how well the period before it matches the period after it (normalised correlation at
    YIN's period or twice it); 0 where the frame is quieter than 40 dB under the loudest."""
    n = len(signal)
    out = np.zeros(len(times))
    centres = np.round(times * sample_rate).astype(int)
    lags = np.round(sample_rate / np.maximum(f0, F0_FLOOR)).astype(int)
    power = np.array(
        [np.mean(signal[max(0, c - lag) : c + lag] ** 2) for c, lag in zip(centres, lags, strict=True)]
    )
    loud = power > 1e-4 * float(power.max(initial=0.0))
    for i in np.flatnonzero(loud):
        best = 0.0
        for lag in (int(lags[i]), 2 * int(lags[i])):
            c = int(centres[i])
            if c - lag < 0 or c + lag > n:
                continue
            a, b = signal[c - lag : c], signal[c : c + lag]
            best = max(best, float(a @ b) / (math.sqrt(float(a @ a) * float(b @ b)) + 1e-12))
        out[i] = best
    return out


def _close_gaps(voiced: np.ndarray, longest: int = GAP_FRAMES) -> np.ndarray:
    """Voiced with unvoiced runs of at most `longest` frames between voiced frames filled in: a vowel cut
    by a dropout would be half shifted and half not, which sounds like a crack."""
    out = voiced.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[1], voiced.astype(np.int8), [1]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):  # runs of unvoiced frames
        if start > 0 and stop < len(voiced) and stop - start <= longest:
            out[start:stop] = True
    return out


def _local_median(f0: np.ndarray, voiced: np.ndarray, half: int) -> np.ndarray:
    """Median of the voiced F0 values within +-`half` frames of each frame."""
    out = f0.copy()
    index = np.flatnonzero(voiced)
    for i in index:
        near = index[(index >= i - half) & (index <= i + half)]
        out[i] = float(np.median(f0[near]))
    return out


def _running_median(values: np.ndarray, width: int) -> np.ndarray:
    """Median over `width` points around each point, edges held."""
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
