"""Rule-based emotion planner: inline script tags plus a free-text description -> EmotionPlan.

Precedence per word: inline tag > quoted anchor in the description > sentence/word span > temporal
phase > whole-script description emotion > neutral default (always with a warning saying why).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kernel.errors import InputError
from models.identity import EngineIdentity, describe
from models.plan.description import interpret
from models.plan.language import language_warning
from models.plan.lexicon import ToneLexicon, load_lexicon
from models.plan.meaning import SemanticReader
from models.plan.phrases import read_phrase
from models.plan.placement import Placed
from models.plan.tokens import WORD_RE, clause_ids, sentence_ids
from models.types import EmotionPlan, PlannedWord
from models.vocabulary import PLANNING_PARTS, Vocabulary, load_vocabulary, vocabulary_table

# (words, sentence of each word, clause of each word) -> per-word cues, warnings and readings;
# the rule reader or the LLM reader
CueReader = Callable[[list[str], list[int], list[int]], Placed]

_TAG_RE = re.compile(r"\[([^\[\]]*)\]")
_WORD_CHAR_RE = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class _Tag:
    label: str
    intensity: float
    text: str  # the tag as written, for messages
    position: int  # offset in the clean script where it takes effect


class RulePlanner:
    """Deterministic planner; `version` goes into cache keys, so bump it whenever output can change."""

    name = "rules"
    version = "3"

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
        clean, tags, warnings = self._strip_tags(script)
        spans = [(m.start(), m.end()) for m in WORD_RE.finditer(clean)]
        if not spans:
            raise InputError("script is empty: it has no words to speak once inline [tags] are removed")
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
        active: _Tag | None = None
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
        self, description: str, tags: list[_Tag], cues: Sequence[object | None]
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

    def _strip_tags(self, script: str) -> tuple[str, list[_Tag], list[str]]:
        """Clean script (tags removed, whitespace collapsed), tags with their clean offsets, warnings."""
        out: list[str] = []
        length = 0
        tags: list[_Tag] = []
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
            label, intensity = self._read_tag(match.group(0), match.group(1), notes)
            tags.append(_Tag(label, intensity, match.group(0), length))
            pos = match.end()
        append(script[pos:], after_tag=bool(tags))

        clean = "".join(out).rstrip(" ")
        warnings: list[str] = notes
        if "[" in clean or "]" in clean:
            warnings.append("an unbalanced '[' or ']' was kept as text; a tag looks like [angry 0.8]")
        return clean, tags, warnings

    def _read_tag(self, written: str, body: str, notes: list[str]) -> tuple[str, float]:
        vocab = self.vocabulary
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
            parts = " + ".join(f"{lbl} {value:g}" for lbl, value in self.vocabulary.blends[word].parts)
            notes.append(f"blend tag {written} is {parts}; its words get {label} (the dominant part)")
        if phrase.numbers:
            token, intensity = phrase.numbers[0]
            if not 0.0 <= intensity <= 1.0:
                raise InputError(f"intensity {token} in tag {written} is outside 0..1, e.g. [angry 0.8]")
        elif phrase.intensities:
            intensity = phrase.intensities[0][1]
        # neutral has no strength: [neutral] resets to the unexpressive face
        return label, 0.0 if label == vocab.neutral else float(intensity)
