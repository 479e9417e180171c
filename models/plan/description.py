"""Turning a free-text emotion description into per-word emotions.

Understood (first version):
- one plain emotion for the whole script: "sad", "very angry", "slightly happy", "furious", "angry 0.8";
- temporal phases: "at first"/"at the start"/"in the beginning", "then"/"later"/"next",
  "in the middle", "at the end"/"by the end"/"finally"; the script is split by sentence when it has
  enough sentences, else into equal runs of words;
- quoted anchors: angry at "never again" (or 'never again', “…”, ‘…’) on every matching run of words.
Anything else is reported in the warnings and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from models.plan.phrases import read_phrase
from models.plan.tokens import WORD_RE, normalise_word
from models.vocabulary import Vocabulary


@dataclass(frozen=True)
class Cue:
    """The emotion the description gives one word."""

    label: str
    intensity: float
    source: str  # "description" (whole script) or "cue" (phase or anchor)


START, MIDDLE, END, NEXT = "start", "middle", "end", "next"

# Longest phrases first so "at the very end" is removed before "end".
_POSITION_PATTERNS: list[tuple[str, str]] = [
    (START, r"at the very (?:start|beginning)|at the (?:start|beginning|outset)|in the beginning"),
    (START, r"at first|to (?:begin|start) with|initially|first|starts?(?: (?:out|off))?|begins?|beginning"),
    (MIDDLE, r"in the middle|midway(?: through)?|halfway(?: through)?|middle"),
    (END, r"at the very end|(?:at|by|towards?|near) the end|in the end|at last|finally|lastly|eventually"),
    (END, r"ends?(?: up)?|ending|end"),
    (NEXT, r"then|later(?: on)?|afterwards?|after that|next|soon after"),
]
_POSITION_RES = [(kind, re.compile(rf"\b(?:{pattern})\b")) for kind, pattern in _POSITION_PATTERNS]

# Clause boundaries: punctuation, conjunctions, and just before a sequencing word.
_CLAUSE_SPLIT_RE = re.compile(
    # a full stop between digits is a decimal point ("angry 0.8"), not a boundary
    r"(?:[,;!?:]|\.(?!\d))+|\s+(?:and|but|while|whereas)\s+|\s+(?=(?:then|later|finally|afterwards|eventually)\b)"
)

# Quoted anchors; a single quote only counts when it is not an apostrophe inside a word.
_QUOTE_RE = re.compile(r"\"([^\"]*)\"|“([^”]*)”|(?<!\w)'(.*?)'(?!\w)|‘(.*?)’(?!\w)")
_PLACEHOLDER_RE = re.compile(r"\x01(\d+)\x01")
_TOKEN_RE = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)%?|\x01\d+\x01|[^\W_]+(?:['’\-][^\W_]+)*")

# Words that carry no emotion information but are normal in a description.
_FILLER_WORDS = """a an the at on in of to for as by with about from into over during around throughout
    through across all whole entire overall mostly mainly and but or so it its this that these those there
    he she they we i you his her their our my your one someone person man woman speaker narrator
    voice tone mood emotion emotions feeling feelings manner delivery style way time part parts
    is are was were be being been becomes become becoming gets get getting grows grow growing
    turns turn turning goes go going stays stay staying remains remain remaining sounds sound sounding
    seems seem seeming feels feel speaks speak speaking says say saying said talks talk talking
    reads read reading delivers deliver delivered when where while word words phrase line lines
    sentence sentences script text speech narration more less increasingly gradually slowly suddenly
    like"""
_FILLER = frozenset(_FILLER_WORDS.split())


@dataclass
class _Clause:
    text: str
    position: str | None = None
    label: str | None = None
    intensity: float = 0.0
    anchors: list[str] = field(default_factory=list)
    unclear: bool = False  # it had words that were neither emotions, positions nor filler


def interpret(
    description: str,
    words: list[str],
    sentence_of: list[int],
    vocab: Vocabulary,
) -> tuple[list[Cue | None], list[str]]:
    """Per-word cues (None where the description says nothing) and warnings for what was not understood."""
    cues: list[Cue | None] = [None] * len(words)
    warnings: list[str] = []
    text = " ".join(description.split())
    if not text:
        return cues, warnings

    quotes: list[str] = []

    def _stash(match: re.Match[str]) -> str:
        quotes.append(next(g for g in match.groups() if g is not None))
        return f" \x01{len(quotes) - 1}\x01 "

    stashed = _QUOTE_RE.sub(_stash, text)

    clauses: list[_Clause] = []
    dangling: _Clause | None = None  # "finally, very sad": a bare position belongs to the next part
    for part in _CLAUSE_SPLIT_RE.split(stashed):
        clause = _read_clause(part.strip(), quotes, vocab, warnings)
        if clause is None:
            continue
        if clause.label is None and clause.position and not clause.anchors and not clause.unclear:
            dangling = clause
            continue
        if dangling is not None and clause.label is not None and clause.position is None:
            clause.position = dangling.position
        dangling = None
        clauses.append(clause)
    if dangling is not None:
        warnings.append(f'no emotion follows "{dangling.text}" in the description; ignored')

    phases = [c for c in clauses if c.label is not None and not c.anchors]
    for first, stop, clause in _place_phases(phases, sentence_of, len(words), warnings):
        source = "description" if len(phases) == 1 and phases[0].position is None else "cue"
        assert clause.label is not None
        for i in range(first, stop):
            cues[i] = Cue(clause.label, clause.intensity, source)

    # Anchors are more specific than phases, so they are applied last.
    normalised = [normalise_word(w) for w in words]
    for clause in clauses:
        for quote in clause.anchors:
            if clause.label is None:
                warnings.append(f'no emotion given for "{quote}" in description part "{clause.text}"')
                continue
            target = [normalise_word(m.group()) for m in WORD_RE.finditer(quote)]
            hits = _find_runs(normalised, target)
            if not hits:
                warnings.append(f'anchor "{quote}" from the description was not found in the script; ignored')
            for start in hits:
                for i in range(start, start + len(target)):
                    cues[i] = Cue(clause.label, clause.intensity, "cue")
    return cues, warnings


def _read_clause(part: str, quotes: list[str], vocab: Vocabulary, warnings: list[str]) -> _Clause | None:
    if not part:
        return None
    shown = _PLACEHOLDER_RE.sub(lambda m: f'"{quotes[int(m.group(1))]}"', part)
    clause = _Clause(text=shown)
    lowered = part.lower()

    positions: list[str] = []
    for kind, pattern in _POSITION_RES:
        if pattern.search(lowered):
            positions.append(kind)
            lowered = pattern.sub(" ", lowered)
    explicit = [p for p in positions if p != NEXT]
    if len(set(explicit)) > 1:
        warnings.append(f'description part "{shown}" names several positions; using "{explicit[-1]}"')
    clause.position = explicit[-1] if explicit else (NEXT if positions else None)

    tokens = _TOKEN_RE.findall(lowered)
    clause.anchors = [quotes[int(m.group(1))] for t in tokens if (m := _PLACEHOLDER_RE.fullmatch(t))]
    tokens = [t for t in tokens if not _PLACEHOLDER_RE.fullmatch(t)]
    phrase = read_phrase(tokens, vocab)

    emotions = phrase.emotions
    if len({label for label, _, _ in emotions}) > 1:
        # "even"/"plain"/"flat" are neutral synonyms but also ordinary adverbs: a real emotion wins.
        emotions = [e for e in emotions if e[0] != vocab.neutral] or emotions
    if emotions:
        label, implied, word = emotions[0]
        ignored = sorted({w for lbl, _, w in emotions if lbl != label})
        if ignored:
            warnings.append(f'description part "{shown}" names several emotions; used "{word}" only')
        intensity = implied
        if phrase.intensities:
            intensity = phrase.intensities[-1][1]
        for token, value in phrase.numbers:
            if 0.0 <= value <= 1.0:
                intensity = value
            else:
                warnings.append(f'intensity {token} in description part "{shown}" is outside 0..1; ignored')
        clause.label = label
        clause.intensity = 0.0 if label == vocab.neutral else float(intensity)
    if phrase.negated:
        warnings.append(f'negated emotion {phrase.negated} in description part "{shown}" is not supported')

    leftovers = [t for t in phrase.unknown if t.lower() not in _FILLER]
    clause.unclear = bool(leftovers or phrase.numbers or phrase.intensities or phrase.negated)
    if clause.label is None and not phrase.negated:
        if clause.unclear and not clause.anchors:  # anchors without an emotion are reported later
            warnings.append(
                f'no known emotion in description part "{shown}"; ignored '
                f"(valid emotions: {', '.join(vocab.labels)})"
            )
    elif leftovers:
        warnings.append(f'did not understand {leftovers} in description part "{shown}"; ignored those words')
    return clause


def _parts(sentence_of: list[int], n_words: int, k: int) -> list[int]:
    """k+1 word boundaries splitting the script into k runs: by sentence when there are enough."""
    n_sentences = (max(sentence_of) + 1) if sentence_of else 0
    if n_sentences >= k:
        groups = np.array_split(np.arange(n_sentences), k)
        first_sentence = [int(g[0]) for g in groups]
        bounds = [sentence_of.index(s) for s in first_sentence]
    else:
        bounds = [int(g[0]) if len(g) else n_words for g in np.array_split(np.arange(n_words), k)]
    return [*bounds, n_words]


def _place_phases(
    phases: list[_Clause], sentence_of: list[int], n_words: int, warnings: list[str]
) -> list[tuple[int, int, _Clause]]:
    """(first, stop, clause) word runs for each phase, in script order."""
    if not phases:
        return []
    if len(phases) == 1 and phases[0].position is None:
        return [(0, n_words, phases[0])]
    opening = phases[0].position in (None, START, NEXT)
    if opening and all(p.position in (None, NEXT) for p in phases[1:]):
        # a plain sequence ("happy, then sad, then angry"): equal parts, one per phase
        bounds = _parts(sentence_of, n_words, len(phases))
        return [(bounds[i], bounds[i + 1], p) for i, p in enumerate(phases)]

    # explicit positions: thirds; relative phases take the third after the previous phase
    slot_of = {START: 0, MIDDLE: 1, END: 2}
    slots: dict[int, _Clause] = {}
    previous = -1
    for phase in phases:
        explicit = slot_of.get(phase.position or "")
        slot = explicit if explicit is not None else min(previous + 1, 2)
        if slot in slots:
            warnings.append(f'description part "{phase.text}" overrides "{slots[slot].text}" (same part)')
        slots[slot] = phase
        previous = slot
    bounds = _parts(sentence_of, n_words, 3)
    ordered = sorted(slots.items())
    placed: list[tuple[int, int, _Clause]] = []
    for i, (slot, phase) in enumerate(ordered):
        if i + 1 < len(ordered):
            stop_slot = ordered[i + 1][0]  # hold until the next phase begins
        elif phase.position in (START, MIDDLE):
            stop_slot = slot + 1  # "calm at first" says nothing about later parts
        else:
            stop_slot = 3
        placed.append((bounds[slot], bounds[stop_slot], phase))
    return placed


def _find_runs(words: list[str], target: list[str]) -> list[int]:
    if not target:
        return []
    n = len(target)
    return [i for i in range(len(words) - n + 1) if words[i : i + n] == target]
