"""The planner's two readings by meaning, on all-MiniLM-L6-v2 (models.text_embedding).

- `ToneGuesser` reads a tone word the tables lack ("heartsore", "gutted") as the emotion of the
  nearest known tone words, with a calibrated confidence that the label is right;
- `locate` finds the sentences a brief names by content ("the part about shipping delays").

Each makes ONE batched embedding call per use: the words (or queries and sentences) of a brief go to
the model together, never one call per word.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kernel.errors import EngineError
from models import text_embedding
from models.vocabulary import Vocabulary

# fitted by bench/fit_tone_confidence.py; the guesser reads template, vote, k and (a, b, c) from it
CONFIDENCE_PATH = Path(str(resources.files("prompts") / "tone_confidence.json"))

# Carrier sentences a tone word is read in; the fit script scores each by out-of-fold log loss and writes
# the best to the JSON. With the 791 tone anchors of December 2026, "feeling {word}" won (0.371, against
# 0.376 "she said it in a {word} voice", 0.393 "a {word} tone of voice", 0.403 the bare word): close, so
# a re-fit after the tables change may pick another, and the JSON says which is in use.
TEMPLATES = {
    "bare": "{word}",
    "tone": "a {word} tone of voice",
    "said": "she said it in a {word} voice",
    "feeling": "feeling {word}",
}


def words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of `text`, once each, in order (for the word lists below)."""
    return tuple(dict.fromkeys(text.split()))


# -- tone words --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToneGuess:
    """MiniLM's reading of one word as an emotion."""

    word: str
    label: str
    intensity: float
    similarity: float  # cosine to `nearest`, the closest anchor of `label`
    nearest: str
    confidence: float  # calibrated probability that `label` is right; low for a word with no tone


@dataclass(frozen=True)
class Calibration:
    """How words are read and how sure a reading is: confidence = logistic(a*similarity + b*margin + c)."""

    template: str
    vote: str  # "max": per-label best cosine; "knn": similarity-weighted vote of the k nearest anchors
    k: int
    a: float
    b: float
    c: float

    def confidence(self, similarity: float, margin: float) -> float:
        z = self.a * similarity + self.b * margin + self.c
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def load_calibration(path: Path | None = None) -> Calibration:
    path = path or CONFIDENCE_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        calibration = Calibration(
            template=str(data["template"]),
            vote=str(data.get("vote", "max")),
            k=int(data["k"]),
            a=float(data["a"]),
            b=float(data["b"]),
            c=float(data["c"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"cannot read the tone-guess calibration {path}: {exc}") from exc
    if "{word}" not in calibration.template or calibration.vote not in ("max", "knn") or calibration.k < 1:
        raise EngineError(f"{path}: template needs {{word}}, vote must be max or knn, k at least 1")
    return calibration


# Plain words of scripts and briefs, read as a class of their own: a word nearer to "battery" or "monday"
# than to any tone word is no tone at all. They count as every reading's runner-up (in the margin), which
# about halved the plain words read as a confident emotion out of fold (8-10% -> 3-5%, measured with an
# earlier 772-anchor lexicon) and let more tone words through.
PLAIN_WORDS = words(
    """
price battery radio store weekend parcel course video line section bulletin customers product launch menu
router headline company monday team sale voice phone screen laptop cable charger software update account
password login email invoice refund delivery shipping order basket checkout discount offer brand logo
website page button settings module lesson quiz chapter slide unit exam student teacher classroom
homework report weather forecast traffic market shares economy budget council election minister police
hospital school station airport train bus ticket platform passenger flight hotel restaurant kitchen
recipe coffee tea bread cheese garden house door window table chair car engine tyre fuel road bridge
river city street building office meeting agenda schedule deadline project client partner supplier
warehouse stock shelf package label box bottle jar printer keyboard mouse speaker camera microphone
headphones subscription plan feature version release trailer episode season film scene actor director
studio audience listener viewer presenter narrator paragraph sentence word intro outro opening ending
beginning middle part the and with about then first next last after before tuesday friday january
morning evening tonight today tomorrow minute hour number figure percent total data chart summary
results sample model system network server file folder document form
"""
)
PLAIN = -1  # the owner index of a plain-word anchor


@dataclass(frozen=True)
class Anchor:
    word: str
    label: str  # "" for a plain word
    intensity: float


def tone_anchors(vocabulary: Vocabulary, lexicon: Mapping[str, tuple[str, float]]) -> list[Anchor]:
    """Every label name, vocabulary synonym, blend (as its dominant part) and lexicon entry, once each;
    the vocabulary wins a clash, as it does when the planner looks a word up."""
    found: dict[str, Anchor] = {}

    def add(word: str, label: str, intensity: float) -> None:
        key = _clean(word)
        if key and key not in found:
            found[key] = Anchor(key, label, 0.0 if label == vocabulary.neutral else float(intensity))

    for emotion in vocabulary.emotions.values():
        add(emotion.name, emotion.name, emotion.default_intensity)
    for emotion in vocabulary.emotions.values():
        for word, intensity in emotion.synonyms.items():
            add(word, emotion.name, intensity)
    for blend in vocabulary.blends.values():
        add(blend.name, *blend.dominant)
    for word, (label, intensity) in lexicon.items():
        if label in vocabulary.emotions:
            add(word, label, intensity)
    return list(found.values())


def plain_anchors(tone: Sequence[Anchor]) -> list[Anchor]:
    """PLAIN_WORDS that no table reads as a tone."""
    known = {a.word for a in tone}
    return [Anchor(w, "", 0.0) for w in PLAIN_WORDS if w not in known]


@dataclass(frozen=True)
class Vote:
    """One word's reading against the anchors, before calibration (indices into the anchor list)."""

    label: int
    nearest: int
    similarity: float
    margin: float  # the label's score minus the runner-up's: another label, or the plain words
    intensity: float


def vote(
    similarities: np.ndarray, owners: np.ndarray, intensities: np.ndarray, n_labels: int, method: str, k: int
) -> Vote:
    """The label the anchors give one word.

    `similarities` are its cosines to every anchor, `owners` each anchor's label index (PLAIN for a plain
    word); an anchor at -inf takes no part (the fit's leave-one-out)."""
    usable = np.isfinite(similarities)
    order = np.argsort(-np.where(usable, similarities, -np.inf), kind="stable")[: max(1, k)]
    order = order[usable[order]]
    groups = np.where(owners == PLAIN, n_labels, owners)  # plain words score as one extra class
    scores = np.full(n_labels + 1, -1.0)
    if method == "max":
        for j in range(n_labels + 1):
            own = similarities[(groups == j) & usable]
            if own.size:
                scores[j] = own.max()
    else:  # knn: each of the k nearest adds its cosine to its class; the mean keeps the cosine scale
        scores[:] = 0.0
        np.add.at(scores, groups[order], similarities[order] / len(order))
    label = int(np.argmax(scores[:n_labels]))  # the best emotion, even where plain words are nearer
    rest = np.delete(scores, label)
    margin = float(scores[label] - rest.max())
    own = np.where((groups == label) & usable, similarities, -np.inf)
    nearest = int(np.argmax(own))
    # intensity from the voters of the winning label, the closer the heavier
    voters = [i for i in order if groups[i] == label] or [nearest]
    weights = np.clip(similarities[voters], 1e-6, None)
    intensity = float(np.dot(weights, intensities[voters]) / weights.sum())
    return Vote(label, nearest, float(similarities[nearest]), margin, intensity)


class ToneGuesser:
    """The nearest emotion of words neither the vocabulary nor the tone lexicon knows."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        lexicon: Mapping[str, tuple[str, float]],
        calibration: Calibration | Path | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.calibration = (
            calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        )
        tone = tone_anchors(vocabulary, lexicon)
        if not tone:
            raise EngineError("the tone guesser has no anchor words: the vocabulary is empty")
        self.anchors = tone + plain_anchors(tone)
        self.labels = list(vocabulary.emotions)
        self._owners = np.asarray([self.labels.index(a.label) if a.label else PLAIN for a in self.anchors])
        self._intensities = np.asarray([a.intensity for a in self.anchors])
        self._vectors: np.ndarray | None = None  # anchor embeddings, made on first use
        self._tone_index = {a.word: i for i, a in enumerate(self.anchors) if a.label}
        self._lock = threading.Lock()

    def text(self, word: str) -> str:
        """`word` in the calibrated carrier sentence: anchors and guessed words are read alike."""
        return self.calibration.template.format(word=word)

    def guess(self, words: list[str]) -> list[ToneGuess | None]:
        """One guess per word (None for an empty one), with one embedding call for all of them."""
        keys = [_clean(w) for w in words]
        found: dict[str, ToneGuess] = {}
        for key in dict.fromkeys(k for k in keys if k):
            if (known := self._known(key)) is not None:
                found[key] = known
        asked = [k for k in dict.fromkeys(keys) if k and k not in found]
        if asked:
            found.update(self._read(asked))
        return [found[k] if k else None for k in keys]

    def _known(self, word: str) -> ToneGuess | None:
        """A tone word of the tables is what the tables say: a k-nearest vote could outvote it."""
        i = self._tone_index.get(word)
        if i is None:
            i = self._tone_index.get(word.replace("-", " "))  # the planner joins phrases with hyphens
        if i is None:
            return None
        anchor = self.anchors[i]
        return ToneGuess(anchor.word, anchor.label, anchor.intensity, 1.0, anchor.word, 1.0)

    def _read(self, asked: list[str]) -> dict[str, ToneGuess]:
        texts = [self.text(w) for w in asked]
        with self._lock:
            if self._vectors is None:
                # the first call embeds the anchors with its words, still one call
                vectors = text_embedding.embed([self.text(a.word) for a in self.anchors] + texts)
                self._vectors, asked_vectors = vectors[: len(self.anchors)], vectors[len(self.anchors) :]
            else:
                asked_vectors = text_embedding.embed(texts)
            anchors = self._vectors
        cosines = asked_vectors @ anchors.T
        found: dict[str, ToneGuess] = {}
        for word, row in zip(asked, cosines, strict=True):
            v = vote(
                row,
                self._owners,
                self._intensities,
                len(self.labels),
                self.calibration.vote,
                self.calibration.k,
            )
            label = self.labels[v.label]
            found[word] = ToneGuess(
                word=word,
                label=label,
                intensity=0.0 if label == self.vocabulary.neutral else round(v.intensity, 2),
                similarity=v.similarity,
                nearest=self.anchors[v.nearest].word,
                confidence=self.calibration.confidence(v.similarity, v.margin),
            )
        return found


def _clean(word: str) -> str:
    """Lower case, one space between words; empty when the word has no letter at all."""
    key = " ".join(word.lower().replace("’", "'").split())
    return key if re.search(r"[^\W\d_]", key) else ""


# -- content references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocateParams:
    """How `locate` scores and accepts. The defaults were tuned on the dev set of
    tests/models/test_plan_semantic.py, 13 scripts of 5-6 sentences (bench/plan_semantic.py prints the
    figures, and those of a held-out set)."""

    # score = cosine(query, unit) + lexical_weight * overlap, overlap (0..1) being the share of the query's
    # content stems the unit has, each weighted by its rarity in the script. MiniLM alone found as many
    # references on the dev set; 0.25 gained one in the 70-sentence concatenation of all its scripts and
    # backs up names and rare terms MiniLM may read weakly. At 0.5 the words pull to wrong sentences.
    lexical_weight: float = 0.25
    # a neighbour joins the match while it scores within this of the best: kept small, since the sentence
    # after a topic often scores close by sharing its words, not its subject; joined references ("the
    # storm and flood") are widened by their parts instead (query_parts)
    extend_within: float = 0.03
    max_units: int = 3  # a reference names a passage, not half the script
    # None below either. The paraphrases sharing no word with their sentence that MiniLM finds scored
    # 0.27-0.41 ("the injury figures" 0.28; the two it misses, 0.17 and 0.21, are lost anyway); references
    # to nothing in the script scored at most 0.24 but for one topical near miss ("the election results"
    # on a news intro, 0.29, which passes). A margin under 0.04 means two separate places fit about
    # equally: better to say so than to pick one.
    reject_score: float = 0.25
    reject_margin: float = 0.04
    # above both, the match is `confident`: all 32 such dev matches and 10 held-out ones were right, while
    # every wrong match fell below. Between, it is used, and the caller may say it was unsure
    confident_score: float = 0.40
    confident_margin: float = 0.10


DEFAULT_LOCATE = LocateParams()


@dataclass(frozen=True)
class SpanMatch:
    """Where a content reference was found: units first_unit..last_unit, inclusive."""

    query: str
    first_unit: int
    last_unit: int
    similarity: float  # the best unit's score
    margin: float  # the best unit's score minus the best score outside the match
    confident: bool


STOPWORDS = frozenset(
    words(
        """a about above after again all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours out over own part parts same she should so
    some such than that the their theirs them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours line lines
    bit section sentence sentences bits where's it's end ends start beginning middle first last next one
    thing things"""
    )
)

_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def stem(word: str) -> str:
    """A crude suffix-stripping stem, enough to meet flood/floods/flooded/flooding and delay/delays."""
    w = word.lower().removesuffix("'s")
    for suffix in ("ies", "ing", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "es" and not w[:-2].endswith(("s", "x", "z", "ch", "sh")):
                continue  # prices -> price, not pric
            if suffix == "s" and w.endswith("ss"):
                break  # loss, press
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # shipping -> shipp -> ship
    if len(w) > 3 and w[-1] in "ey":
        w = w[:-1]  # price/priced, injury/injuries
    return w


def content_stems(text: str) -> set[str]:
    return {stem(t) for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS and len(t) > 1}


_CONJUNCTION_RE = re.compile(r"\s*(?:,|;|&|\band\b|\bplus\b|\bthen\b)\s*", re.IGNORECASE)


def query_parts(query: str) -> list[str]:
    """The parts of a joined reference ("the storm and flood" -> storm, flood), each with content; [] for
    a single one. Each part is found on its own, and the match covers them all when they are neighbours."""
    parts = [p for p in _CONJUNCTION_RE.split(query) if content_stems(p)]
    return parts if len(parts) > 1 else []


def unit_scores(
    query_vectors: np.ndarray,
    unit_vectors: np.ndarray,
    queries: Sequence[str],
    units: Sequence[str],
    lexical_weight: float = DEFAULT_LOCATE.lexical_weight,
) -> np.ndarray:
    """[queries, units] combined scores: cosine plus the rarity-weighted lexical overlap."""
    cosines = query_vectors @ unit_vectors.T
    unit_stems = [content_stems(u) for u in units]
    n = len(units)
    df: dict[str, int] = {}
    for stems in unit_stems:
        for s in stems:
            df[s] = df.get(s, 0) + 1
    overlap = np.zeros_like(cosines)
    for qi, query in enumerate(queries):
        # a stem in every sentence says little about where; one the script lacks still counts as asked
        weights = {s: math.log(1.0 + n / df.get(s, 1)) for s in content_stems(query)}
        total = sum(weights.values())
        if total <= 0:
            continue
        for ui, stems in enumerate(unit_stems):
            overlap[qi, ui] = sum(w for s, w in weights.items() if s in stems) / total
    return np.asarray(cosines + lexical_weight * overlap)


def pick_span(
    query: str,
    scores: np.ndarray,
    part_scores: np.ndarray | None = None,
    params: LocateParams = DEFAULT_LOCATE,
) -> SpanMatch | None:
    """The best unit, widened over consecutive neighbours that score nearly as well, and over the best
    units of the query's parts when those are neighbours; None when unsure."""
    best = int(np.argmax(scores))
    top = float(scores[best])
    first = last = best
    if part_scores is not None and len(part_scores):
        # "the storm and flood": each part's own best unit, kept when they all sit next to the query's best
        bests = [int(np.argmax(row)) for row in part_scores]
        lo, hi = min([best, *bests]), max([best, *bests])
        clear = all(float(row.max()) >= params.reject_score for row in part_scores)
        if clear and hi - lo + 1 <= params.max_units and len({best, *bests}) == hi - lo + 1:
            first, last = lo, hi
    while last - first + 1 < params.max_units:
        left = float(scores[first - 1]) if first > 0 else -np.inf
        right = float(scores[last + 1]) if last + 1 < len(scores) else -np.inf
        if max(left, right) < max(top - params.extend_within, params.reject_score):
            break
        if left >= right:
            first -= 1
        else:
            last += 1
    outside = np.concatenate([scores[:first], scores[last + 1 :]])
    margin = top - float(outside.max()) if outside.size else top
    if top < params.reject_score or margin < params.reject_margin:
        return None
    confident = top >= params.confident_score and margin >= params.confident_margin
    return SpanMatch(query, first, last, top, margin, confident)


def locate(
    queries: list[str], units: list[str], params: LocateParams = DEFAULT_LOCATE
) -> list[SpanMatch | None]:
    """Each query's consecutive units (sentences or clauses, in script order), or None where no part of
    the script clearly matches. One embedding call for all queries, their parts and the units."""
    asked = [" ".join(q.split()) for q in queries]
    if not units or not any(asked):
        return [None] * len(queries)
    wanted = [q for q in dict.fromkeys(asked) if q]
    parts = {q: query_parts(q) for q in wanted}
    texts = list(dict.fromkeys(wanted + [p for q in wanted for p in parts[q]]))
    vectors = text_embedding.embed(texts + list(units))
    scores = unit_scores(vectors[: len(texts)], vectors[len(texts) :], texts, units, params.lexical_weight)
    row = {t: scores[i] for i, t in enumerate(texts)}
    found = {
        q: pick_span(q, row[q], np.asarray([row[p] for p in parts[q]]) if parts[q] else None, params)
        for q in wanted
    }
    return [found[q] if q else None for q in asked]
