"""Delivery audio: sentence joins crossfaded into their pauses (pydub) without moving any timing, the
published speech loudness-normalised through ffmpeg's loudnorm, and its wav/mp3/m4a export.
No TTS engine runs here: sentences are sine tones cut mid-cycle (the worst case for clicks), and
loudness is checked on the render evaluation's synthetic speech."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emoflow.cli import _loudness_line
from kernel.errors import EngineError, InputError
from kernel.jobs import parse_job
from kernel.settings import Settings
from models.evaluate.speech import synthetic_speech
from models.publish import audio
from models.publish.audio import deliver_speech, measure_loudness, normalise_loudness
from models.publish.video import ffmpeg_report, probe
from models.tts import joins
from models.tts.common import split_sentences
from models.tts.streaming import synthesize_to
from models.types import EmotionPlan, PlannedWord, ProgressFn, Speech, Timings, WordTiming
from models.vocabulary import load_vocabulary
from tasks.stages import PUBLISH

RATE = 22050  # Piper's rate, where a ms is not a whole number of samples
SCRIPT = "First words come here. Then a second sentence follows! And the last one ends it."
GAP_S = 0.05


def make_plan(script: str = SCRIPT) -> EmotionPlan:
    words = [
        PlannedWord(i, m.group(), m.start(), m.end(), "neutral", 0.0, "tag")
        for i, m in enumerate(re.finditer(r"\w+", script))
    ]
    return EmotionPlan(script=script, words=words)


def tone_synth(plan: EmotionPlan, _progress: ProgressFn | None) -> Speech:
    """A sentence as a 220 Hz tone that starts and stops mid-cycle, 0.15 s per word."""
    n = round(0.15 * len(plan.words) * RATE) + 37  # an odd length, never whole ms
    t = np.arange(n) / RATE
    samples = (0.5 * np.sin(2 * np.pi * 220 * t + 1.3)).astype(np.float32)
    words = [WordTiming(w.index, w.text, 0.15 * k, 0.15 * (k + 1)) for k, w in enumerate(plan.words)]
    return Speech(samples, RATE, Timings(words=words))


# 1. Joins ------------------------------------------------------------------------------------------------


def _sentence_tones(plan: EmotionPlan) -> list[np.ndarray]:
    out = []
    for sentence in split_sentences(plan):
        words = plan.words[sentence.first : sentence.stop]
        out.append(joins.pcm16(tone_synth(EmotionPlan(plan.script, words), None).samples).astype(np.int64))
    return out


def test_crossfaded_joins_have_no_jump_and_keep_every_timing(tmp_path: Path) -> None:
    plan = make_plan()
    timings = synthesize_to(tone_synth, plan, tmp_path / "s.wav", gap_s=GAP_S, vocabulary=load_vocabulary())
    wav, rate = sf.read(tmp_path / "s.wav", dtype="int16")
    wav = wav.astype(np.int64)
    tones = _sentence_tones(plan)
    gap = round(GAP_S * rate)
    assert rate == RATE and len(tones) == 3

    # the timeline is exactly the unfaded one: lengths, offsets, and so every word timing
    starts = [sum(len(t) + gap for t in tones[:k]) for k in range(len(tones))]
    assert len(wav) == starts[-1] + len(tones[-1])
    firsts = [s.first for s in split_sentences(plan)]
    for start, first in zip(starts, firsts, strict=True):
        assert abs(timings.words[first].start * rate - start) <= 1.5  # timings round to 0.1 ms
    # the aligner and renderer read the audio at those timings: the sentence's own samples are there
    n = joins.fade_samples(rate)
    for start, tone in zip(starts, tones, strict=True):
        assert np.array_equal(wav[start + n : start + len(tone) - n], tone[n:-n])
        assert not wav[start + len(tone) : start + len(tone) + gap].any()

    # no click: a step across a seam is no larger than the tone's own steps
    inside = max(int(np.abs(np.diff(tone)).max()) for tone in tones)
    for start, tone in zip(starts, tones, strict=True):
        for seam in (start, start + len(tone)):
            if 0 < seam < len(wav):
                assert abs(wav[seam] - wav[seam - 1]) <= inside, seam
                window = np.abs(np.diff(wav[max(seam - n - 1, 0) : seam + n + 1]))
                assert window.max() <= 1.02 * inside  # a fade adds at most its ramp to the tone's slope
    # the cut tones themselves would click: the test can see a jump
    assert max(abs(int(t[-1])) for t in tones) > 5 * inside


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 24000, 44100, 48000])
def test_joins_never_change_a_length(rate: int) -> None:
    rng = np.random.default_rng(rate)
    for length in [1, 7, 60, 441, *rng.integers(100, 20_000, 6)]:
        samples = rng.uniform(-1, 1, int(length)).astype(np.float32)
        pause = int(rng.integers(0, 2_000))
        chunk = joins.sentence_chunk(samples, rate, fade_in=True, fade_out=True, pause_samples=pause)
        assert len(chunk) == length + pause and chunk.dtype == np.int16
        assert not chunk[length:].any()


def test_pcm16_clips_instead_of_wrapping() -> None:
    assert joins.pcm16(np.array([1.5, -2.0, 0.5])).tolist() == [32767, -32767, 16384]


# 2. Loudness ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight seconds of speech-like audio, well under the target (about -30 LUFS)."""
    path = tmp_path_factory.mktemp("speech") / "quiet.wav"
    sf.write(path, 0.2 * synthetic_speech(8.0, RATE).samples, RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_loudness_lands_on_the_target_under_the_peak_ceiling(
    quiet_speech: Path, tmp_path: Path, target: float
) -> None:
    out = tmp_path / "n.wav"
    report = normalise_loudness(quiet_speech, out, target_lufs=target)
    measured = measure_loudness(out)  # measured again here, not taken from the report
    assert measured.integrated_lufs is not None and measured.true_peak_db is not None
    assert abs(measured.integrated_lufs - target) <= 1.0
    assert measured.true_peak_db <= -1.0
    assert report.input.integrated_lufs is not None and report.input.integrated_lufs < -25
    assert report.output == measured and report.normalization in ("linear", "dynamic")
    assert sf.info(out).frames == sf.info(quiet_speech).frames  # a gain: nothing moves in time
    assert [p.name for p in tmp_path.iterdir()] == ["n.wav"]  # no partial file left behind


def test_impulsive_sound_still_keeps_the_true_peak_ceiling(tmp_path: Path) -> None:
    clicks = 0.02 * np.sin(2 * np.pi * 220 * np.arange(3 * RATE) / RATE)
    clicks[::5000] = 0.9  # single-sample clicks: loudnorm must limit, and resampling overshoots
    sf.write(tmp_path / "clicks.wav", clicks, RATE, subtype="PCM_16")
    report = normalise_loudness(tmp_path / "clicks.wav", tmp_path / "n.wav")
    assert report.normalization == "dynamic"
    assert report.output.true_peak_db is not None and report.output.true_peak_db <= -1.0


@pytest.mark.parametrize(
    ("samples", "why"),
    [
        (np.zeros(2 * RATE), "silent"),
        (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.3 * RATE)) / RATE), "under 0.4 s"),
    ],
    ids=["silence", "too-short"],
)
def test_silence_and_very_short_speech_pass_through_unchanged(
    tmp_path: Path, samples: np.ndarray, why: str
) -> None:
    sf.write(tmp_path / "in.wav", samples, RATE, subtype="PCM_16")
    report = normalise_loudness(tmp_path / "in.wav", tmp_path / "out.wav")
    assert report.normalization == "none" and report.note and why in report.note
    assert report.input.integrated_lufs is None and report.to_metadata()["output_integrated_lufs"] is None
    before, after = (
        sf.read(tmp_path / "in.wav", dtype="int16")[0],
        sf.read(tmp_path / "out.wav", dtype="int16")[0],
    )
    assert np.array_equal(before, after)


def test_bad_loudness_inputs_are_refused_by_name(tmp_path: Path) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros(0), RATE, subtype="PCM_16")
    with pytest.raises(InputError, match="holds no samples"):
        normalise_loudness(tmp_path / "empty.wav", tmp_path / "out.wav")
    with pytest.raises(InputError, match="cannot read speech"):
        normalise_loudness(tmp_path / "missing.wav", tmp_path / "out.wav")
    with pytest.raises(InputError, match=r"outside -70\.\.-5"):
        normalise_loudness(tmp_path / "empty.wav", tmp_path / "out.wav", target_lufs=-2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.wav"]


# 3. Export -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("speech_format", "codec"), [("wav", "pcm_s16le"), ("mp3", "mp3"), ("m4a", "aac")])
def test_speech_exports_as_a_file_ffmpeg_probes_with_the_right_duration(
    quiet_speech: Path, tmp_path: Path, speech_format: str, codec: str
) -> None:
    delivered = deliver_speech(quiet_speech, tmp_path, speech_format=speech_format)  # type: ignore[arg-type]
    assert delivered.path == tmp_path / f"speech.{speech_format}"
    assert delivered.media_type == audio.FORMATS[speech_format][2]
    assert f"Audio: {codec}" in ffmpeg_report(delivered.path)
    assert abs(probe(delivered.path)["duration"] - 8.0) < 0.06  # encoder padding is trimmed
    assert delivered.seconds == pytest.approx(8.0, abs=1e-3)
    assert delivered.loudness.to_metadata()["output_true_peak_db"] <= -1.0


def test_a_missing_encoder_or_format_is_refused_before_any_work(
    quiet_speech: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio, "ffmpeg_encoders", lambda: frozenset({"pcm_s16le", "aac"}))
    with pytest.raises(EngineError, match=r"needs ffmpeg's libmp3lame encoder.*wav always works"):
        deliver_speech(quiet_speech, tmp_path, speech_format="mp3")
    with pytest.raises(InputError, match="speech_format must be wav, mp3, m4a, not 'ogg'"):
        deliver_speech(quiet_speech, tmp_path, speech_format="ogg")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_this_ffmpeg_has_both_lossy_encoders() -> None:
    assert {"libmp3lame", "aac", "pcm_s16le"} <= audio.ffmpeg_encoders()


# 4. Wiring -----------------------------------------------------------------------------------------------


def test_loudness_and_format_are_job_options_in_the_publish_cache_key(tmp_path: Path) -> None:
    base = {"script": "Hi.", "portrait": "skimage:astronaut"}
    default = parse_job(base, tmp_path).options(Settings(output_dir=tmp_path))
    assert (default.speech_loudness, default.speech_format) == (-16.0, "wav")
    chosen = parse_job(base | {"speech_loudness": -23, "speech_format": "m4a"}, tmp_path).options(
        Settings(output_dir=tmp_path, speech_loudness=-14.0, speech_format="mp3")
    )
    assert (chosen.speech_loudness, chosen.speech_format) == (-23.0, "m4a")  # the job wins over settings
    assert PUBLISH.parameters(chosen, title="t") == {
        "speech_loudness": -23.0,
        "speech_format": "m4a",
        "title": "t",
    }
    assert PUBLISH.parameters(default, title="t") != PUBLISH.parameters(chosen, title="t")
    with pytest.raises(InputError, match="speech_loudness: Input should be less than or equal to -9"):
        parse_job(base | {"speech_loudness": -3}, tmp_path)
    with pytest.raises(InputError, match="speech_format: Input should be 'wav', 'mp3' or 'm4a', not 'ogg'"):
        parse_job(base | {"speech_format": "ogg"}, tmp_path)


def test_show_prints_the_measured_loudness() -> None:
    metadata = {
        "loudness": {
            "target_lufs": -16.0,
            "input_integrated_lufs": -24.63,
            "output_integrated_lufs": -16.0,
            "output_true_peak_db": -1.55,
            "output_range_lu": 2.2,
            "normalization": "linear",
        }
    }
    line = _loudness_line(metadata)
    assert "-24.6 LUFS -> -16.0 LUFS (target -16.0 LUFS), true peak -1.6 dBTP, LRA 2.2 LU, linear" in line
    assert _loudness_line({"seconds": 3.0}) == ""
