"""Speech engines on bad input (URLs, emoji, numbers, other scripts, odd intensities, silence) and on
long scripts streamed to disk. Real voices, plans built by hand as in test_tts."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kernel.errors import EngineError, InputError
from models.tts import ENGINES, StreamingSpeechEngine, get_speech_engine
from models.tts.common import check_audible, split_sentences
from models.tts.espeak_engine import EspeakEngine
from models.tts.normalize import LINK_WORD, prepare
from models.tts.piper_engine import PiperEngine
from models.vocabulary import Prosody, load_vocabulary
from tests.models.test_tts import TRICKY, check_speech, make_plan

URL_SCRIPT = "Read https://example.com/docs/start now 😀👍🏽 or mail help@example.org today."


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[StreamingSpeechEngine]:
    found = get_speech_engine(request.param)
    assert isinstance(found, StreamingSpeechEngine)
    yield found


# 1. Text the voice cannot speak as written --------------------------------------------------------------


def test_urls_and_emoji_become_speakable_text() -> None:
    plan = make_plan(URL_SCRIPT)
    prepared = prepare(plan)
    assert prepared.changed
    assert prepared.plan.script == f"Read {LINK_WORD} now  or mail {LINK_WORD} today."
    assert [w.text for w in prepared.plan.words] == ["Read", "link", "now", "or", "mail", "link", "today"]
    # "https example com docs start" are one spoken word; so are "help example org"
    assert prepared.origin[1] == [1, 2, 3, 4, 5] and prepared.origin[5] == [9, 10, 11]
    for w in prepared.plan.words:
        assert prepared.plan.script[w.char_start : w.char_end] == w.text
    untouched = make_plan("Nothing odd here.")
    assert prepare(untouched).plan is untouched


def test_urls_are_spoken_as_one_short_word(engine: StreamingSpeechEngine) -> None:
    plan = make_plan(URL_SCRIPT, "happy", 0.5)
    speech = engine.synthesize(plan)
    check_speech(plan, speech)
    words = speech.timings.words
    # spelled out, "https://example.com/docs/start" takes seconds; "link" takes a fraction of one
    assert words[5].end - words[1].start < 0.8
    assert speech.duration < 5.0


def test_numbers_are_read_as_words(engine: StreamingSpeechEngine) -> None:
    plan = make_plan("It costs 742 dollars.")
    speech = engine.synthesize(plan)
    check_speech(plan, speech)
    number = speech.timings.words[2]
    # "seven hundred and forty-two" is far longer than "It"
    assert number.end - number.start > 3 * (speech.timings.words[0].end - speech.timings.words[0].start)


def test_other_scripts_are_refused_by_name(engine: StreamingSpeechEngine) -> None:
    with pytest.raises(InputError, match=r"cannot speak: 'Привет', 'мир'.*transliterate"):
        engine.synthesize(make_plan("Hello Привет мир again."))
    with pytest.raises(InputError, match=r"'東京'"):
        engine.synthesize(make_plan("We flew to 東京 today."))


# 2. Intensity and silence --------------------------------------------------------------------------------


def test_extreme_intensities_are_clipped_and_nan_refused() -> None:
    engine = get_speech_engine("piper")  # deterministic, so "clipped" means bit-identical
    full = engine.synthesize(make_plan("I cannot believe this.", "angry", 1.0))
    beyond = engine.synthesize(make_plan("I cannot believe this.", "angry", 7.5))
    assert np.array_equal(full.samples, beyond.samples)  # intensity is clipped to 0..1
    below = engine.synthesize(make_plan("I cannot believe this.", "angry", -3.0))
    assert np.array_equal(below.samples, engine.synthesize(make_plan("I cannot believe this.")).samples)
    with pytest.raises(InputError, match="intensity nan"):
        engine.synthesize(make_plan("I cannot believe this.", "angry", float("nan")))


def test_silence_is_detected() -> None:
    check_audible(np.full(2205, 0.1, dtype=np.float32), 22050, "loud")
    for bad in (np.zeros(22050, dtype=np.float32), np.zeros(0, dtype=np.float32)):
        with pytest.raises(EngineError, match=r"silence|no audio"):
            check_audible(bad, 22050, "quiet")
    # an emotion whose energy change mutes the voice: the engine must say so, not return silence
    vocabulary = load_vocabulary()
    neutral = vocabulary.emotions["neutral"]
    mute = dataclasses.replace(neutral, name="mute", prosody=Prosody(0.0, 1.0, 1.0, -120.0, 0.0))
    muted = dataclasses.replace(vocabulary, emotions={**vocabulary.emotions, "mute": mute})
    for engine in (EspeakEngine(vocabulary=muted), PiperEngine(vocabulary=muted, reshape=False)):
        with pytest.raises(EngineError, match="silence"):
            engine.synthesize(make_plan("Can you hear me?", "mute", 1.0))


# 3. Long scripts stream to disk ----------------------------------------------------------------------------


def test_streamed_file_matches_in_memory_speech(engine: StreamingSpeechEngine, tmp_path: Path) -> None:
    plan = make_plan(TRICKY + " " + URL_SCRIPT, lambda i: ("sad", 0.8) if i < 12 else ("happy", 0.6))
    calls: list[tuple[int, int]] = []
    path = tmp_path / "speech.wav"
    timings = engine.synthesize_to(plan, path, progress=lambda d, t: calls.append((d, t)))
    speech = engine.synthesize(plan)

    samples, sample_rate = sf.read(path, dtype="float32")
    assert sample_rate == speech.sample_rate
    assert [(w.index, w.text) for w in timings.words] == [(w.index, w.text) for w in plan.words]
    if engine.name == "piper":  # deterministic: the same audio up to 16-bit quantisation
        assert len(samples) == len(speech.samples)
        assert np.max(np.abs(samples - speech.samples)) < 2e-3
        tolerance = 0.002
    else:  # espeak's output length varies by a few ms between identical calls
        assert abs(len(samples) - len(speech.samples)) < 0.01 * len(samples)
        tolerance = 0.05
    for streamed, whole in zip(timings.words, speech.timings.words, strict=True):
        assert abs(streamed.start - whole.start) < tolerance and abs(streamed.end - whole.end) < tolerance
    total = len(split_sentences(prepare(plan).plan))
    assert calls == [(k, total) for k in range(total + 1)]
    assert [p.name for p in tmp_path.iterdir()] == ["speech.wav"]  # no partial file left behind


def test_streaming_keeps_memory_flat(tmp_path: Path) -> None:
    engine = get_speech_engine("espeak")
    sentence = "The committee met again on Thursday and agreed to review the budget next month. "
    plan = make_plan(sentence * 40, "neutral", 0.0)  # about two minutes of speech

    def peak(run: object) -> int:
        tracemalloc.start()
        try:
            run()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed = peak(lambda: engine.synthesize_to(plan, tmp_path / "long.wav"))
    in_memory = peak(lambda: engine.synthesize(plan))
    duration = sf.info(str(tmp_path / "long.wav")).duration
    assert duration > 90
    # in memory holds several float32 copies of the whole utterance; streaming about one sentence
    assert streamed < in_memory / 4, (streamed, in_memory)


def test_streaming_to_a_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        get_speech_engine("espeak").synthesize_to(make_plan("Hello."), tmp_path / "nope" / "a.wav")
