"""The per-emotion spectral envelope (Piper 1.4): the band table as data and the STFT band equaliser."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
from scipy.signal import lfilter

from kernel.errors import InputError
from models.evaluate.speech_quality import clicks
from models.plan.tokens import WORD_RE
from models.tts.shaping import (
    WordShape,
    band_curves,
    band_weights,
    load_envelope,
    needs_resynthesis,
    reshape,
)
from models.types import EmotionPlan, PlannedWord

RATE = 16000
EMODB_EMOTIONS = ("happy", "sad", "angry", "fear", "disgust")


def _glottal(seconds: float = 1.5, f0: float = 120.0) -> np.ndarray:
    """A pulse train at `f0` through three vowel formants (700, 1220, 2600 Hz), faded in and out."""
    n = round(seconds * RATE)
    phase = np.cumsum(np.full(n, f0 / RATE))
    y = np.diff(np.floor(phase), prepend=0.0)
    for centre, bandwidth in ((700.0, 110.0), (1220.0, 120.0), (2600.0, 160.0)):
        r, theta = np.exp(-np.pi * bandwidth / RATE), 2 * np.pi * centre / RATE
        y = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], y)
    t = np.arange(n) / RATE
    y = y * np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _band_level_db(y: np.ndarray, lo: float, hi: float, start_s: float, stop_s: float) -> float:
    """Mean power (dB) of the STFT bins lo..hi Hz over the frames start_s..stop_s."""
    spectrum = np.abs(librosa.stft(y, n_fft=1024, hop_length=256)) ** 2
    freqs = librosa.fft_frequencies(sr=RATE, n_fft=1024)
    frames = librosa.frames_to_time(np.arange(spectrum.shape[1]), sr=RATE, hop_length=256)
    rows = (freqs >= lo) & (freqs < hi)
    cols = (frames >= start_s) & (frames < stop_s)
    return float(10 * np.log10(spectrum[np.ix_(rows, cols)].mean()))


def test_the_band_table_loads_as_data_with_one_gain_per_band_for_each_emodb_emotion() -> None:
    table = load_envelope()
    assert 16 <= len(table.bands_hz) <= 24
    assert all(b > a for a, b in zip(table.bands_hz, table.bands_hz[1:], strict=False))
    assert table.bands_hz[-1] <= 7600.0  # EmoDB was recorded at 16 kHz
    assert set(table.gains_db) == set(EMODB_EMOTIONS)  # neutral is the reference, surprise is not in EmoDB
    for row in table.gains_db.values():
        assert len(row) == len(table.bands_hz)
        assert np.all(np.isfinite(row)) and max(abs(g) for g in row) < 15.0
        assert abs(float(np.mean(row))) < 0.5  # a shape: the level is the rows' energy_db
    assert table.band_db("neutral", 1.0) == () and table.band_db("surprise", 1.0) == ()
    half = table.band_db("angry", 0.5)
    assert half == pytest.approx([g / 2 for g in table.gains_db["angry"]])
    assert table.band_db("angry", 3.0) == pytest.approx(table.gains_db["angry"])  # clamped to 1


def test_a_table_with_a_short_row_names_the_emotion(tmp_path: Path) -> None:
    path = tmp_path / "spectral_envelope.yaml"
    path.write_text("bands_hz: [100, 200, 400]\nemotions:\n  angry: [1.0, 2.0]\n", encoding="utf-8")
    with pytest.raises(InputError, match="angry"):
        load_envelope(path)


def test_band_weights_interpolate_between_centres_and_hold_beyond_them() -> None:
    centres = [200.0, 1000.0, 3000.0]
    weights = band_weights(513, RATE, centres)
    assert weights.shape == (513, 3)
    assert np.allclose(weights.sum(axis=1), 1.0)
    freqs = np.linspace(0, RATE / 2, 513)
    gains = weights @ np.array([0.0, 6.0, -3.0])
    assert np.all(gains[freqs <= 200.0] == 0.0) and np.all(gains[freqs >= 3000.0] == -3.0)
    assert gains[np.argmin(np.abs(freqs - 1000.0))] == pytest.approx(6.0, abs=0.1)


def test_no_band_gains_means_no_resynthesis_and_the_audio_comes_back_unchanged() -> None:
    x = _glottal()
    neutral = [WordShape(0.0, 0.7), WordShape(0.7, 1.5, band_db=(0.0, 0.0, 0.0))]
    assert not needs_resynthesis(neutral)
    assert band_curves([WordShape(0.0, 1.5)], 300) is None
    y, _ = reshape(x, RATE, neutral, bands_hz=(200.0, 1000.0, 3000.0))
    assert np.array_equal(y, x)
    assert needs_resynthesis([WordShape(0.0, 1.5, band_db=(0.0, 2.0, 0.0))])


def test_the_equaliser_applies_a_known_band_gain_to_voiced_sound() -> None:
    x = _glottal()
    centres = (300.0, 600.0, 1500.0, 2500.0, 3500.0, 5000.0)
    gains = (0.0, 0.0, 6.0, 6.0, 6.0, 6.0)  # +6 dB from 1.5 kHz up, against 0 dB up to 600 Hz
    y, _ = reshape(x, RATE, [WordShape(0.0, 1.5, band_db=gains)], bands_hz=centres)
    # measured in the steady middle, as high band against low band (the level match keeps loudness)
    moved = _band_level_db(y, 1800, 4500, 0.3, 1.2) - _band_level_db(y, 100, 550, 0.3, 1.2)
    before = _band_level_db(x, 1800, 4500, 0.3, 1.2) - _band_level_db(x, 100, 550, 0.3, 1.2)
    assert moved - before == pytest.approx(6.0, abs=0.5)
    rms = [float(np.sqrt(np.mean(z[4800:19200] ** 2))) for z in (x, y)]
    assert max(rms) / min(rms) < 10 ** (1.5 / 20)  # colour, not level


def test_a_band_change_mid_sentence_glides_and_leaves_no_click() -> None:
    x = _glottal()
    centres = (300.0, 1000.0, 3000.0)
    shapes = [WordShape(0.0, 0.75), WordShape(0.75, 1.5, band_db=(-8.0, 4.0, 10.0))]
    curves = band_curves(shapes, 300)
    assert curves is not None
    steps = np.abs(np.diff(curves, axis=0)).max(axis=0)
    assert np.all(steps <= 0.15 * np.array([8.0, 4.0, 10.0]))  # spread over the ~80 ms ramp
    y, _ = reshape(x, RATE, shapes, bands_hz=centres)
    assert clicks(y, RATE) == 0
    assert float(np.abs(np.diff(y)).max()) < 1.5 * float(np.abs(np.diff(x)).max())
    # the first word keeps its colour; the second gets the gains
    early = _band_level_db(y, 2500, 4000, 0.2, 0.6) - _band_level_db(x, 2500, 4000, 0.2, 0.6)
    late = _band_level_db(y, 2500, 4000, 0.9, 1.3) - _band_level_db(x, 2500, 4000, 0.9, 1.3)
    assert abs(early) < 1.0 and late > 4.0


def test_bands_that_do_not_match_the_centres_are_refused() -> None:
    with pytest.raises(ValueError, match="bands"):
        reshape(_glottal(), RATE, [WordShape(0.0, 1.5, band_db=(1.0, 2.0))], bands_hz=(100.0, 200.0, 400.0))


def _plan(script: str, label: str = "neutral", intensity: float = 0.0) -> EmotionPlan:
    words = [
        PlannedWord(i, m.group(), m.start(), m.end(), label, intensity, "tag")
        for i, m in enumerate(WORD_RE.finditer(script))
    ]
    return EmotionPlan(script=script, words=words)


def test_piper_neutral_is_bit_for_bit_its_own_audio_and_the_table_changes_only_emotion() -> None:
    from models.tts.piper_engine import PiperEngine

    with_table, plain = PiperEngine(), PiperEngine(reshape=False)
    tilt_only = PiperEngine(envelope=False)
    assert with_table.version == "1.4.0" and tilt_only.version == "1.4.0+noenvelope"
    assert "table:spectral_envelope.yaml" in with_table.identity().digests
    neutral = _plan("The train leaves from platform four.")
    assert np.array_equal(with_table.synthesize(neutral).samples, plain.synthesize(neutral).samples)
    angry = _plan("The train leaves from platform four.", "angry", 1.0)
    shaped, tilted = with_table.synthesize(angry), tilt_only.synthesize(angry)
    assert len(shaped.samples) == len(tilted.samples)  # the envelope changes colour, not timing
    assert not np.array_equal(shaped.samples, tilted.samples)
    assert clicks(shaped.samples, shaped.sample_rate) == 0
