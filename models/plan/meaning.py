"""The planner's reading by meaning: MiniLM, loaded only when a brief needs it.

A brief whose words are all in the tables, and which names parts by position or quote only, never loads
the model; the first unknown tone word or content reference does, once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.plan.lexicon import ToneLexicon
from models.vocabulary import Vocabulary

if TYPE_CHECKING:
    from models.plan.semantic import SpanMatch, ToneGuess, ToneGuesser


# scripts longer than this many sentences get a word-overlap shortlist before MiniLM reads them
SHORTLIST_ABOVE = 60
# a query that shares words with more sentences than this is too common a word to shortlist by
SHORTLIST_HITS = 20


def _back(match: SpanMatch | None, listed: list[int]) -> SpanMatch | None:
    """A match over the shortlist, in the script's own sentence numbers; a range that crosses a gap in the
    shortlist stops at the gap."""
    if match is None:
        return None
    first = listed[match.first_unit]
    last = first
    for k in range(match.first_unit + 1, match.last_unit + 1):
        if listed[k] != last + 1:
            break
        last = listed[k]
    return replace(match, first_unit=first, last_unit=last)


class SemanticReader:
    """Guesses emotions for unknown words and locates content references, each in one batched call."""

    def __init__(self, vocabulary: Vocabulary, lexicon: ToneLexicon) -> None:
        self.vocabulary = vocabulary
        self.lexicon = lexicon
        self._guesser: ToneGuesser | None = None
        self._lock = threading.Lock()

    def files(self) -> dict[str, Path]:
        """What the readings depend on besides code and tables: the model and the fitted confidence."""
        from models.plan.semantic import CONFIDENCE_PATH
        from models.text_embedding import model_dir, model_files

        root = model_dir()
        return {
            **{f"minilm:{p.relative_to(root)}": p for p in model_files()},
            "tone_confidence": CONFIDENCE_PATH,
        }

    def guess(self, words: list[str]) -> Sequence[ToneGuess | None]:
        with self._lock:
            if self._guesser is None:
                from models.plan.semantic import ToneGuesser

                self._guesser = ToneGuesser(self.vocabulary, self.lexicon.words)
        return self._guesser.guess(words)

    def locate(self, queries: list[str], units: list[str]) -> Sequence[SpanMatch | None]:
        """Where each query is in `units` (the script's sentences).

        A long script is not read whole when it need not be: MiniLM reads the sentences that share a
        word with a query, and their neighbours, and ranks them by meaning; only queries that share no word
        with any sentence send every sentence to MiniLM (one more call, a few seconds for 600 sentences).
        """
        from models.plan.semantic import content_stems, locate

        if len(units) <= SHORTLIST_ABOVE:
            return locate(queries, units)
        unit_stems = [content_stems(u) for u in units]
        shortlists: dict[str, list[int]] = {}
        for query in queries:
            wanted = content_stems(query)
            hits = [i for i, stems in enumerate(unit_stems) if stems & wanted]
            if hits and len(hits) <= SHORTLIST_HITS:
                near = {j for i in hits for j in (i - 1, i, i + 1) if 0 <= j < len(units)}
                shortlists[query] = sorted(near)
        found: dict[str, SpanMatch | None] = {}
        listed = sorted({i for near in shortlists.values() for i in near})
        if listed:
            matches = locate(list(shortlists), [units[i] for i in listed])
            for query, match in zip(shortlists, matches, strict=True):
                found[query] = _back(match, listed)
        rest = [q for q in queries if q not in shortlists]
        if rest:
            found.update(zip(rest, locate(rest, units), strict=True))
        return [found[q] for q in queries]
