"""A 10,000-word plan through the embedded EFP: it completes, one sane point per word, tags still win."""

from __future__ import annotations

import numpy as np
import pytest

from models.efp import EmbeddedEFP
from models.efp.text import SENTENCE_BLOCK
from models.plan.rules import RulePlanner
from models.types import EmotionPlan, Speech, Timings, WordTiming

SR = 8000
WORD_S = 0.2
LINES = [
    "[angry] Stop making excuses and fix what you broke, now!",
    "[sad] We buried the old dog under the apple tree this morning.",
    "The next bus to the city centre leaves at half past nine.",
    "[happy] We got the keys today, the house is finally ours!",
    "[fear] Lock the door, they are coming up the stairs!",
]


def tones(plan: EmotionPlan) -> Speech:
    """One 0.2 s tone per word; every seventh word louder and higher."""
    t = np.arange(int(WORD_S * SR)) / SR
    quiet = (0.1 * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
    loud = (0.4 * np.sin(2 * np.pi * 240 * t)).astype(np.float32)
    samples = np.concatenate([loud if i % 7 == 3 else quiet for i in range(len(plan.words))])
    words = [WordTiming(w.index, w.text, i * WORD_S, (i + 1) * WORD_S) for i, w in enumerate(plan.words)]
    return Speech(samples, SR, Timings(words=words))


def test_ten_thousand_words_complete_with_one_point_each() -> None:
    paragraph = " ".join(LINES)
    per = len(RulePlanner().plan(paragraph).words)
    plan = RulePlanner().plan(" ".join([paragraph] * (10_000 // per + 1)))
    plan = EmotionPlan(plan.script, plan.words[:10_000])
    speech = tones(plan)
    efp = EmbeddedEFP()
    curve = efp.predict(speech, speech.timings, plan)

    assert len(curve.points) == 10_000
    assert [p.index for p in curve.points] == [w.index for w in plan.words]
    dist = np.array([[p.distribution[k] for k in curve.labels] for p in curve.points])
    assert np.isfinite(dist).all() and np.allclose(dist.sum(axis=1), 1.0)
    assert all(0.0 <= p.intensity <= 1.0 for p in curve.points)
    assert all(p.weights["prosody"] == pytest.approx(efp.weights.prosody) for p in curve.points)
    # explicit tags are user intent: every tagged word keeps its tag's label, at the start and at the end
    tagged = [(w, p) for w, p in zip(plan.words, curve.points, strict=True) if w.source == "tag"]
    assert len(tagged) > 5000
    assert all(p.label == w.label for w, p in tagged)


def test_an_unpunctuated_script_is_read_in_blocks() -> None:
    plan = RulePlanner().plan(" ".join(["we walked along the river and talked about the old days"] * 100))
    windows, sentences = EmbeddedEFP().text.contexts(plan)
    assert len(windows) == len(sentences) == len(plan.words) == 1100
    assert max(len(s.split()) for s in sentences) == SENTENCE_BLOCK
    assert len(set(sentences)) <= -(-1100 // SENTENCE_BLOCK)  # one text per block, not per word
