"""Helpers shared by the speech engines: plan checks, sentences, word-span alignment, joins and level.

Both engines synthesise one sentence at a time and report *units*: stretches of audio that the engine
says belong to one written token (a Piper phoneme group between spaces, an espeak WORD event). Units
and plan words rarely match one to one ("I am" is one unit, "1995" is three), so every engine maps each
unit to the first plan word it covers (`first_word`) and `word_spans` turns that mapping into exactly
one span per word, splitting shared units in proportion to the words' phoneme (or character) counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import numpy as np
from scipy.ndimage import minimum_filter1d

from kernel.errors import EngineError, InputError
from models.types import EmotionPlan, PhonemeTiming, PlannedWord, Timings, WordTiming
from models.vocabulary import Prosody, Vocabulary

# Words shorter than this after repair are stretched so that every word has a visible span.
MIN_WORD_S = 0.01
# Fade at every sentence/pause edge: long enough to hide any discontinuity, short enough to be inaudible.
EDGE_FADE_S = 0.005
# Peak ceiling of the final mix; louder emotions are limited, never clipped.
PEAK_CEILING = 0.95

_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’)\]]*\s")
_CLAUSE_END = ",;:—–"
# Tokens whose trailing full stop does not end a sentence ("Dr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "eg", "ie", "no", "fig"}
    | {"mt", "approx", "dept", "est", "inc", "ltd", "co"}
)


@dataclass(frozen=True)
class Sentence:
    """Plan words[first:stop], synthesised in one engine call from `text` (a slice of the script)."""

    first: int
    stop: int
    text: str
    char_start: int  # offset of `text` in the script


@dataclass
class Unit:
    """A stretch of one sentence's audio that the engine attributes to one written token."""

    start: float  # seconds from the start of the sentence audio
    end: float
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)
    label: str = ""  # the engine's text for the unit (its phonemes), compared with the words' phonemes


@dataclass
class WordSpan:
    start: float
    end: float
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)


# 1. Plan checks and per-word prosody -------------------------------------------------------------


def check_plan(plan: EmotionPlan) -> None:
    """Raise InputError naming the first problem that would make synthesis meaningless."""
    if not isinstance(plan, EmotionPlan):
        raise InputError(f"plan must be an EmotionPlan, got {type(plan).__name__}")
    if not plan.words:
        raise InputError("plan has no words to speak; give a script with at least one word")
    previous_end = 0
    for position, word in enumerate(plan.words):
        if word.index != position:
            raise InputError(
                f"plan word {position} has index {word.index}; word indices must be 0..{len(plan.words) - 1}"
            )
        if not word.text.strip():
            raise InputError(f"plan word {position} is empty; every planned word needs text")
        if not (previous_end <= word.char_start < word.char_end <= len(plan.script)):
            raise InputError(
                f"plan word {position} ({word.text!r}) has offsets {word.char_start}:{word.char_end} that "
                f"are out of order or outside the script ({len(plan.script)} characters)"
            )
        previous_end = word.char_end


def word_prosody(plan: EmotionPlan, vocabulary: Vocabulary) -> list[Prosody]:
    """Prosody of every plan word: its emotion's prosody scaled by its intensity."""
    return [vocabulary.emotion(w.label).prosody.scaled(w.intensity) for w in plan.words]


def segment_of_word(plan: EmotionPlan) -> list[int]:
    """Index into plan.segments() of every word."""
    ids = [0] * len(plan.words)
    for number, segment in enumerate(plan.segments()):
        for i in range(segment.first, segment.stop):
            ids[i] = number
    return ids


# 2. Sentences ----------------------------------------------------------------------------------------


def split_sentences(plan: EmotionPlan, max_words: int = 40) -> list[Sentence]:
    """Cut the plan into sentences at . ! ? … (not after abbreviations), and very long ones at clauses.

    A sentence's text runs from its first word to the first space after its last word, so it keeps its
    own final punctuation (which engines turn into intonation and pauses).
    """
    words = plan.words
    cuts: list[int] = []  # word indices that start a new sentence
    since = 0  # words since the last cut
    last_clause = -1  # last word index after which a clause ends
    for i in range(len(words) - 1):
        since += 1
        tail = plan.script[words[i].char_end : words[i + 1].char_start]
        if _ends_sentence(words[i], tail):
            cuts.append(i + 1)
            since, last_clause = 0, -1
            continue
        if any(c in _CLAUSE_END for c in tail):
            last_clause = i
        if since >= max_words:
            # overlong: cut after the last clause if there was one, else here
            cut = last_clause + 1 if last_clause >= 0 else i + 1
            cuts.append(cut)
            since, last_clause = i + 1 - cut, -1
    starts = [0, *cuts]
    stops = [*cuts, len(words)]
    sentences = []
    for first, stop in zip(starts, stops, strict=True):
        begin = words[first].char_start
        end = len(plan.script)
        if stop < len(words):
            tail = plan.script[words[stop - 1].char_end : words[stop].char_start]
            space = next((k for k, c in enumerate(tail) if c.isspace()), len(tail))
            end = words[stop - 1].char_end + space
        sentences.append(
            Sentence(first=first, stop=stop, text=plan.script[begin:end].strip(), char_start=begin)
        )
    return sentences


def _ends_sentence(word: PlannedWord, tail: str) -> bool:
    """Does the text between `word` and the next word close a sentence?"""
    if "\n\n" in tail:
        return True
    # a terminator counts only before a space ("3.5" and "U.S.A" go on); tails always end at a word
    if _SENTENCE_END_RE.search(tail) is None:
        return False
    if tail.startswith(".") and not tail.startswith(".."):
        core = word.text.lower().rstrip(".")
        if core in _ABBREVIATIONS or (len(core) == 1 and core.isalpha()):
            return False
    return True


# 3. Units -> word spans ------------------------------------------------------------------------------


def match_unit_counts(
    expected: Sequence[int],
    expected_text: Sequence[str],
    unit_text: Sequence[str],
) -> list[int] | None:
    """Monotonic alignment of units to words by dynamic programming; returns first_word per unit.

    `expected[i]` is how many units word i gives when the engine phonemises it alone and
    `expected_text[i]` those phonemes; `unit_text[j]` is what the engine said for unit j. A move costs
    the difference in unit counts plus twice the phoneme dissimilarity, so a unit goes to the word that
    sounds like it. Moves: one word takes 0..4 units, 2..4 words share one unit ("I am" -> "aɪɐm"), or a
    unit is left over (a symbol the planner did not count as a word, such as a lone "&"), attached to
    the word before. Returns None if no alignment exists (the moves always allow one; callers stay
    safe anyway).
    """
    n, m = len(expected), len(unit_text)
    inf = math.inf
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    pre_exp = [0, *np.cumsum(expected).tolist()]

    def move_cost(i: int, j: int, k: int, u: int) -> float:
        count = abs(u - (pre_exp[i + k] - pre_exp[i]))
        if k == 0:
            return 1.5
        if u == 0:
            return float(count)
        said = "".join(unit_text[j : j + u])
        meant = "".join(expected_text[i : i + k])
        return count + 2.0 * (1.0 - SequenceMatcher(None, said, meant, autojunk=False).ratio())

    moves = [(1, u) for u in range(5)] + [(k, 1) for k in range(2, 5)] + [(0, 1)]
    # stay within a band around where the expected counts put each word: linear, not quadratic, time
    scale = m / max(pre_exp[-1], 1)
    band = 8 + abs(m - pre_exp[-1])
    for i in range(n + 1):
        centre = pre_exp[i] * scale
        for j in range(max(0, int(centre - band)), min(m, int(centre + band)) + 1):
            here = cost[i][j]
            if here == inf:
                continue
            for k, u in moves:
                if i + k > n or j + u > m:
                    continue
                c = here + move_cost(i, j, k, u)
                if c < cost[i + k][j + u]:
                    cost[i + k][j + u] = c
                    back[i + k][j + u] = (k, u)
    if cost[n][m] == inf:
        return None
    # walk back, then give every unit the first word of the move that consumed it
    path: list[tuple[int, int, int, int]] = []
    i, j = n, m
    while (i, j) != (0, 0):
        step = back[i][j]
        if step is None:
            return None
        k, u = step
        i, j = i - k, j - u
        path.append((i, j, k, u))
    first_word: list[int] = []
    for i, _j, k, u in reversed(path):
        for _ in range(u):
            if k == 0:  # leftover unit: it belongs with the word before
                first_word.append(first_word[-1] if first_word else 0)
            else:
                first_word.append(i)
    return first_word


def attached_text(script: str, words: Sequence[PlannedWord], i: int) -> str:
    """Word i with the symbols glued to it ("$5", "50%", "#1"), which engines read as part of it."""
    begin, end = words[i].char_start, words[i].char_end
    floor = words[i - 1].char_end if i > 0 else 0
    ceiling = words[i + 1].char_start if i + 1 < len(words) else len(script)
    while begin > floor and not script[begin - 1].isspace():
        begin -= 1
    if begin == floor and i > 0:  # glued to the word before ("10:30"): the glue is that word's
        begin = words[i].char_start
    while end < ceiling and not script[end].isspace():
        end += 1
    return script[begin:end]


def word_spans(
    weights: Sequence[float], units: Sequence[Unit], first_word: Sequence[int], lo: float, hi: float
) -> list[WordSpan]:
    """Exactly one span per word from units and the first word each unit covers.

    Words that own no unit share the unit group before them (after them for leading words); a shared
    group is split in proportion to the words' `weights` (their phoneme or character counts), at
    phoneme boundaries when it has enough phonemes. With no units at all, [lo, hi] is split so.
    """
    n = len(weights)
    if not units:
        return [WordSpan(s, e) for s, e in proportional(weights, lo, hi)]
    owner = [min(max(int(w), 0), n - 1) for w in first_word]
    for j in range(1, len(owner)):
        owner[j] = max(owner[j], owner[j - 1])  # monotonic: engines never go back in the text
    owner[0] = 0  # leading words without a unit share the first one
    groups: list[tuple[int, list[Unit]]] = []  # (first word, its units); it covers words up to the next
    for j, unit in enumerate(units):
        if groups and groups[-1][0] == owner[j]:
            groups[-1][1].append(unit)
        else:
            groups.append((owner[j], [unit]))
    stops = [first for first, _ in groups[1:]] + [n]
    spans: list[WordSpan] = []
    for (first, group), stop in zip(groups, stops, strict=True):
        start, end = group[0].start, max(u.end for u in group)
        phonemes = [p for u in group for p in u.phonemes]
        spans.extend(_split_group(weights[first:stop], start, end, phonemes))
    return spans


def _split_group(
    weights: Sequence[float], start: float, end: float, phonemes: list[tuple[str, float, float]]
) -> list[WordSpan]:
    n = len(weights)
    if n == 1:
        return [WordSpan(start, end, phonemes)]
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1e-3)
    fractions = np.cumsum(w) / w.sum()
    if len(phonemes) >= n:
        # cut at phoneme boundaries, each word keeping at least one phoneme
        cuts = [0]
        for k, fraction in enumerate(fractions[:-1]):
            cut = round(fraction * len(phonemes))
            cut = min(max(cut, cuts[-1] + 1), len(phonemes) - (n - 1 - k))
            cuts.append(cut)
        cuts.append(len(phonemes))
        spans = []
        for k in range(n):
            part = phonemes[cuts[k] : cuts[k + 1]]
            s = start if k == 0 else part[0][1]
            e = end if k == n - 1 else part[-1][2]
            spans.append(WordSpan(s, e, part))
        return spans
    spans = [WordSpan(s, e) for s, e in proportional(weights, start, end)]
    for ph in phonemes:  # keep the phonemes, attributed to the word they fall in
        middle = (ph[1] + ph[2]) / 2
        target = next((sp for sp in spans if sp.start <= middle < sp.end), spans[-1])
        target.phonemes.append(ph)
    return spans


def proportional(weights: Sequence[float], lo: float, hi: float) -> list[tuple[float, float]]:
    """Split [lo, hi] between words in proportion to their weights."""
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1e-3)
    edges = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(w) / w.sum()])
    return [(float(edges[k]), float(edges[k + 1])) for k in range(len(w))]


def char_weights(texts: Sequence[str]) -> list[float]:
    """Character counts, the weights to split time between words when nothing better is known."""
    return [float(max(len(t), 1)) for t in texts]


def repair_spans(spans: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """Make spans monotonic, non-overlapping, at least MIN_WORD_S long where room allows, inside the audio."""
    fixed: list[tuple[float, float]] = []
    previous_end = 0.0
    for start, end in spans:
        start = min(max(start, previous_end, 0.0), duration)
        end = min(max(end, start + MIN_WORD_S), duration)
        fixed.append((start, end))
        previous_end = end
    return fixed


def build_timings(words: Sequence[PlannedWord], spans: Sequence[WordSpan], duration: float) -> Timings:
    """Timings with one WordTiming per plan word (plan index and text) and phonemes inside their word."""
    repaired = repair_spans([(s.start, s.end) for s in spans], duration)
    timings = [
        WordTiming(index=w.index, text=w.text, start=round(s, 4), end=round(e, 4))
        for w, (s, e) in zip(words, repaired, strict=True)
    ]
    phonemes: list[PhonemeTiming] = []
    for word, span, (s, e) in zip(words, spans, repaired, strict=True):
        for name, ps, pe in span.phonemes:
            ps, pe = min(max(ps, s), e), min(max(pe, s), e)
            if pe > ps:
                phonemes.append(
                    PhonemeTiming(phoneme=name, start=round(ps, 4), end=round(pe, 4), word_index=word.index)
                )
    return Timings(words=timings, phonemes=phonemes)


# 4. Audio joins and level ----------------------------------------------------------------------------


def fade_edges(x: np.ndarray, sample_rate: int, fade_s: float = EDGE_FADE_S) -> np.ndarray:
    """Raised-cosine fade-in and fade-out so that pieces can be butted together without clicks."""
    y = np.array(x, dtype=np.float32, copy=True)
    n = min(int(fade_s * sample_rate), len(y) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


def quietest_point(x: np.ndarray, sample_rate: int, lo: float, hi: float, frame_s: float = 0.01) -> float:
    """Time (s) of the quietest short frame in [lo, hi]: where a pause can be cut in without a click."""
    a = max(0, int(lo * sample_rate))
    b = min(len(x), int(hi * sample_rate))
    hop = max(1, int(frame_s * sample_rate))
    if b - a < 2 * hop:
        return (lo + hi) / 2
    frames = np.lib.stride_tricks.sliding_window_view(x[a:b], hop)[:: hop // 4 or 1]
    energy = np.mean(frames.astype(np.float64) ** 2, axis=1)
    best = int(np.argmin(energy)) * (hop // 4 or 1) + hop // 2
    return (a + best) / sample_rate


def insert_silence(
    x: np.ndarray, sample_rate: int, at: float, seconds: float, fade_s: float = 0.008
) -> np.ndarray:
    """Cut at time `at`, fade both sides to zero, and put `seconds` of silence between them."""
    cut = round(min(max(at, 0.0), len(x) / sample_rate) * sample_rate)
    head = np.array(x[:cut], dtype=np.float32, copy=True)
    tail = np.array(x[cut:], dtype=np.float32, copy=True)
    n = int(fade_s * sample_rate)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        k = min(n, len(head))
        if k:
            head[-k:] *= ramp[::-1][-k:]
        k = min(n, len(tail))
        if k:
            tail[:k] *= ramp[:k]
    gap = np.zeros(round(seconds * sample_rate), dtype=np.float32)
    return np.concatenate([head, gap, tail])


def limit_peaks(x: np.ndarray, sample_rate: int, ceiling: float = PEAK_CEILING) -> np.ndarray:
    """Keep the level the engine produced and only bring down peaks above `ceiling`.

    A plain peak normalisation would erase the loudness differences between emotions (an angry take
    would come out as loud as a neutral one), so this is a look-ahead limiter: the gain each sample
    needs is held (minimum filter) and smoothed over the same few ms, so no peak exceeds the ceiling
    and the gain never changes abruptly.
    """
    y = np.asarray(x, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak <= ceiling:
        return y
    half = max(1, int(0.004 * sample_rate))
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(y).astype(np.float64), 1e-9))
    held = minimum_filter1d(need, size=2 * half + 1, mode="nearest")
    window = np.hanning(2 * half + 3)[1:-1]
    gain = np.convolve(np.pad(held, half, mode="edge"), window / window.sum(), mode="valid")
    out = (y * gain).astype(np.float32)
    top = float(np.max(np.abs(out)))
    if top > ceiling:  # numerical safety only
        out *= ceiling / top
    return out


# 5. Output checks ------------------------------------------------------------------------------------

# A sentence whose loudest 10 ms frame is below this (dBFS) is silent: every real word is far louder
# (speech peaks around -20 to -6 dBFS here), so this only fires when the engine failed.
SILENCE_DB = -50.0


def check_audible(x: np.ndarray, sample_rate: int, text: str) -> None:
    """EngineError when the audio for `text` is silent, empty or not finite."""
    y = np.asarray(x, dtype=np.float64)
    if len(y) == 0 or not np.all(np.isfinite(y)):
        raise EngineError(
            f"the speech engine returned {'no' if len(y) == 0 else 'invalid'} audio for {text[:60]!r}"
        )
    hop = max(1, int(0.01 * sample_rate))
    n = max(1, len(y) // hop)
    frames = np.resize(y, n * hop).reshape(n, hop) if len(y) >= hop else y[None, :]
    loudest = float(np.sqrt(np.max(np.mean(frames**2, axis=1))))
    level_db = 20 * np.log10(loudest + 1e-12)
    if level_db < SILENCE_DB:
        raise EngineError(
            f"the speech engine produced silence for {text[:60]!r} (loudest frame {level_db:.0f} dBFS); "
            "check the voice files and that the emotion's energy_db is not extremely low"
        )
