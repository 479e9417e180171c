"""Reading short emotion phrases ("very angry", "furious", "sad 0.4") against the vocabulary."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models.vocabulary import Vocabulary

if TYPE_CHECKING:
    from models.plan.lexicon import ToneLexicon

NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)%?$")


def parse_number(token: str) -> float | None:
    """0.8 or 80% -> 0.8; anything that is not a plain number -> None (range is checked by callers)."""
    if not NUMBER_RE.match(token):
        return None
    value = float(token.rstrip("%"))
    if token.endswith("%"):
        value /= 100.0
    return value if math.isfinite(value) else None


def lookup_emotion(
    word: str, vocab: Vocabulary, lexicon: ToneLexicon | None = None
) -> tuple[str, float] | None:
    """Vocabulary (then tone lexicon) lookup that also accepts simple derived forms (angrily, sadness,
    angrier, sadder, feared)."""
    key = word.lower().replace("’", "'")
    candidates = [key]
    if key.endswith("ed") and len(key) > 4:  # feared, scared -> fear, scare
        candidates += [key[:-2], key[:-1]]
    if key.endswith("ily") or key.endswith("ier"):
        candidates.append(key[:-3] + "y")
    if key.endswith("ly"):
        candidates.append(key[:-2])
    if key.endswith("ness"):
        candidates.append(key[:-4])
    if key.endswith("er"):
        candidates.append(key[:-2])
        if len(key) > 4 and key[-3] == key[-4]:  # sadder -> sad, madder -> mad
            candidates.append(key[:-3])
    for candidate in candidates:
        hit = vocab.lookup(candidate)
        if hit is not None:
            return hit
    # the lexicon lists the forms briefs use; deriving more would read "practically" as "practical"
    return lexicon.lookup(key) if lexicon is not None else None


@dataclass
class Phrase:
    """What a run of tokens says: emotions named, intensity words, numbers and the rest."""

    emotions: list[tuple[str, float, str]] = field(default_factory=list)  # (label, implied, word)
    blends: list[str] = field(default_factory=list)  # blend words; their dominant part is in `emotions`
    comparatives: list[str] = field(default_factory=list)  # emotion words in comparative form (angrier)
    manners: list[tuple[str, float, str]] = field(default_factory=list)  # (label, implied, delivery word)
    negated: list[str] = field(default_factory=list)  # emotion words preceded by a negation
    negates: bool = False  # a negation word or phrase was read, whether or not a known word follows it
    intensities: list[tuple[str, float]] = field(default_factory=list)  # (word(s), value)
    numbers: list[tuple[str, float]] = field(default_factory=list)  # (token, value)
    unknown: list[str] = field(default_factory=list)
    from_lexicon: list[str] = field(default_factory=list)  # emotion words found in the tone lexicon


NEGATIONS = frozenset(
    {"not", "never", "no", "without", "isn't", "wasn't", "don't", "doesn't", "nothing", "avoid", "minus"}
)
# "rather than sad", "instead of excited": the words after them say what to avoid
NEGATING_PHRASES = ("rather than", "instead of", "as opposed to", "other than", "anything but", "less like")
# a negation holds over "urgent or anxious" until one of these starts the wanted part
_NEGATION_ENDS = frozenset({"just", "but", "only", "instead", "yet"})


def read_phrase(tokens: list[str], vocab: Vocabulary, lexicon: ToneLexicon | None = None) -> Phrase:
    phrase = Phrase()
    i = 0
    negate = False
    while i < len(tokens):
        token = tokens[i].lower()
        pair = " ".join(t.lower() for t in tokens[i : i + 2])
        if pair in NEGATING_PHRASES:
            negate = phrase.negates = True
            i += 2
            continue
        if token in _NEGATION_ENDS:
            negate = False
        # several-word intensity phrases, longest first: "a hint of", "a little bit", "a bit"
        spans = [" ".join(t.lower() for t in tokens[i : i + n]) for n in (3, 2) if i + n <= len(tokens)]
        multi = next((words for words in spans if words in vocab.intensity_words), None)
        if multi is not None:
            phrase.intensities.append((multi, vocab.intensity_words[multi]))
            i += len(multi.split())
            continue
        if token in vocab.intensity_words:
            phrase.intensities.append((token, vocab.intensity_words[token]))
        elif token in NEGATIONS:
            negate = phrase.negates = True  # applies to the next emotion word ("not very angry")
            i += 1
            continue
        elif (number := parse_number(token)) is not None:
            phrase.numbers.append((token, number))
        elif token in vocab.blends:
            if negate:
                phrase.negated.append(token)
            else:
                phrase.blends.append(token)
                label, value = vocab.blends[token].dominant
                phrase.emotions.append((label, value, token))
        elif (hit := lookup_emotion(token, vocab, lexicon)) is not None:
            if negate:
                phrase.negated.append(token)
            else:
                phrase.emotions.append((hit[0], hit[1], token))
                if lookup_emotion(token, vocab) is None:
                    phrase.from_lexicon.append(token)
                elif vocab.lookup(token) is None and token.endswith("er"):
                    phrase.comparatives.append(token)
        elif (manner := vocab.manner(token)) is not None:
            if negate:
                phrase.negated.append(token)
            else:
                phrase.manners.append((manner[0], manner[1], token))
        else:
            phrase.unknown.append(tokens[i])
        i += 1
    return phrase
