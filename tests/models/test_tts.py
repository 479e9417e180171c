"""Speech engines, tested on real voices (Piper + PSOLA reshaping, espeak-ng) with plans built by hand."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import librosa
import numpy as np
import pytest

from kernel.errors import InputError
from models.tts import ENGINES, SpeechEngine, get_speech_engine
from models.tts.common import match_unit_counts, split_sentences
from models.types import EmotionPlan, PlannedWord, Speech

WORD_RE = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
FOX = "The quick brown fox jumps over the lazy dog near the river bank."
TRICKY = "I'm sure it's fine. Don't worry: 3 well-known cats ate 1995 fish & chips! Dr. Smith agreed, right?"

Labeller = Callable[[int], tuple[str, float]]


def make_plan(script: str, label: str | Labeller = "neutral", intensity: float = 1.0) -> EmotionPlan:
    """A plan with one word per letter/digit run (apostrophes and hyphens join), like the planner's."""
    words = []
    for i, match in enumerate(WORD_RE.finditer(script)):
        name, strength = label(i) if callable(label) else (label, intensity)
        words.append(PlannedWord(i, match.group(), match.start(), match.end(), name, strength, "tag"))
    return EmotionPlan(script=script, words=words)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[SpeechEngine]:
    yield get_speech_engine(request.param)


def voiced_f0(speech: Speech) -> float:
    """Median YIN F0 over loud, low-zero-crossing (voiced) frames."""
    y, sr = speech.samples, speech.sample_rate
    f0 = librosa.yin(y, fmin=60, fmax=400, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0]
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=1024, hop_length=256)[0]
    n = min(len(f0), len(rms), len(zcr))
    voiced = (rms[:n] > 0.2 * rms.max()) & (zcr[:n] < 0.1)
    return float(np.median(f0[:n][voiced]))


def active_db(speech: Speech) -> float:
    """Loudness of the frames that carry speech, in dB."""
    rms = librosa.feature.rms(y=speech.samples, frame_length=1024, hop_length=256)[0]
    active = rms > 0.1 * rms.max()
    return float(20 * np.log10(np.sqrt(np.mean(rms[active] ** 2))))


def speaking_time(speech: Speech) -> float:
    return speech.timings.words[-1].end - speech.timings.words[0].start


def every_five_words(i: int) -> tuple[str, float]:
    return [("neutral", 0.0), ("happy", 0.8), ("sad", 1.0), ("angry", 0.6)][i // 5 % 4]


def neutral_angry_happy(i: int) -> tuple[str, float]:
    return ("neutral", 0.0) if i < 5 else ("angry", 1.0) if i < 13 else ("happy", 0.9)


def check_speech(plan: EmotionPlan, speech: Speech) -> None:
    samples = speech.samples
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.all(np.isfinite(samples)) and float(np.max(np.abs(samples))) <= 1.0
    words = speech.timings.words
    assert [(w.index, w.text) for w in words] == [(w.index, w.text) for w in plan.words]
    previous_end = 0.0
    for w in words:
        assert previous_end <= w.start < w.end <= speech.duration + 1e-6, w
        previous_end = w.end
    spans = {w.index: w for w in words}
    for p in speech.timings.phonemes:
        word = spans[p.word_index]
        assert word.start - 1e-6 <= p.start < p.end <= word.end + 1e-6, p


# 1. Choosing an engine -------------------------------------------------------------------------------------


def test_unknown_engine_name_lists_the_valid_ones() -> None:
    with pytest.raises(InputError, match=r"unknown speech engine 'festival'.*piper, espeak"):
        get_speech_engine("festival")


def test_engines_follow_the_protocol(engine: SpeechEngine) -> None:
    assert isinstance(engine, SpeechEngine)
    assert engine.name in ENGINES and engine.version
    assert get_speech_engine(engine.name) is engine  # shared: the voice loads once


def test_bad_plans_are_input_errors(engine: SpeechEngine) -> None:
    with pytest.raises(InputError, match="no words"):
        engine.synthesize(EmotionPlan(script="", words=[]))
    with pytest.raises(InputError, match="unknown emotion 'purple'"):
        engine.synthesize(make_plan("Hello there.", "purple"))


# 2. Timings ------------------------------------------------------------------------------------------------


def test_timings_cover_every_word_of_a_tricky_script(engine: SpeechEngine) -> None:
    plan = make_plan(TRICKY, every_five_words)
    calls: list[tuple[int, int]] = []
    speech = engine.synthesize(plan, progress=lambda done, total: calls.append((done, total)))

    check_speech(plan, speech)
    total = len(split_sentences(plan))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [done for done, _ in calls] == list(range(total + 1))
    # 21 words with numbers read out in full: between 1.5 and 5 words per second
    assert 1.5 < len(plan.words) / speaking_time(speech) < 5.0
    assert speech.timings.phonemes, "both engines report phonemes"
    by_text = {w.text: w for w in speech.timings.words}
    # "1995" is read as three groups and must not swallow its neighbours
    assert by_text["1995"].end - by_text["1995"].start > by_text["ate"].end - by_text["ate"].start


def test_sentences_split_after_stops_but_not_abbreviations() -> None:
    texts = [s.text for s in split_sentences(make_plan(TRICKY))]
    assert texts == [
        "I'm sure it's fine.",
        "Don't worry: 3 well-known cats ate 1995 fish & chips!",
        "Dr. Smith agreed, right?",
    ]
    texts = [s.text for s in split_sentences(make_plan('It is 3.5 times the U.S.A. size. "Wow!" Fine.'))]
    assert texts == ["It is 3.5 times the U.S.A. size.", 'Wow!"', "Fine."]


def test_merged_units_are_shared_between_their_words() -> None:
    # Piper says "I am here" as two groups, "aɪɐm hɪɹ"; alone, the words are "aɪ", "æm", "hɪɹ"
    first_word = match_unit_counts([1, 1, 1], ["aɪ", "æm", "hɪɹ"], ["aɪɐm", "hɪɹ"])
    assert first_word == [0, 2]
    # a leftover unit ("dollar" for "$") goes with the word before it, not to the next word
    first_word = match_unit_counts([1, 1, 1], ["peɪd", "faɪv", "ɪn"], ["peɪd", "dɑlɚ", "faɪv", "ɪn"])
    assert first_word in ([0, 0, 1, 2], [0, 1, 1, 2])


# 3. Emotion is audible -------------------------------------------------------------------------------------


def test_sad_is_lower_and_slower_and_angry_is_louder_and_higher(engine: SpeechEngine) -> None:
    neutral = engine.synthesize(make_plan(FOX, "neutral", 0.0))
    sad = engine.synthesize(make_plan(FOX, "sad", 1.0))
    angry = engine.synthesize(make_plan(FOX, "angry", 1.0))

    # sad: -2.6 semitones, rate 0.79 in prompts/emotions.yaml (EmoDB's actors)
    assert 12 * np.log2(voiced_f0(sad) / voiced_f0(neutral)) < -1.0
    assert speaking_time(sad) > 1.1 * speaking_time(neutral)
    # angry: +6 dB (peaks are limited, so expect a bit less), +9.3 semitones, rate 0.92: as EmoDB's
    # actors, angry is slower than neutral, not faster
    assert active_db(angry) - active_db(neutral) > 3.0
    assert 12 * np.log2(voiced_f0(angry) / voiced_f0(neutral)) > 4.0
    assert speaking_time(angry) > speaking_time(neutral)


def test_intensity_scales_the_change(engine: SpeechEngine) -> None:
    mild = engine.synthesize(make_plan(FOX, "sad", 0.3))
    full = engine.synthesize(make_plan(FOX, "sad", 1.0))
    assert speaking_time(mild) < speaking_time(full)
    assert voiced_f0(mild) > voiced_f0(full)


# 4. Joins are smooth ---------------------------------------------------------------------------------------


def test_no_clicks_where_emotions_change(engine: SpeechEngine) -> None:
    # neutral -> angry inside a sentence with no pause (neutral has none), angry -> happy after a pause
    script = "I am sure I don't have three cats. But it's a well-known fact, and I am furious about it."
    plan = make_plan(script, neutral_angry_happy)
    speech = engine.synthesize(plan)
    check_speech(plan, speech)

    sr, words = speech.sample_rate, speech.timings.words
    jumps = np.abs(np.diff(speech.samples))
    near = np.zeros(len(jumps), dtype=bool)
    for segment in plan.segments()[1:]:  # +-60 ms around each emotion change
        at = (words[segment.first - 1].end + words[segment.first].start) / 2
        near[max(0, int((at - 0.06) * sr)) : int((at + 0.06) * sr)] = True
    # around each join the signal moves no faster than it does while speaking elsewhere
    assert near.any() and jumps[near].max() < 1.5 * np.percentile(jumps[~near], 99.9)


def test_piper_is_deterministic() -> None:
    engine = get_speech_engine("piper")
    plan = make_plan(
        "Every run says this the same way.", lambda i: ("fear", 0.7) if i > 3 else ("neutral", 0.0)
    )
    first, second = engine.synthesize(plan), engine.synthesize(plan)
    assert np.array_equal(first.samples, second.samples)
    assert first.timings == second.timings
