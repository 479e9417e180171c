"""Inline emotion tags in a script ("[angry 0.8] Never again."): read them, strip them, and check a script
before it is accepted.

`check_script` runs at submission, so a malformed tag or a script with nothing to speak is refused before a
run exists; the planner reads the same tags with the same functions when it plans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernel.errors import InputError
from models.plan.phrases import read_phrase
from models.plan.tokens import WORD_RE
from models.vocabulary import Vocabulary, load_vocabulary

_TAG_RE = re.compile(r"\[([^\[\]]*)\]")
_WORD_CHAR_RE = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class InlineTag:
    label: str
    intensity: float
    text: str  # the tag as written, for messages
    position: int  # offset in the clean script where it takes effect


def check_script(script: str, vocabulary: Vocabulary | None = None) -> None:
    """Raises InputError for what planning would refuse: a malformed tag, or no words to speak."""
    vocab = vocabulary or load_vocabulary()
    clean, tags, _ = strip_tags(script, vocab)
    word_spans(clean, tags)


def word_spans(clean: str, tags: list[InlineTag]) -> list[tuple[int, int]]:
    """(start, end) of each spoken word of a clean script; none raises InputError."""
    spans = [(m.start(), m.end()) for m in WORD_RE.finditer(clean)]
    if not spans:
        after = " once inline [tags] are removed" if tags else ""
        raise InputError(f"script is empty: it has no words to speak{after} (punctuation is not spoken)")
    return spans


def strip_tags(script: str, vocab: Vocabulary) -> tuple[str, list[InlineTag], list[str]]:
    """Clean script (tags removed, whitespace collapsed), tags with their clean offsets, warnings."""
    out: list[str] = []
    length = 0
    tags: list[InlineTag] = []
    pos = 0

    def append(piece: str, after_tag: bool) -> None:
        nonlocal length
        piece = re.sub(r"\s+", " ", piece)
        if not out or out[-1].endswith(" "):
            piece = piece.lstrip(" ")
        elif after_tag and piece and _WORD_CHAR_RE.match(piece) and _WORD_CHAR_RE.match(out[-1][-1]):
            piece = " " + piece  # "word[sad]word" must stay two words
        if piece:
            out.append(piece)
            length += len(piece)

    notes: list[str] = []
    for match in _TAG_RE.finditer(script):
        append(script[pos : match.start()], after_tag=bool(tags))
        label, intensity = _read_tag(match.group(0), match.group(1), notes, vocab)
        tags.append(InlineTag(label, intensity, match.group(0), length))
        pos = match.end()
    append(script[pos:], after_tag=bool(tags))

    clean = "".join(out).rstrip(" ")
    warnings: list[str] = notes
    if "[" in clean or "]" in clean:
        warnings.append("an unbalanced '[' or ']' was kept as text; a tag looks like [angry 0.8]")
    return clean, tags, warnings


def _read_tag(written: str, body: str, notes: list[str], vocab: Vocabulary) -> tuple[str, float]:
    valid = ", ".join(vocab.labels)
    tokens = body.split()
    if not tokens:
        raise InputError(f"empty tag {written} in the script; valid emotions are: {valid}")
    phrase = read_phrase(tokens, vocab)
    labels = {label for label, _, _ in phrase.emotions}
    if not phrase.emotions or phrase.negated:
        raise InputError(
            f"unknown emotion in tag {written}; valid emotions are: {valid} "
            "(synonyms such as 'furious' work too; add an intensity as in [angry 0.8] or [very sad])"
        )
    if len(labels) > 1 or len(phrase.emotions) > 1:
        raise InputError(f"tag {written} names more than one emotion; use one, e.g. [angry 0.8]")
    if phrase.unknown or len(phrase.intensities) + len(phrase.numbers) > 1:
        bad = " ".join(phrase.unknown) or body.strip()
        raise InputError(
            f"malformed intensity {bad!r} in tag {written}: use one number from 0 to 1 (or a percentage) "
            f"or one intensity word ({', '.join(vocab.intensity_words)})"
        )
    label, intensity, word = phrase.emotions[0]
    if phrase.blends:
        parts = " + ".join(f"{lbl} {value:g}" for lbl, value in vocab.blends[word].parts)
        notes.append(f"blend tag {written} is {parts}; its words get {label} (the dominant part)")
    if phrase.numbers:
        token, intensity = phrase.numbers[0]
        if not 0.0 <= intensity <= 1.0:
            raise InputError(f"intensity {token} in tag {written} is outside 0..1, e.g. [angry 0.8]")
    elif phrase.intensities:
        intensity = phrase.intensities[0][1]
    # neutral has no strength: [neutral] resets to the unexpressive face
    return label, 0.0 if label == vocab.neutral else float(intensity)
