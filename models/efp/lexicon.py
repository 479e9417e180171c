"""Lexicon evidence: the NRC Emotion Lexicon and the vocabulary's emotion words, looked up by lemma.

A word is looked up as written, as its simplemma lemma ("terrified" -> "terrify", "crying" -> "cry") and
as the base of a derived form ("furiously" -> "furious", "sadness" -> "sad"). The vocabulary's own
synonyms (prompts/emotions.yaml) are tried first because they name our labels exactly; NRC's ten
categories become label evidence through the table in data/nrc_map.yaml.

Words with no hit: a word next to an emotion word in the same sentence ("never *again*", "my *poor* dog")
is usually spoken in the same breath and face, so it borrows the hits within `lexicon_window` words,
weighted 1/distance. That borrowed evidence has its own fusion weight (`lexicon_context`), fitted on data
like the others, so the data decides how much a neighbour's word counts. Words with neither a hit nor a
neighbouring hit get a uniform distribution with weight 0: no opinion.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from kernel.errors import EngineError
from models.efp.params import EFPConfig
from models.plan.phrases import lookup_emotion
from models.plan.tokens import sentence_ids
from models.types import EmotionPlan
from models.vocabulary import Vocabulary

MAP_FILE = Path(__file__).with_name("data") / "nrc_map.yaml"
NONE, HIT, CONTEXT = 0, 1, 2  # what the lexicon knows about a word

_LEMMA_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def load_nrc() -> dict[str, tuple[str, ...]]:
    """word -> NRC affect categories, from nrclex's bundled nrc_en.json (no TextBlob needed)."""
    try:
        text = (resources.files("nrclex") / "data" / "nrc_en.json").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise EngineError(
            f"the EFP lexicon needs nrclex 4.1 with its nrc_en.json ({exc}); run `make install`"
        ) from exc
    return {word.lower(): tuple(categories) for word, categories in json.loads(text).items() if categories}


@dataclass(frozen=True)
class CategoryMap:
    """NRC category -> label weights, as written in data/nrc_map.yaml."""

    categories: dict[str, dict[str, float]]
    smoothing: float
    vocabulary_mass: float


@lru_cache(maxsize=1)
def load_category_map(path: Path = MAP_FILE) -> CategoryMap:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return CategoryMap(
        categories={c: {k: float(v) for k, v in row.items()} for c, row in data["categories"].items()},
        smoothing=float(data["smoothing"]),
        vocabulary_mass=float(data["vocabulary_mass"]),
    )


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """simplemma's English lemma of a lower-case word (bundled data, offline)."""
    import simplemma

    with _LEMMA_LOCK:  # simplemma caches its dictionary lazily; keep the first load single-threaded
        return str(simplemma.lemmatize(word, lang="en")).lower()


def candidates(word: str) -> list[str]:
    """Forms to look up, most literal first: as written, lemma, derived base, the base's lemma."""
    key = word.lower().replace("’", "'").strip("'-")
    forms = [key, lemma(key)]
    if key.endswith("ily"):
        forms.append(key[:-3] + "y")  # angrily -> angry
    elif key.endswith("ly"):
        forms.append(key[:-2])  # furiously -> furious
    if key.endswith("ness"):
        forms.append(key[:-4])
    forms += [lemma(f) for f in forms[2:]]
    return list(dict.fromkeys(f for f in forms if f))


class LexiconEvidence:
    """p_lexicon(label | word) for every word of a plan, and whether it was a hit, borrowed or nothing."""

    def __init__(self, vocabulary: Vocabulary, config: EFPConfig, category_map: CategoryMap | None = None):
        self.vocabulary = vocabulary
        self.config = config
        self.map = category_map or load_category_map()
        self.labels = vocabulary.labels
        unknown = {k for row in self.map.categories.values() for k in row} - set(self.labels)
        if unknown:
            raise EngineError(f"{MAP_FILE.name} names labels {sorted(unknown)} not in the vocabulary")
        self._rows = {
            category: np.array([row.get(label, 0.0) for label in self.labels])
            for category, row in self.map.categories.items()
        }
        self._cache: dict[str, np.ndarray | None] = {}

    def word(self, text: str) -> np.ndarray | None:
        """Label distribution of one word, or None when neither the vocabulary nor NRC knows it."""
        if text not in self._cache:
            self._cache[text] = self._lookup(text)
        return self._cache[text]

    def _lookup(self, text: str) -> np.ndarray | None:
        k = len(self.labels)
        hit = lookup_emotion(text, self.vocabulary)
        if hit is not None:
            label, implied = hit
            mass = np.zeros(k)
            mass[self.labels.index(label)] = self.map.vocabulary_mass * (0.5 + 0.5 * implied)
            return _normalise(mass + self.map.smoothing)
        nrc = load_nrc()
        for form in candidates(text):
            categories = nrc.get(form)
            if categories:
                mass = sum((self._rows[c] for c in categories if c in self._rows), np.zeros(k))
                if mass.sum() > 0:
                    return _normalise(mass + self.map.smoothing)
        return None

    def distributions(self, plan: EmotionPlan) -> tuple[np.ndarray, np.ndarray]:
        """([words, labels] probabilities, [words] kind: HIT, CONTEXT or NONE)."""
        n, k = len(plan.words), len(self.labels)
        probs = np.full((n, k), 1.0 / k)
        kind = np.full(n, NONE, dtype=np.int8)
        if n == 0:
            return probs, kind
        hits = [self.word(w.text) for w in plan.words]
        for i, dist in enumerate(hits):
            if dist is not None:
                probs[i], kind[i] = dist, HIT
        sentence_of = sentence_ids(plan.script, [w.char_start for w in plan.words])
        window = self.config.lexicon_window
        for i in np.flatnonzero(kind == NONE).tolist():
            total, weight = np.zeros(k), 0.0
            for j in range(max(0, i - window), min(n, i + window + 1)):
                if kind[j] == HIT and sentence_of[j] == sentence_of[i]:
                    total += probs[j] / abs(j - i)
                    weight += 1.0 / abs(j - i)
            if weight > 0:
                probs[i], kind[i] = total / weight, CONTEXT
        return probs, kind


def coverage(words: list[str], lemmatise: bool = True) -> float:
    """Share of words that the NRC lexicon knows, with or without lemmas and derived forms."""
    if not words:
        return 0.0
    nrc = load_nrc()
    found = 0
    for word in words:
        forms = candidates(word) if lemmatise else [word.lower()]
        found += any(f in nrc for f in forms)
    return found / len(words)


def _normalise(mass: np.ndarray) -> np.ndarray:
    return mass / mass.sum()
