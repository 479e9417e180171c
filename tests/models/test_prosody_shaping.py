"""Prosody rows as data, the PSOLA reshaping (pitch, tempo, contour, tilt), and the naturalness measures."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import yaml
from scipy.signal import lfilter

from kernel.errors import InputError
from models.evaluate.prosody import measure
from models.evaluate.speech_quality import boundary_jumps, clicks, spectral_distortion, voiced_share
from models.tts import psola
from models.tts.shaping import FRAME_S, WordShape, needs_resynthesis, reshape, tilt_shape, track_f0
from models.vocabulary import PROSODY_KEYS, Prosody, load_vocabulary

RATE = 16000


def _voice(seconds: float = 1.6, f0: float = 120.0, fall_st: float = -3.0) -> np.ndarray:
    """A vowel-like harmonic tone whose pitch falls by `fall_st` semitones, with an amplitude envelope."""
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = f0 * 2.0 ** (fall_st * (t / seconds) / 12.0)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    tone = sum((0.6 / k) * np.sin(k * phase) for k in range(1, 30))
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return (0.3 * tone * envelope).astype(np.float32)


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


def _median_f0(y: np.ndarray) -> float:
    f0, voiced, _ = librosa.pyin(y, fmin=60, fmax=400, sr=RATE, frame_length=1024, hop_length=160)
    return float(np.median(f0[voiced]))


def test_every_emotion_row_loads_with_the_contour_and_quality_keys() -> None:
    vocabulary = load_vocabulary()
    angry = vocabulary.emotions["angry"].prosody
    assert angry.tilt_db > 0 and angry.declination_st_s > 0  # EmoDB's actors: tenser, falling less
    neutral = vocabulary.emotions[vocabulary.neutral].prosody
    assert (neutral.declination_st_s, neutral.tilt_db, neutral.breath_db) == (0.0, 0.0, 0.0)
    half = angry.scaled(0.5)
    assert half.tilt_db == pytest.approx(angry.tilt_db / 2)
    assert half.breath_db == pytest.approx(angry.breath_db / 2)
    assert half.declination_st_s == pytest.approx(angry.declination_st_s / 2)


def _vocabulary_with(tmp_path: Path, prosody: dict[str, object]) -> Path:
    source = Path(str(load_vocabulary().source))
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["emotions"]["angry"]["prosody"] = prosody
    path = tmp_path / "emotions.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("prosody", "message"),
    [
        (
            {"pitch_semitones": 1, "pitch_range": 1, "rate": 1, "energy_db": 0, "pause_ms": 0, "tilt": 2},
            "unknown",
        ),
        ({"pitch_semitones": 1, "pitch_range": 1, "rate": 1, "energy_db": 0}, "missing"),
        ({"pitch_semitones": "high", "pitch_range": 1, "rate": 1, "energy_db": 0, "pause_ms": 0}, "number"),
    ],
)
def test_a_bad_prosody_row_names_the_emotion_and_the_problem(
    tmp_path: Path, prosody: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=f"'angry'.*{message}"):
        load_vocabulary(_vocabulary_with(tmp_path, prosody))
    assert "tilt_db" in PROSODY_KEYS


def test_tilt_shape_moves_the_measured_band_by_exactly_its_value() -> None:
    shape = tilt_shape(513, RATE)
    freqs = np.linspace(0, RATE / 2, 513)
    assert np.all(shape[freqs < 1000] == 0.0)
    assert shape[(freqs >= 1000) & (freqs < 4000)].mean() == pytest.approx(1.0)


def test_tilt_and_declination_alone_need_the_resynthesis_but_gain_and_breath_do_not() -> None:
    assert not needs_resynthesis([WordShape(0.0, 1.0, gain_db=3.0)])
    assert not needs_resynthesis([WordShape(0.0, 1.0, breath_db=2.0)])  # not applied (shaping docstring)
    assert needs_resynthesis([WordShape(0.0, 1.0, tilt_db=2.0)])
    assert needs_resynthesis([WordShape(0.0, 1.0, declination_st_s=1.0)])


def test_a_pitch_shift_lands_on_the_asked_frequency_and_stays_voiced() -> None:
    x = _glottal()
    y, time_map = reshape(x, RATE, [WordShape(0.0, 1.5, semitones=4.0)])
    assert _median_f0(y) == pytest.approx(120.0 * 2 ** (4 / 12), rel=0.01)
    assert abs(voiced_share(y, RATE) - voiced_share(x, RATE)) <= 0.05
    assert len(y) == len(x) and time_map(0.75) == pytest.approx(0.75)
    assert clicks(y, RATE) == 0


def test_a_slower_rate_lengthens_the_audio_and_the_time_map_follows() -> None:
    x = _glottal()
    y, time_map = reshape(x, RATE, [WordShape(0.0, 1.5, rate=0.8)])
    assert len(y) / len(x) == pytest.approx(1 / 0.8, rel=0.02)
    assert time_map(0.75) == pytest.approx(0.75 / 0.8, rel=0.02)
    assert time_map(1.5) == pytest.approx(len(y) / RATE, abs=0.01)
    assert _median_f0(y) == pytest.approx(120.0, rel=0.01)  # tempo alone keeps the pitch
    assert clicks(y, RATE) == 0


def test_grain_joins_are_as_smooth_as_the_voice_itself() -> None:
    x = _glottal()
    y, _ = reshape(
        x, RATE, [WordShape(0.0, 0.75, semitones=-3.0), WordShape(0.75, 1.5, semitones=5.0, rate=1.2)]
    )
    f0, _ = track_f0(x.astype(np.float64), RATE)
    _, voiced = psola.pitch_marks(x, RATE, f0, FRAME_S)
    assert voiced.sum() > 0.8 * 1.5 * 120  # one epoch per period over the voiced stretch
    # no sample-to-sample jump of the output beats the input's largest one by much, and no click
    assert float(np.abs(np.diff(y)).max()) < 1.2 * float(np.abs(np.diff(x)).max())
    assert clicks(y, RATE) == 0


def test_marks_that_stay_put_give_the_input_back() -> None:
    x = _voice()
    f0, _ = track_f0(x.astype(np.float64), RATE)
    marks, voiced = psola.pitch_marks(x, RATE, f0, FRAME_S)
    out, sources, centres = psola.synthesis_marks(
        marks, voiced, np.arange(len(x), dtype=np.float64), np.ones(len(x))
    )
    assert np.array_equal(out, marks) and np.array_equal(sources, np.arange(len(marks)))
    y = psola.overlap_add(x, marks, voiced, out, sources, centres)
    assert np.max(np.abs(y - x)) < 1e-6


def test_neutral_shapes_pass_through_unchanged() -> None:
    x = _glottal()
    assert not needs_resynthesis([WordShape(0.0, 0.7), WordShape(0.7, 1.5)])
    y, time_map = reshape(x, RATE, [WordShape(0.0, 0.7), WordShape(0.7, 1.5, breath_db=3.0)])
    assert np.array_equal(y, x) and time_map(1.0) == pytest.approx(1.0)


def test_reshaping_moves_tilt_and_declination_the_way_asked() -> None:
    x = _voice()
    plain = measure(x, RATE)
    tense, _ = reshape(x, RATE, [WordShape(0.0, 1.6, tilt_db=6.0)])
    flatter, _ = reshape(x, RATE, [WordShape(0.0, 1.6, declination_st_s=2.0)])
    assert measure(tense, RATE).tilt_db - plain.tilt_db > 3.0
    assert measure(flatter, RATE).declination_st_s - plain.declination_st_s == pytest.approx(2.0, abs=0.6)
    # the gain curve still sets the loudness: quality and pitch change colour, not level
    rms = [float(np.sqrt(np.mean(y**2))) for y in (x, tense, flatter)]
    assert max(rms) / min(rms) < 10 ** (1.0 / 20)


def test_an_emotion_change_mid_sentence_glides_without_a_pitch_step_or_click() -> None:
    x = _voice(fall_st=0.0)
    y, _ = reshape(
        x,
        RATE,
        [WordShape(0.0, 0.8), WordShape(0.8, 1.6, semitones=8.0, tilt_db=6.0, declination_st_s=1.6)],
    )
    (jump,) = boundary_jumps(y, RATE, [0.8])
    assert jump < 1.5  # 8 semitones spread over the ~80 ms ramp, not a step
    assert clicks(y, RATE) == 0


def test_clicks_and_spectral_distortion_see_what_they_should() -> None:
    x = _voice()
    broken = x.copy()
    broken[8000] += 0.8
    assert clicks(x, RATE) == 0
    assert clicks(broken, RATE) >= 1
    same = spectral_distortion(x, x, RATE)
    moved, _ = reshape(x, RATE, [WordShape(0.0, 1.6, tilt_db=8.0)])
    assert same == pytest.approx(0.0, abs=1e-6)
    assert spectral_distortion(moved, x, RATE) > 1.0


def test_prosody_defaults_keep_older_rows_valid() -> None:
    row = Prosody(pitch_semitones=1.0, pitch_range=1.0, rate=1.0, energy_db=0.0, pause_ms=0.0)
    assert (row.declination_st_s, row.tilt_db, row.breath_db) == (0.0, 0.0, 0.0)
