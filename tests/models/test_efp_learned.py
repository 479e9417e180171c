"""The learned EFP: features, training on a synthetic clip set, save/load, the engine, bad inputs.

The synthetic clip set: "happy" words are high, loud, bright tones; "sad" words are low, quiet, dull ones;
each speaker shifts pitch and level a little.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kernel.errors import EngineError, InputError
from models.efp.dataset import LabelledClip, LabelledWord, read_clip_set, write_clip_set
from models.efp.features import FRAME_RATE, EmbeddedFeatures, build_extractor, pooled_dim, word_vectors
from models.efp.learned import LearnedEFP, load_model, save_model, speaker_standardised
from models.efp.train import ClipInputs, TrainConfig, check_clips, clip_inputs, predict_clips, train_efp
from models.types import EmotionPlan, PlannedWord, Speech, Timings, WordTiming
from models.vocabulary import load_vocabulary

LABELS = load_vocabulary().labels

RATE = 16_000
WORDS = ("one", "two", "three")
STYLE = {"happy": (230.0, 0.45, 6), "sad": (120.0, 0.12, 2)}  # f0 Hz, amplitude, harmonics


def synthetic_clip(label: str, speaker_shift: float, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    f0, amplitude, harmonics = STYLE[label]
    pieces, words, t = [np.zeros(int(0.1 * RATE), np.float32)], [], 0.1
    for text in WORDS:
        length = rng.uniform(0.18, 0.3)
        n = int(length * RATE)
        time = np.arange(n) / RATE
        pitch = f0 * speaker_shift * rng.uniform(0.92, 1.08) * (1 + 0.05 * np.sin(2 * np.pi * 3 * time))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        tone = sum(np.sin(h * phase) / h for h in range(1, harmonics + 1))
        envelope = np.minimum(1.0, np.minimum(time, time[::-1]) / 0.02)
        level = amplitude * speaker_shift * rng.uniform(0.8, 1.2)
        pieces.append((level * envelope * tone / 1.5).astype(np.float32))
        words.append(LabelledWord(text, round(t, 4), round(t + length, 4), label))
        gap = rng.uniform(0.05, 0.12)
        pieces.append(np.zeros(int(gap * RATE), np.float32))
        t += length + gap
    audio = np.concatenate(pieces) + 0.003 * rng.standard_normal(sum(len(p) for p in pieces))
    return audio.astype(np.float32), words


def make_clip_set(
    folder: Path, per_label: int = 6, speakers: tuple[str, ...] = ("s1", "s2", "s3"), seed: int = 0
) -> Path:
    """Write a clip set (wav files + clips.jsonl) and return its folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for s, speaker in enumerate(speakers):
        shift = 1.0 + 0.08 * (s - 1)
        for label in STYLE:
            for i in range(per_label):
                audio, words = synthetic_clip(label, shift, rng)
                name = f"{speaker}-{label}-{i}.wav"
                sf.write(folder / name, audio, RATE)
                clips.append(LabelledClip(name[:-4], name, words, speaker=speaker, source="synthetic"))
    write_clip_set(folder, clips)
    return folder


FAST = TrainConfig(epochs=25, patience=10, use_text=False, d_model=32, layers=1, ensemble=1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ClipInputs]]:
    folder = make_clip_set(tmp_path_factory.mktemp("clips"), per_label=5)
    inputs = clip_inputs(read_clip_set(folder), folder, EmbeddedFeatures(), LABELS, use_text=False)
    return folder, inputs


def test_embedded_frames_are_50_hz_and_pitch_is_in_semitones() -> None:
    t = np.arange(RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 200.0 * t).astype(np.float32)
    frames, times = EmbeddedFeatures().frames(tone, RATE)
    assert frames.shape == (51, EmbeddedFeatures.dim) and np.isfinite(frames).all()
    assert np.allclose(np.diff(times), 1 / FRAME_RATE)
    f0 = frames[5:-5, EmbeddedFeatures.NAMES.index("f0_st")]
    assert np.allclose(f0, 12.0, atol=0.3)  # 200 Hz is an octave above the 100 Hz reference


def test_word_pooling_reads_only_the_frames_inside_each_word() -> None:
    frames = np.zeros((100, 2), dtype=np.float32)
    frames[25:50, 0] = 1.0  # the second word's frames (0.5-1.0 s) are set in dimension 0
    times = np.arange(100) / FRAME_RATE
    rows = word_vectors(frames, times, [(0.0, 0.5), (0.5, 1.0), (1.2, 1.2)])
    assert rows.shape == (3, pooled_dim(2))
    assert rows[0, 0] == 0.0 and rows[1, 0] == 1.0  # means
    assert rows[1, 4] == 1.0 and rows[0, 4] == 0.0  # maxes
    assert np.isclose(rows[1, 6], np.log(0.5))  # log duration
    assert np.isfinite(rows).all()  # a zero-length word takes its nearest frame


def test_learns_to_separate_emotions_on_a_held_out_speaker(synthetic, one_thread) -> None:
    _, inputs = synthetic
    train = [c for c in inputs if c.speaker != "s3"]
    test = [c for c in inputs if c.speaker == "s3"]
    result = train_efp(train, LABELS, EmbeddedFeatures(), FAST)
    predicted = np.concatenate(predict_clips(result.model, test))
    truth = np.concatenate([c.labels for c in test])
    assert set(truth) == {LABELS.index("happy"), LABELS.index("sad")}
    assert (predicted == truth).mean() >= 0.9  # chance is 0.5
    assert result.val_speakers and "s3" not in result.val_speakers


def test_training_is_deterministic_and_save_load_is_bit_identical(synthetic, tmp_path, one_thread) -> None:
    _, inputs = synthetic
    config = replace(FAST, epochs=6, refit=False, ensemble=2)
    first = train_efp(inputs, LABELS, EmbeddedFeatures(), config).model
    second = train_efp(inputs, LABELS, EmbeddedFeatures(), config).model
    assert first.content_hash == second.content_hash

    loaded = load_model(save_model(first, tmp_path / "m" / "model.safetensors"))
    assert load_model(tmp_path / "m").content_hash == first.content_hash  # a folder works too
    assert loaded.content_hash == first.content_hash and loaded.config == first.config
    assert (
        len(loaded.nets) == 2
        and first.content_hash
        != train_efp(inputs, LABELS, EmbeddedFeatures(), replace(config, seed=5)).model.content_hash
    )
    for clip in inputs[:4]:
        a, b = first.predict_words(clip.audio, None), loaded.predict_words(clip.audio, None)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_engine_labels_speech_and_reports_sources(synthetic, tmp_path, one_thread) -> None:
    folder, inputs = synthetic
    model = train_efp(inputs, LABELS, EmbeddedFeatures(), FAST).model
    engine = LearnedEFP(save_model(model, tmp_path / "efp.safetensors"))
    assert engine.name == "learned" and model.content_hash[:16] in engine.version

    clip = next(c for c in read_clip_set(folder) if c.clip_id.startswith("s2-happy"))
    samples, rate = sf.read(folder / clip.audio, dtype="float32")
    text = " ".join(w.text for w in clip.words)
    starts = [text.index(w.text) for w in clip.words]
    plan = EmotionPlan(
        text,
        [
            PlannedWord(i, w.text, s, s + len(w.text), "neutral", 0.0, "default")
            for i, (w, s) in enumerate(zip(clip.words, starts, strict=True))
        ],
    )
    timings = Timings([WordTiming(i, w.text, w.start, w.end) for i, w in enumerate(clip.words)])
    curve = engine.predict(Speech(samples, rate, timings), timings, plan)
    assert curve.labels == LABELS and curve.engine == engine.engine
    assert [p.label for p in curve.points] == ["happy"] * 3
    for point in curve.points:
        assert abs(sum(point.distribution.values()) - 1.0) < 1e-5
        assert set(point.sources) == {"model", "audio"} and point.weights["model"] == 1.0
        assert 0.0 < point.intensity <= 1.0  # confidence-scaled: the set labels no intensities
    empty = engine.predict(Speech(samples, rate, Timings([])), Timings([]), EmotionPlan("", []))
    assert empty.points == []


def test_text_branch_trains_and_predicts(synthetic, one_thread) -> None:
    folder, _ = synthetic
    clips = read_clip_set(folder)[:6]
    inputs = clip_inputs(clips, folder, EmbeddedFeatures(), LABELS, use_text=True)
    assert inputs[0].text is not None and inputs[0].text.shape == (3, 384)
    model = train_efp(inputs, LABELS, EmbeddedFeatures(), replace(FAST, epochs=2, use_text=True)).model
    out = model.predict_words(inputs[0].audio, inputs[0].text)
    assert set(out) == {"model", "audio", "text", "intensity"}


def test_features_are_cached_on_disk(synthetic, tmp_path) -> None:
    folder, _ = synthetic
    clips = read_clip_set(folder)[:2]
    cache = tmp_path / "cache"
    first = clip_inputs(clips, folder, EmbeddedFeatures(), LABELS, False, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2
    again = clip_inputs(clips, folder, EmbeddedFeatures(), LABELS, False, cache_dir=cache)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(first, again, strict=True))


def test_bad_clip_sets_are_input_errors(tmp_path) -> None:
    write_clip_set(tmp_path / "empty", [])
    with pytest.raises(InputError, match="no clips"):
        read_clip_set(tmp_path / "empty")
    with pytest.raises(InputError, match="no clips"):
        check_clips([], LABELS)
    word = LabelledWord("hi", 0.1, 0.3, "happy")
    with pytest.raises(InputError, match="unknown label 'bored'"):
        check_clips([LabelledClip("c", "c.wav", [replace(word, label="bored")])], LABELS)
    with pytest.raises(InputError, match="has no words"):
        check_clips([LabelledClip("c", "c.wav", [])], LABELS)
    with pytest.raises(InputError, match="impossible span"):
        check_clips([LabelledClip("c", "c.wav", [replace(word, end=0.0)])], LABELS)
    with pytest.raises(InputError, match="unknown EFP features"):
        build_extractor("mfcc")
    with pytest.raises(InputError, match="no EFP model"):
        load_model(tmp_path / "missing.safetensors")


def test_engine_without_a_model_says_how_to_train_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from kernel.settings import get_settings

    monkeypatch.delenv("EMOFLOW_EFP_MODEL", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(InputError, match=r"python -m flows\.train_efp"):
            LearnedEFP()
    finally:
        get_settings.cache_clear()


def test_a_model_whose_labels_the_vocabulary_lacks_is_refused(synthetic, tmp_path, one_thread) -> None:
    _, inputs = synthetic
    model = train_efp(inputs[:4], [*LABELS, "bored"], EmbeddedFeatures(), replace(FAST, epochs=1)).model
    with pytest.raises(EngineError, match="bored"):
        LearnedEFP(model)


def test_speaker_normalisation_standardises_against_the_speaker_shrunk_to_the_prior() -> None:
    rng = np.random.default_rng(0)
    words = rng.normal(5.0, 2.0, size=(4000, 3)).astype(np.float32)
    prior_mean, prior_std = np.zeros(3), np.ones(3)
    z = speaker_standardised(words, words, prior_mean, prior_std, prior_words=20.0)
    assert np.allclose(z.mean(axis=0), 0.0, atol=0.05) and np.allclose(z.std(axis=0), 1.0, atol=0.05)
    # no reference words at all: the prior alone
    alone = speaker_standardised(words[:2], words[:0], prior_mean, prior_std, prior_words=20.0)
    assert np.allclose(alone, words[:2])


def test_speaker_normalised_model_learns_and_round_trips(synthetic, tmp_path, one_thread) -> None:
    _, inputs = synthetic
    train = [c for c in inputs if c.speaker != "s3"]
    test = [c for c in inputs if c.speaker == "s3"]
    model = train_efp(train, LABELS, EmbeddedFeatures(), replace(FAST, normalise="speaker")).model
    assert model.config.normalise == "speaker" and not np.allclose(model.net.prior_mean.numpy(), 0.0)
    predicted = np.concatenate(predict_clips(model, test))
    assert (predicted == np.concatenate([c.labels for c in test])).mean() >= 0.9
    loaded = load_model(save_model(model, tmp_path / "speaker.safetensors"))
    again = predict_clips(loaded, test)
    assert all(np.array_equal(a, b) for a, b in zip(again, predict_clips(model, test), strict=True))
