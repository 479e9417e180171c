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
- voice quality: a band equaliser on voiced frames, as a smooth time-varying STFT filter. Where the
  emotion has a row in `prompts/spectral_envelope.yaml` (`band_db`: EmoDB's actors' envelope against
  their neutral, per mel band) it applies that; otherwise `tilt_db` raises 1-4 kHz against 0-1 kHz
  (vocal effort). Never both: the band rows already hold the actors' tilt. The loudness is then
  matched, over ~150 ms, to the input's under the gain curve, so pitch and envelope change colour, not
  level. `breath_db` is not applied: envelope-shaped noise at the rows' +2-3 dB of aperiodicity cost
  spectral distance and barely moved the measured aperiodicity (bench/README.md).

Why PSOLA and not a vocoder: WORLD's analysis and resynthesis turned a third of this voice's voiced frames
into noise (pYIN's voiced share fell from 0.62 to 0.30-0.51, even for a 0.01-semitone shift); PSOLA
keeps the waveform, and the share stays at 0.54-0.67 (bench/README.md, "Does the reshaping stay natural?").

F0 comes from YIN, not from WORLD's trackers: Piper's vocoder leaves the fundamental weak, and harvest and
dio lock onto the second harmonic in about half of the voiced frames, which would shift the voice an
octave. Voicing is dio's, widened to frames whose period matches the next one and across dropouts of up
to 15 ms, and octave slips are folded back towards the local median (`track_f0`).

Every per-word target is turned into a per-frame curve that holds the word's value over the word and is
smoothed with an ~80 ms Hann window, so pitch, loudness and tempo glide across emotion boundaries
instead of jumping. Sentences whose words need no pitch, tempo, tilt or band change skip the resynthesis
and only get a smoothed gain curve in the time domain (`needs_resynthesis`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from kernel.errors import InputError
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
    band_db: tuple[float, ...] = ()  # per band of `reshape`'s `bands_hz`; () = none (then tilt_db applies)


@dataclass(frozen=True)
class SpectralEnvelope:
    """Per-emotion envelope gains (dB at intensity 1.0) on mel band centres, as the band equaliser
    applies them (prompts/spectral_envelope.yaml, made by bench/emodb_prosody.py)."""

    bands_hz: tuple[float, ...]
    gains_db: dict[str, tuple[float, ...]]
    source: str  # the file, for cache keys and the audit trail

    def band_db(self, emotion: str, intensity: float) -> tuple[float, ...]:
        """The emotion's gains scaled by intensity (0..1, as the prosody rows are); () when the table has
        no row for it (neutral, surprise)."""
        gains = self.gains_db.get(emotion)
        if gains is None:
            return ()
        k = max(0.0, min(1.0, intensity))
        return tuple(g * k for g in gains)


def envelope_path() -> Path:
    return Path(str(resources.files("prompts") / "spectral_envelope.yaml"))


@lru_cache(maxsize=4)
def load_envelope(path: Path | None = None) -> SpectralEnvelope:
    """The band table; InputError names the file and what is wrong with it."""
    path = path or envelope_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        bands = tuple(float(f) for f in data["bands_hz"])
        gains = {str(k): tuple(float(g) for g in v) for k, v in data["emotions"].items()}
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: needs bands_hz (numbers) and emotions (name -> list of dB)") from None
    if len(bands) < 2 or any(b <= a for a, b in itertools.pairwise(bands)):
        raise InputError(f"{path}: bands_hz must rise, with at least two bands; got {list(bands)}")
    wrong = sorted(name for name, row in gains.items() if len(row) != len(bands))
    if wrong:
        raise InputError(f"{path}: emotions {wrong} need one gain per band ({len(bands)})")
    return SpectralEnvelope(bands, gains, str(path))


def needs_resynthesis(shapes: Sequence[WordShape]) -> bool:
    """True when some word asks for more than a gain change (gain alone stays in the time domain)."""
    return any(
        abs(s.semitones) > 1e-3
        or abs(s.pitch_range - 1.0) > 1e-3
        or abs(s.rate - 1.0) > 1e-3
        or abs(s.declination_st_s) > 1e-3
        or abs(s.tilt_db) > 1e-3
        or any(abs(g) > 1e-3 for g in s.band_db)
        for s in shapes
    )


def frame_curves(
    shapes: Sequence[WordShape], n_frames: int, frame_s: float = FRAME_S, ramp_s: float = RAMP_S
) -> dict[str, np.ndarray]:
    """Per-frame values of every WordShape field, held per word and smoothed over `ramp_s`.

    The audio between two words belongs half to each; before the first and after the last word the
    edge word's value holds.
    """
    owner = _owner(shapes, n_frames, frame_s)
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
    smoothed = {name: _ramp(curve, frame_s, ramp_s) for name, curve in curves.items()}
    smoothed["rate"] = np.exp(smoothed.pop("log_rate"))
    return smoothed


def band_curves(
    shapes: Sequence[WordShape], n_frames: int, frame_s: float = FRAME_S, ramp_s: float = RAMP_S
) -> np.ndarray | None:
    """(frames, bands) band gains held per word and smoothed over `ramp_s` like `frame_curves` (words
    without band gains count as 0 dB); None when no word has any."""
    widths = {len(s.band_db) for s in shapes if s.band_db}
    if not widths:
        return None
    if len(widths) > 1:
        raise ValueError(f"every word's band_db needs the same number of bands; got {sorted(widths)}")
    n_bands = widths.pop()
    rows = np.array([s.band_db if s.band_db else (0.0,) * n_bands for s in shapes], dtype=np.float64)
    held = rows[_owner(shapes, n_frames, frame_s)]
    return np.stack([_ramp(held[:, j], frame_s, ramp_s) for j in range(n_bands)], axis=1)


def _owner(shapes: Sequence[WordShape], n_frames: int, frame_s: float) -> np.ndarray:
    """The word each frame belongs to: the audio between two words belongs half to each."""
    times = np.arange(n_frames) * frame_s
    boundaries = np.array([(a.end + b.start) / 2 for a, b in itertools.pairwise(shapes)])
    return np.searchsorted(boundaries, times, side="right")


def _ramp(curve: np.ndarray, frame_s: float, ramp_s: float) -> np.ndarray:
    """Hann-weighted moving average over `ramp_s`, edges held: a held step becomes a glide."""
    width = max(3, round(ramp_s / frame_s) | 1)
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    half = width // 2
    return np.convolve(np.pad(curve.astype(np.float64), half, mode="edge"), window, mode="valid")


def apply_gain(x: np.ndarray, sample_rate: int, shapes: Sequence[WordShape]) -> np.ndarray:
    """The gain curve alone, in the time domain, for sentences that need no resynthesis."""
    n_frames = int(len(x) / (sample_rate * FRAME_S)) + 2
    gain_db = frame_curves(shapes, n_frames)["gain_db"]
    if not np.any(np.abs(gain_db) > 1e-4):
        return np.asarray(x, dtype=np.float32)
    sample_times = np.arange(len(x)) / sample_rate
    gain = 10.0 ** (np.interp(sample_times, np.arange(n_frames) * FRAME_S, gain_db) / 20.0)
    return (x * gain).astype(np.float32)


def reshape(
    x: np.ndarray, sample_rate: int, shapes: Sequence[WordShape], bands_hz: Sequence[float] = ()
) -> tuple[np.ndarray, TimeMap]:
    """Reshape pitch, energy, tempo and voice quality word by word; returns the audio and a map from input
    to output time. `bands_hz`: the centres of the bands of the words' `band_db`."""
    widths = {len(s.band_db) for s in shapes if s.band_db}
    if widths and widths != {len(bands_hz)}:
        raise ValueError(f"band_db has {sorted(widths)} bands but bands_hz has {len(bands_hz)}")
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

    # 4. Voice quality (tilt or band gains, on voiced frames) and the loudness the gain curve asks for
    centres = np.minimum(np.arange(1 + len(y) // STFT_HOP) * STFT_HOP, len(y) - 1)  # the STFT's frames
    at = input_position[centres] / sample_rate  # the input time each frame stands for
    voicing = np.interp(at, times, _smooth((f0 > 0).astype(np.float64), 5))
    tilt = np.interp(at, times, curves["tilt_db"]) * voicing
    bands = band_curves(shapes, len(f0))
    band_gain = None
    if bands is not None:
        band_gain = np.stack([np.interp(at, times, bands[:, j]) for j in range(bands.shape[1])]) * voicing
    if np.any(np.abs(tilt) > 1e-4) or (band_gain is not None and np.any(np.abs(band_gain) > 1e-4)):
        n_bins = STFT_N // 2 + 1
        gain_db = np.outer(tilt_shape(n_bins, sample_rate), tilt)
        if band_gain is not None:
            gain_db = gain_db + band_weights(n_bins, sample_rate, bands_hz) @ band_gain
        y = _equalise(y, gain_db)
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


def _equalise(y: np.ndarray, gain_db: np.ndarray) -> np.ndarray:
    """A smooth time-varying STFT filter: `gain_db[bin, frame]` on STFT_N / STFT_HOP frames (centred).
    Overlap-add at a quarter-frame hop blends neighbouring frames' gains, so changes glide."""
    import librosa

    spectrum = librosa.stft(y, n_fft=STFT_N, hop_length=STFT_HOP, window="hann", center=True)
    spectrum = spectrum * 10.0 ** (gain_db / 20.0)
    return np.asarray(
        librosa.istft(spectrum, hop_length=STFT_HOP, window="hann", center=True, length=len(y)),
        dtype=np.float64,
    )


def band_weights(n_bins: int, sample_rate: int, bands_hz: Sequence[float]) -> np.ndarray:
    """(bins, bands): each bin's gain as a linear interpolation in mel between the two nearest band
    centres, the edge bands' gains held below the first and above the last centre (rows sum to 1)."""
    import librosa

    mel_bins = librosa.hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_bins))
    mel_centres = librosa.hz_to_mel(np.asarray(bands_hz, dtype=np.float64))
    identity = np.eye(len(bands_hz))
    return np.stack([np.interp(mel_bins, mel_centres, identity[j]) for j in range(len(bands_hz))], axis=1)


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
