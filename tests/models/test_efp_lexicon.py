"""The EFP's lexicon source: NRC + vocabulary words found through lemmas, mapped to our labels."""

from __future__ import annotations

import numpy as np
import pytest

from models.efp import lexicon
from models.efp.lexicon import CONTEXT, HIT, NONE, LexiconEvidence, load_category_map
from models.efp.params import EFPConfig
from models.plan.rules import RulePlanner
from models.vocabulary import load_vocabulary

LABELS = ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"]


@pytest.fixture(scope="module")
def source() -> LexiconEvidence:
    return LexiconEvidence(load_vocabulary(), EFPConfig())


def top(dist: np.ndarray | None) -> str:
    assert dist is not None
    return LABELS[int(np.argmax(dist))]


def test_nrc_loads_from_the_package_without_textblob() -> None:
    nrc = lexicon.load_nrc()
    assert len(nrc) > 6000
    assert set(nrc["abandon"]) == {"fear", "negative", "sadness"}
    assert "the" not in nrc  # words with no category are dropped


def test_the_category_map_is_data_and_names_only_our_labels() -> None:
    table = load_category_map()
    nrc_categories = {c for cats in lexicon.load_nrc().values() for c in cats}
    assert set(table.categories) == nrc_categories  # every NRC category is mapped, nothing else
    assert {k for row in table.categories.values() for k in row} <= set(LABELS)
    assert table.categories["anger"] == {"angry": 1.0}


@pytest.mark.parametrize(
    ("word", "label"),
    [
        ("terrified", "fear"),
        ("crying", "sad"),
        ("cried", "sad"),
        ("furiously", "angry"),
        ("angrily", "angry"),
    ],
)
def test_inflected_and_derived_forms_hit(source: LexiconEvidence, word: str, label: str) -> None:
    assert top(source.word(word)) == label


def test_lemmas_add_coverage() -> None:
    words = ["terrified", "crying", "friends", "promised", "screaming", "table", "the"]
    assert lexicon.coverage(words, lemmatise=False) < lexicon.coverage(words, lemmatise=True)
    assert "terrify" in lexicon.candidates("terrified")
    assert "furious" in lexicon.candidates("furiously")
    assert lexicon.coverage([], lemmatise=True) == 0.0


def test_vocabulary_words_outrank_nrc(source: LexiconEvidence) -> None:
    # NRC files "furious" under anger, disgust and negative; the vocabulary says angry at full strength
    furious = source.word("furious")
    assert top(furious) == "angry"
    assert furious is not None and furious[LABELS.index("angry")] > 0.5
    assert top(source.word("calm")) == "neutral"


def test_unknown_words_borrow_from_neighbours_within_their_sentence(source: LexiconEvidence) -> None:
    plan = RulePlanner().plan("It was ten to six. Terrified, the cat ran off the old fence post.")
    probs, kind = source.distributions(plan)
    words = [w.text for w in plan.words]
    scared = words.index("Terrified")
    assert kind[scared] == HIT
    for near in ("the", "cat"):  # one and two words after "Terrified"
        assert kind[words.index(near)] == CONTEXT
        assert top(probs[words.index(near)]) == "fear"
    assert kind[words.index("six")] == NONE  # next to "Terrified", but in the sentence before
    post = words.index("post")
    assert kind[post] == NONE  # nothing within two words
    assert np.allclose(probs[post], 1.0 / len(LABELS))
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_empty_plan_gives_empty_arrays(source: LexiconEvidence) -> None:
    from models.types import EmotionPlan

    probs, kind = source.distributions(EmotionPlan(script="", words=[]))
    assert probs.shape == (0, len(LABELS)) and kind.shape == (0,)
