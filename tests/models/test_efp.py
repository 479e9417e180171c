"""EmbeddedEFP with the real MiniLM, NRC lexicon and librosa on synthetic speech, with the fitted weights."""

from __future__ import annotations

import json
import threading
from collections.abc import Collection

import numpy as np
import pytest

from models.efp import EFPConfig, EmbeddedEFP, FusionWeights, load_text_model
from models.plan.rules import RulePlanner
from models.types import EmotionCurve, EmotionPlan, PhonemeTiming, Speech, Timings, WordTiming

SR = 22050
WORD_S = 0.3
HIGH_AROUSAL = ("happy", "angry", "surprise")  # labels whose acoustic profile is louder and higher


@pytest.fixture(scope="module")
def efp() -> EmbeddedEFP:
    return EmbeddedEFP()


@pytest.fixture(scope="module")
def planner() -> RulePlanner:
    return RulePlanner()


def voice(f0: float, amplitude: float, seconds: float) -> np.ndarray:
    """A harmonic tone with 20 ms ramps: voiced, with a clear F0 and loudness."""
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    ramp = np.clip(np.minimum(t, seconds - t) / 0.02, 0.0, 1.0)
    return (amplitude * wave * ramp / 1.9).astype(np.float32)


def synth(
    plan: EmotionPlan, loud: Collection[int] = (), silent: Collection[int] = (), zero: Collection[int] = ()
) -> Speech:
    """Speech with one 0.3 s tone per word: loud words at 260 Hz, the rest quieter at 140 Hz."""
    pieces: list[np.ndarray] = []
    words: list[WordTiming] = []
    t = 0.0
    for w in plan.words:
        seconds = 0.0 if w.index in zero else WORD_S
        if w.index in silent:
            pieces.append(np.zeros(int(seconds * SR), dtype=np.float32))
        elif w.index in loud:
            pieces.append(voice(260.0, 0.6, seconds))
        else:
            pieces.append(voice(140.0, 0.12, seconds))
        words.append(WordTiming(w.index, w.text, t, t + seconds))
        t += seconds
    return Speech(np.concatenate(pieces), SR, Timings(words=words))


def check_curve(curve: EmotionCurve, plan: EmotionPlan, speech: Speech) -> None:
    assert [p.index for p in curve.points] == [w.index for w in plan.words]
    assert curve.labels == ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]
    assert curve.engine.startswith("embedded-efp@")
    for point, timing in zip(curve.points, speech.timings.words, strict=True):
        assert (point.start, point.end) == (timing.start, timing.end)
        assert sum(point.distribution.values()) == pytest.approx(1.0, abs=1e-6)
        assert point.label == max(point.distribution, key=point.distribution.__getitem__)
        assert 0.0 <= point.intensity <= 1.0
        assert set(point.sources) == {"plan", "text", "lexicon", "prosody"} == set(point.weights)
        for dist in point.sources.values():
            assert set(dist) == set(curve.labels)
            assert sum(dist.values()) == pytest.approx(1.0, abs=1e-6)
    # the curve is plain data: JSON round trip
    assert EmotionCurve.from_dict(json.loads(json.dumps(curve.to_dict()))) == curve


def test_one_point_per_word_with_sources_and_weights(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan("We finally made it home. [sad] I wish you were here.")
    speech = synth(plan, loud={1, 2})
    curve = efp.predict(speech, speech.timings, plan)
    check_curve(curve, plan, speech)
    assert curve.engine == f"embedded-efp@{efp.version}"
    w = efp.weights
    first = curve.points[0].weights  # untagged: the default plan's weight; full audio
    assert (first["plan"], first["text"], first["prosody"]) == (w.plan_default, w.text, w.prosody)
    assert curve.points[5].weights["plan"] == w.plan  # tagged
    assert {p.label for p in curve.points[5:]} == {"sad"}
    frames = curve.per_frame(fps=25, n_frames=int(speech.duration * 25))
    assert frames.probs.shape == (int(speech.duration * 25), len(curve.labels))


def test_plan_asking_for_angry_yields_angry(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    # the words are the vocabulary's own neutral prototype, so text pulls hard the other way
    plan = planner.plan("The train leaves from platform four. [angry] The train leaves from platform four.")
    speech = synth(plan)
    curve = efp.predict(speech, speech.timings, plan)
    assert {p.label for p in curve.points[:6]} == {"neutral"}
    assert {p.label for p in curve.points[6:]} == {"angry"}
    assert all(p.intensity == pytest.approx(0.75, abs=0.2) for p in curve.points[6:])
    assert all(p.intensity == 0.0 for p in curve.points[:6])


def test_text_source_ranks_angry_and_sad_sentences(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan(
        "How dare you lie to me, get out of my sight! My old dog died today and I cannot stop crying."
    )
    text = efp.text_distributions(plan)
    labels = efp.vocabulary.labels
    angry, sad = labels.index("angry"), labels.index("sad")
    split = [w.text for w in plan.words].index("My")
    first, second = text[:split], text[split:]
    assert np.allclose(text.sum(axis=1), 1.0)
    assert int(np.argmax(first.mean(axis=0))) == angry
    assert int(np.argmax(second.mean(axis=0))) == sad
    assert (first[:, angry] > first[:, sad]).all()
    assert (second[:, sad] > second[:, angry]).all()


def test_louder_higher_words_get_more_arousal_from_prosody(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan("one two three four five six seven eight")
    loud = {2, 3, 6}
    speech = synth(plan, loud=loud)
    probs, factor, z = efp.prosody_evidence(speech, speech.timings, plan)
    labels = efp.vocabulary.labels
    arousal = probs[:, [labels.index(x) for x in HIGH_AROUSAL]].sum(axis=1)
    is_loud = np.array([i in loud for i in range(len(plan.words))])
    assert arousal[is_loud].min() > arousal[~is_loud].max()
    assert probs[is_loud, labels.index("sad")].max() < probs[~is_loud, labels.index("sad")].min()
    assert (z[is_loud, :2] > 0).all() and (z[~is_loud, :2] < 0).all()  # f0 and energy z-scores
    assert (factor == 1.0).all()

    # under an angry plan the loud words are the more intense ones
    angry = planner.plan("[angry] one two three four five six seven eight")
    curve = efp.predict(speech, speech.timings, angry)
    loud_i = [p.intensity for p in curve.points if p.index in loud]
    quiet_i = [p.intensity for p in curve.points if p.index not in loud]
    assert min(loud_i) > max(quiet_i)


def test_silent_and_zero_duration_words_fall_back(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan("[happy] This is such a lovely surprise for all of us")
    speech = synth(plan, loud={1}, silent={4, 5}, zero={8})
    curve = efp.predict(speech, speech.timings, plan)
    check_curve(curve, plan, speech)
    for i in (4, 5, 8):  # borrowed from neighbours at half weight
        assert curve.points[i].weights["prosody"] == pytest.approx(0.5 * efp.weights.prosody)
    assert curve.points[0].weights["prosody"] == efp.weights.prosody
    assert {p.label for p in curve.points} == {"happy"}


def test_all_silent_or_empty_audio_uses_plan_and_text(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan("Nothing to hear here.", "sad")
    speech = synth(plan, silent={0, 1, 2, 3})
    for samples in (speech.samples, np.zeros(0, dtype=np.float32)):
        curve = efp.predict(Speech(samples, SR, speech.timings), speech.timings, plan)
        assert all(p.weights["prosody"] == 0.0 for p in curve.points)
        assert {p.label for p in curve.points} == {"sad"}


def test_missing_timings_and_phoneme_rate(efp: EmbeddedEFP, planner: RulePlanner) -> None:
    plan = planner.plan("Quick brown fox jumps")
    speech = synth(plan, loud={3})
    partial = Timings(words=[t for t in speech.timings.words if t.index != 2])
    curve = efp.predict(speech, partial, plan)
    assert len(curve.points) == 4
    assert curve.points[2].start == curve.points[2].end == curve.points[1].end
    phonemes = [
        PhonemeTiming("x", t.start + k * 0.05, t.start + (k + 1) * 0.05, t.index)
        for t in speech.timings.words
        for k in range(3)
    ]
    with_phonemes = Timings(words=speech.timings.words, phonemes=phonemes)
    # rate is phonemes per second when every word has phonemes: all equal here, so z = 0
    _, _, z = efp.prosody_evidence(speech, with_phonemes, plan)
    assert np.allclose(z[:, 2], 0.0)
    # otherwise letters per second: "fox" is slower than "Quick" over the same 0.3 s
    _, _, z = efp.prosody_evidence(speech, speech.timings, plan)
    assert z[2, 2] < z[0, 2]
    assert len(efp.predict(speech, with_phonemes, plan).points) == 4


def test_weights_are_a_constructor_argument_and_change_the_version(planner: RulePlanner) -> None:
    plan = planner.plan("[angry] Fine, whatever you say.")
    speech = synth(plan)
    plan_only = EmbeddedEFP(
        weights=FusionWeights(
            plan=1.0, plan_default=1.0, text=0.0, lexicon=0.0, lexicon_context=0.0, prosody=0.0
        )
    )
    assert plan_only.version != EmbeddedEFP().version
    assert EmbeddedEFP().version.startswith(f"{EmbeddedEFP.BASE_VERSION}+")
    assert EmbeddedEFP(config=EFPConfig(context_words=5)).version != EmbeddedEFP().version
    curve = plan_only.predict(speech, speech.timings, plan)
    for point in curve.points:
        assert point.weights == {"plan": 1.0, "text": 0.0, "lexicon": 0.0, "prosody": 0.0}
        assert point.distribution == pytest.approx(point.sources["plan"], abs=1e-5)


def test_text_model_loads_once_across_threads() -> None:
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(load_text_model())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 and all(m is seen[0] for m in seen)


def test_without_a_plan_the_words_decide_and_a_tag_overrules_them(
    efp: EmbeddedEFP, planner: RulePlanner
) -> None:
    sad_line = "My old dog died today and I cannot stop crying."
    untagged = planner.plan(sad_line)
    speech = synth(untagged)
    curve = efp.predict(speech, speech.timings, untagged)
    labels = [p.label for p in curve.points]
    assert labels.count("sad") > len(labels) / 2  # the default neutral plan is weak; text and lexicon lead
    crying = curve.points[-1]
    assert crying.text == "crying" and crying.weights["lexicon"] == efp.weights.lexicon  # an NRC hit by lemma
    assert crying.sources["lexicon"]["sad"] == max(crying.sources["lexicon"].values())
    assert efp.predict(speech, speech.timings, untagged) == curve  # deterministic

    tagged = planner.plan(f"[happy 0.4] {sad_line}")  # user intent, even against the words
    curve = efp.predict(speech, speech.timings, tagged)
    assert {p.label for p in curve.points} == {"happy"}
    assert all(p.weights["plan"] == efp.weights.plan for p in curve.points)


def test_narration_prior_moves_only_unplanned_words_towards_neutral() -> None:
    import numpy as np

    from models.efp.engine import narration_prior
    from models.efp.params import EFPConfig

    labels = ["neutral", "happy", "angry"]
    fused = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    shifted = narration_prior(fused, np.array([True, False]), labels, EFPConfig(unplanned_neutral_share=0.8))
    assert np.allclose(shifted[0], fused[0])  # an explicit plan word keeps its distribution
    # neutral x 0.8*3, others x 0.1*3, renormalised: 0.48 : 0.09 : 0.15
    assert np.allclose(shifted[1], np.array([0.48, 0.09, 0.15]) / 0.72)
    assert np.allclose(shifted.sum(axis=1), 1.0)
    off = narration_prior(fused, np.array([False, False]), labels, EFPConfig(unplanned_neutral_share=0.0))
    assert np.allclose(off, fused)
