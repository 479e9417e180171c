"""The tone lexicon (prompts/tone_words.yaml): brief words beyond the vocabulary's synonyms.

Content teams write "creepy", "fed up", "chuffed" or "grave" far more often than "fear" or "angry".
The lexicon gives each such word (or phrase) the label and intensity a voice director would use; the
planner reads it after the vocabulary's own synonyms, and MiniLM guesses only what neither knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import InputError
from models.identity import TablePart
from models.vocabulary import Vocabulary


@dataclass(frozen=True)
class ToneLexicon:
    words: dict[str, tuple[str, float]]  # lower-case word or phrase -> (label, intensity)
    source: str
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as parsed
    phrases: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # several-word entries, longest first, so "fed up to the back teeth" wins over "fed up"
        several = sorted((w for w in self.words if " " in w), key=len, reverse=True)
        alternatives = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in several) or "(?!)"
        object.__setattr__(
            self, "phrases", re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)
        )

    def lookup(self, word: str) -> tuple[str, float] | None:
        """(label, intensity) for a lexicon word; phrases arrive joined by hyphens ("fed-up")."""
        key = word.lower().replace("’", "'")
        return self.words.get(key) or self.words.get(key.replace("-", " "))

    def join_phrases(self, text: str) -> str:
        """`text` with every several-word lexicon phrase joined into one token ("fed-up")."""
        return self.phrases.sub(lambda m: "-".join(m.group(0).split()), text)

    def table(self) -> TablePart:
        return TablePart(Path(self.source).name, self.document, ("",))


def _default_path() -> Path:
    return Path(str(resources.files("prompts") / "tone_words.yaml"))


def load_lexicon(vocabulary: Vocabulary, path: Path | None = None) -> ToneLexicon:
    """The lexicon, checked against the vocabulary's labels (parsed once per process and path)."""
    return _load(path or _default_path(), tuple(vocabulary.emotions), vocabulary.neutral)


@lru_cache(maxsize=4)
def _load(path: Path, labels: tuple[str, ...], neutral: str) -> ToneLexicon:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    words: dict[str, tuple[str, float]] = {}
    for word, (label, intensity) in (data.get("words") or {}).items():
        if label not in labels:
            raise InputError(f"{path.name}: {word!r} has unknown label {label!r}")
        value = 0.0 if label == neutral else float(intensity)
        words[" ".join(str(word).lower().split())] = (str(label), value)
    return ToneLexicon(words=words, source=str(path), document=data)
