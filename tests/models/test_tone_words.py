"""prompts/tone_words.yaml: the brief-word lexicon is well formed and never repeats emotions.yaml."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
import yaml


def _text(name: str) -> str:
    return (resources.files("prompts") / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def emotions() -> dict[str, Any]:
    return yaml.safe_load(_text("emotions.yaml"))


@pytest.fixture(scope="module")
def words() -> dict[str, list[Any]]:
    table = yaml.safe_load(_text("tone_words.yaml"))
    assert table["version"] == 1
    return table["words"]


def _inflections(stem: str) -> set[str]:
    """The forms a manner stem matches: whisper -> whispers, whispered, whispering; snap -> snapped."""
    bases = {stem, stem + stem[-1], stem[:-1] if stem.endswith("e") else stem}
    forms = {b + end for b in bases for end in ("", "s", "es", "ed", "d", "ing")}
    if stem.endswith("y"):
        forms |= {stem[:-1] + "ies", stem[:-1] + "ied"}
    return forms


def test_no_key_is_listed_twice() -> None:
    # safe_load keeps the last of two equal keys silently, so read the keys from the node tree
    root = yaml.compose(_text("tone_words.yaml"))
    words_node = next(v for k, v in root.value if k.value == "words")
    keys = [k.value for k, _ in words_node.value]
    assert len(keys) == len(set(keys))


def test_entries_are_known_labels_with_intensities_in_range(
    words: dict[str, list[Any]], emotions: dict[str, Any]
) -> None:
    labels = set(emotions["emotions"])
    for word, entry in words.items():
        assert isinstance(word, str), word
        assert word == word.strip().lower(), word
        label, intensity = entry
        assert label in labels, word
        assert isinstance(intensity, float), word
        assert 0.0 <= intensity <= 1.0, word
        if label == emotions["neutral_label"]:
            assert intensity == 0.0, word
        else:
            assert intensity > 0.0, word  # an emotion at 0 would be neutral in disguise


def test_no_key_repeats_the_emotion_vocabulary(words: dict[str, list[Any]], emotions: dict[str, Any]) -> None:
    taken = {w for e in emotions["emotions"].values() for w in e["synonyms"]}
    taken |= set(emotions["blends"]) | set(emotions["intensity_words"])
    taken = {w.replace("-", " ") for w in taken}
    manner_forms = set().union(*(_inflections(stem) for stem in emotions["manners"]))
    for word in words:
        assert word.replace("-", " ") not in taken, word
        assert not manner_forms & set(re.split(r"[ -]", word)), word


def test_the_lexicon_is_large_and_covers_every_label(
    words: dict[str, list[Any]], emotions: dict[str, Any]
) -> None:
    assert len(words) >= 300
    assert {label for label, _ in words.values()} == set(emotions["emotions"])
