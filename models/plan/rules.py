"""Rule-based emotion planner: inline script tags plus a free-text description -> EmotionPlan.

Precedence per word: inline tag > quoted anchor in the description > sentence/word span > temporal
phase > whole-script description emotion > neutral default (always with a warning saying why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.identity import EngineIdentity, describe
from models.plan.description import interpret
from models.plan.language import language_warning
from models.plan.lexicon import ToneLexicon, load_lexicon
from models.plan.meaning import SemanticReader
from models.plan.placement import Placed
from models.plan.tags import InlineTag, strip_tags, word_spans
from models.plan.tokens import clause_ids, sentence_ids
from models.types import EmotionPlan, PlannedWord
from models.vocabulary import PLANNING_PARTS, Vocabulary, load_vocabulary, vocabulary_table

# (words, sentence of each word, clause of each word) -> per-word cues, warnings and readings;
# the rule reader or the LLM reader
CueReader = Callable[[list[str], list[int], list[int]], Placed]


class RulePlanner:
    """Deterministic planner; `version` goes into cache keys, so bump it whenever output can change."""

    name = "rules"
    version = "4"

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        lexicon: ToneLexicon | None = None,
        semantic: bool = True,
    ) -> None:
        self.vocabulary = vocabulary or load_vocabulary()
        self.lexicon = lexicon or load_lexicon(self.vocabulary)
        # MiniLM reads words the tables lack and finds parts named by content; loaded on first need
        self.semantic = SemanticReader(self.vocabulary, self.lexicon) if semantic else None

    def identity(self) -> EngineIdentity:
        tables = [vocabulary_table(self.vocabulary, *PLANNING_PARTS), self.lexicon.table()]
        if self.semantic is None:
            return describe(self, tables=tables)
        return describe(
            self,
            tables=tables,
            files=self.semantic.files(),
            packages=("sentence-transformers", "torch"),
            modules=("models.plan.meaning", "models.plan.semantic"),
        )

    def plan(self, script: str, description: str = "") -> EmotionPlan:
        def read_cues(words: list[str], sentence_of: list[int], clause_of: list[int]) -> Placed:
            return self.read_description(description, words, sentence_of, clause_of)

        return self.plan_with(script, description, read_cues)

    def read_description(
        self, description: str, words: list[str], sentence_of: list[int], clause_of: list[int] | None = None
    ) -> Placed:
        """The rule reader's cues for `words` (also the LLM planner's fallback)."""
        semantic = self.semantic
        # MiniLM reads English: in another language (warned about in the plan) it would only guess at noise
        english = language_warning(description, "description") is None
        return interpret(
            description,
            words,
            sentence_of,
            self.vocabulary,
            self.lexicon,
            guess=semantic.guess if semantic and english else None,
            locate=semantic.locate if semantic else None,
            clause_of=clause_of,
        )

    def plan_with(self, script: str, description: str, read_cues: CueReader) -> EmotionPlan:
        """The plan with inline tags from the script and description cues from `read_cues`."""
        vocab = self.vocabulary
        clean, tags, warnings = strip_tags(script, vocab)
        spans = word_spans(clean, tags)
        for text, what in ((clean, "script"), (description, "description")):
            if (warning := language_warning(text, what)) is not None:
                warnings.append(warning)

        texts = [clean[a:b] for a, b in spans]
        sentence_of = sentence_ids(clean, [a for a, _ in spans])
        placed = read_cues(texts, sentence_of, clause_ids(clean, [a for a, _ in spans]))
        cues = placed.cues
        warnings.extend(placed.warnings)
        warnings.extend(self._neutral_warnings(description, tags, cues))

        words: list[PlannedWord] = []
        active: InlineTag | None = None
        pending = iter(tags)
        upcoming = next(pending, None)
        for index, ((start, end), cue) in enumerate(zip(spans, cues, strict=True)):
            while upcoming is not None and upcoming.position <= start:
                active, upcoming = upcoming, next(pending, None)
            if active is not None:
                label, intensity, source = active.label, active.intensity, "tag"
            elif cue is not None:
                label, intensity, source = cue.label, cue.intensity, cue.source
            else:
                label, intensity, source = vocab.neutral, 0.0, "default"
            words.append(
                PlannedWord(
                    index=index,
                    text=clean[start:end],
                    char_start=start,
                    char_end=end,
                    label=label,
                    intensity=round(float(intensity), 4),
                    source=source,
                )
            )
        if upcoming is not None:
            warnings.append(f"tag {upcoming.text} at the end of the script applies to no words")
        return EmotionPlan(script=clean, words=words, warnings=warnings, readings=placed.readings)

    def _neutral_warnings(
        self, description: str, tags: list[InlineTag], cues: Sequence[object | None]
    ) -> list[str]:
        """Never a silent neutral: say why words fell back to neutral when nothing asked for it."""
        if any(cue is not None for cue in cues):
            return []
        rest = "every word without an inline tag is" if tags else "every word is"
        if not description.strip():
            return [] if tags else ["no description and no inline tags, so every word is neutral"]
        shown = description.strip() if len(description) <= 80 else description.strip()[:77] + "..."
        return [
            f'nothing in the description "{shown}" was understood as an emotion, so {rest} neutral '
            f'(valid emotions: {", ".join(self.vocabulary.labels)}; e.g. "sad", \'angry at "never again"\')'
        ]
