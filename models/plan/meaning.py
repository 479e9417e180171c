"""The planner's reading by meaning: MiniLM, loaded only when a brief needs it.

A brief whose words are all in the tables, and which names parts by position or quote only, never loads
the model; the first unknown tone word or content reference does, once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.plan.lexicon import ToneLexicon
from models.vocabulary import Vocabulary

if TYPE_CHECKING:
    from models.plan.semantic import SpanMatch, ToneGuess, ToneGuesser


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
        from models.plan.semantic import locate

        return locate(queries, units)
