"""Word and sentence segmentation shared by the planner and the EFP."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A word is a run of letters/digits; apostrophes (straight or curly) and hyphens may join runs
# ("I'm", "don't", "well-known") but never start or end a word. `[^\W_]` = letter or digit in any script.
WORD_RE = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")

# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before whitespace or the end.
SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


def normalise_word(text: str) -> str:
    """Case- and apostrophe-insensitive form used to match words (anchors, lexicons)."""
    return text.lower().replace("’", "'")


def word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORD_RE.finditer(text)]


# A clause also ends at a comma, semicolon, colon or dash before whitespace.
CLAUSE_END_RE = re.compile(rf"{SENTENCE_END_RE.pattern}|[,;:]+(?=\s)|\s[—–-](?=\s)")


def sentence_ids(script: str, starts: Sequence[int]) -> list[int]:
    """Sentence number (0-based) of each word, given the words' start offsets in `script`."""
    return _segment_ids(SENTENCE_END_RE, script, starts)


def clause_ids(script: str, starts: Sequence[int]) -> list[int]:
    """Clause number (0-based) of each word: sentences, cut again at commas, semicolons and dashes."""
    return _segment_ids(CLAUSE_END_RE, script, starts)


def _segment_ids(end_re: re.Pattern[str], script: str, starts: Sequence[int]) -> list[int]:
    ends = [m.end() for m in end_re.finditer(script)]
    ids: list[int] = []
    sentence = 0
    for start in starts:
        # every sentence end before this word closes one sentence
        while sentence < len(ends) and ends[sentence] <= start:
            sentence += 1
        ids.append(sentence)
    # renumber so ids are consecutive even when several terminators have no word between them
    remap = {old: new for new, old in enumerate(dict.fromkeys(ids))}
    return [remap[i] for i in ids]
