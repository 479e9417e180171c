"""Placing description instructions on the script's words; shared by the rule and LLM description readers.

An Instruction says which emotion, how strong, and where: the whole script, a temporal phase
(start/middle/end/next), a span of sentences or words, or quoted anchors. Placement resolves every
instruction to word runs. Where several instructions cover a word, the more specific one wins:

    whole script < temporal phase < sentence/word span < quoted anchor   (inline tags beat all; rules.py)

At the same level the later-mentioned instruction wins, and when the two ask for different emotions the
plan records a warning that names both and the winner (the paper's failure case: incompatible emotions
asked of the same words).

Phases: a plain sequence ("happy, then sad, then angry") splits the script into equal parts, by sentence
when there are enough sentences. Explicit positions use thirds (start/middle/end), each phase holding until
the next one begins; "then" takes the third after the previous phase. An emotion named first with no place
of its own, followed only by explicitly placed phases, is the base for the whole script ("sad, but angry in
the middle" is sad again after the middle). Halves follow the same sentence rule.

Ramps run linearly over each run an instruction covers: rising from `ramp_low` (default RAMP_LOW) up to the
instruction's intensity, falling from its intensity down to `ramp_low`. The label stays the same throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from models.plan.tokens import WORD_RE, normalise_word
from models.types import PlanReading

START, MIDDLE, END, NEXT = "start", "middle", "end", "next"
POSITIONS = (START, MIDDLE, END, NEXT)
RISING, FALLING = "rising", "falling"
RAMPS = (RISING, FALLING)
SENTENCE, WORD, HALF = "sentence", "word", "half"
UNITS = (SENTENCE, WORD, HALF)

# A content reference marked so also covers the sentence after its match
# ("the fridge line and the one after it")
NEXT_TOO = " (and the one after)"

# Ramps run between this floor and the instruction's intensity.
RAMP_LOW = 0.2

# Specificity levels; a higher level overrides a lower one without a warning.
# A part found by meaning ranks under one counted out ("the first line"), which cannot be wrong.
_WHOLE, _PHASE, _CONTENT, _SPAN, _ANCHOR = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Span:
    """Sentences, words or halves `first..last` (inclusive, 0-based; negative counts from the end)."""

    unit: str
    first: int
    last: int


@dataclass(frozen=True)
class Place:
    """A part of the script named in a brief: sentences by count, a quoted anchor, or content
    ("the part about shipping delays"), which is located by meaning."""

    span: Span | None = None
    anchor: str | None = None
    content: str | None = None

    def __str__(self) -> str:
        if self.span is not None:
            return _span_text(self.span)
        return f'"{self.anchor}"' if self.anchor is not None else f'"{self.content}"'


@dataclass
class Extent:
    """How far an instruction reaches: from a place, up to (or until) a place, or to the end."""

    start: Place | None = None
    stop: Place | None = None
    stop_inclusive: bool = True  # "up to the last line" includes it; "until the last line" does not
    to_end: bool = False


@dataclass
class Instruction:
    """One thing the description asks for."""

    text: str  # as written, for messages
    label: str | None
    intensity: float = 0.0
    position: str | None = None  # START, MIDDLE, END, NEXT or None
    span: Span | None = None
    anchors: list[str] = field(default_factory=list)
    ramp: str | None = None  # RISING, FALLING or None (flat)
    ramp_low: float | None = None  # a ramp's low end (default RAMP_LOW); `intensity` is its high end
    content: str | None = None  # "for the part about X": X, located in the script by meaning
    extent: Extent | None = None
    how: str = ""  # how the emotion was read, for the plan's readings
    base: bool = False  # "otherwise ...": the whole script, under every other part
    # neutral from a register or delivery word of the tone lexicon ("firm", "urgent", "gentle"): how to
    # speak, not an absence of feeling, so it does not take words from an emotion asked for the same words
    register: bool = False

    @property
    def region(self) -> bool:
        """Placed on explicit words (a span, content or an extent), not a phase or anchors."""
        return self.span is not None or self.content is not None or self.extent is not None


@dataclass(frozen=True)
class Cue:
    """The emotion the description gives one word."""

    label: str
    intensity: float
    source: str  # "description" (whole script) or "cue" (phase, span or anchor)


class UnitMatch(Protocol):
    """Where a content reference was found: units (sentences) first..last, inclusive."""

    @property
    def first_unit(self) -> int: ...
    @property
    def last_unit(self) -> int: ...
    @property
    def similarity(self) -> float: ...


# (content queries, the script's sentences) -> one match or None per query, in one batched call
Locate = Callable[[list[str], list[str]], Sequence["UnitMatch | None"]]


@dataclass
class Placed:
    """Per-word cues (None where the brief says nothing), warnings, and how each part was read."""

    cues: list[Cue | None]
    warnings: list[str]
    readings: list[PlanReading] = field(default_factory=list)


def place(
    instructions: list[Instruction],
    words: list[str],
    sentence_of: list[int],
    locate: Locate | None = None,
    notes: Sequence[PlanReading] = (),
    clause_of: list[int] | None = None,
) -> Placed:
    """Cues for every word, warnings about conflicts and misses, and one reading per instruction.

    `notes` are readings of parts that place nothing on purpose (negated or someone else's emotion).
    """
    instructions = list(instructions)  # a part whose content is missing is replaced, not edited in place
    n = len(words)
    cues: list[Cue | None] = [None] * n
    owner: list[tuple[int, int] | None] = [None] * n  # (level, instruction number) that set each word
    warnings: list[str] = []
    conflicts: dict[tuple[int, int], list[int]] = {}  # (loser, winner) -> words
    where: dict[int, str] = {}

    def write(number: int, level: int, first: int, stop: int, source: str) -> None:
        instruction = instructions[number]
        assert instruction.label is not None
        values = _ramp(instruction, stop - first)
        for offset, i in enumerate(range(first, stop)):
            previous = owner[i]
            if previous is not None and previous[0] > level:
                continue  # a more specific instruction already holds this word
            if previous is not None and previous[0] == level and previous[1] != number:
                old = instructions[previous[1]]
                if old.label != instruction.label and instruction.register:
                    conflicts.setdefault((number, previous[1]), []).append(i)
                    continue  # "indignant, and firm about the abuse": the emotion keeps its words
                if old.label != instruction.label:
                    conflicts.setdefault((previous[1], number), []).append(i)
            cues[i] = Cue(instruction.label, values[offset], source)
            owner[i] = (level, number)

    labelled = [(k, ins) for k, ins in enumerate(instructions) if ins.label is not None]
    for ins in instructions:
        if ins.label is None:
            quoted = ", ".join(f'"{q}"' for q in ins.anchors)
            warnings.append(
                f"no emotion given for {quoted or 'it'} in description part '{ins.text}'; ignored"
            )

    normalised = [normalise_word(w) for w in words]
    located = _locate_contents(instructions, words, sentence_of, locate, warnings)
    for k, ins in labelled:
        if ins.content is not None and ins.content not in located and ins.span is None and ins.extent is None:
            # the part it names is not in the script: keep the emotion, read as if no part were named
            instructions[k] = ins = replace(ins, content=None)
    labelled = [(k, instructions[k]) for k, _ in labelled]

    def resolve(place: Place, ins: Instruction) -> tuple[int, int] | None:
        """The words [first, stop) a place names, or None (with a warning) when the script lacks it."""
        if place.span is not None:
            run = _span_run(place.span, sentence_of, n)
            if run is None:
                warnings.append(
                    f'description part "{ins.text}" asks for {_span_text(place.span)} '
                    f"but the script has only {_count(place.span.unit, sentence_of, n)}; ignored"
                )
            return run
        if place.anchor is not None:
            target = [normalise_word(m.group()) for m in WORD_RE.finditer(place.anchor)]
            hits = _find_runs(normalised, target)
            if not hits:
                warnings.append(f'"{place.anchor}" from the description was not found in the script; ignored')
                return None
            return hits[0], hits[0] + len(target)
        assert place.content is not None
        return located.get(place.content)

    # explicit regions, in the order written: "then ... until X" starts where the previous region stopped
    runs: dict[int, tuple[int, int]] = {}
    follows_region: set[int] = set()
    cursor = 0
    previous_was_region = False
    previous_region: int | None = None
    for k, ins in labelled:
        if ins.anchors and not ins.region:
            continue
        if ins.region:
            run = _region_run(ins, cursor, n, resolve)
            if run is not None and run[0] < run[1]:
                sequel = ins.position == NEXT or (ins.extent is not None and ins.extent.start is not None)
                if sequel and previous_region is not None and runs[previous_region][1] < run[0]:
                    # "exasperated about the old gyms, then upbeat once FitHub is introduced": the earlier
                    # part holds until the next begins
                    runs[previous_region] = (runs[previous_region][0], run[0])
                runs[k] = run
                cursor = run[1]
                previous_region = k
            previous_was_region = True
            continue
        previous_region = None
        if previous_was_region and ins.position in (NEXT, None) and cursor < n and k != labelled[0][0]:
            runs[k] = (cursor, n)  # "then serious again" after a located part: from there on
            follows_region.add(k)
            cursor = n
        previous_was_region = False

    for k, ins in labelled:
        if ins.base and not ins.region and not ins.anchors:
            write(k, _WHOLE, 0, n, "description")
            where[k] = "the whole script, under the other parts"
    phases = [
        (k, ins)
        for k, ins in labelled
        if not ins.anchors and not ins.region and k not in follows_region and not ins.base
    ]
    later = [p.position for _, p in phases[1:]]
    if phases and phases[0][1].position is None and all(p in (START, MIDDLE, END) for p in later):
        # "sad, but angry in the middle": the first, unplaced emotion is the base for the whole script
        write(phases[0][0], _WHOLE, 0, n, "description")
        where[phases[0][0]] = "the whole script"
        phases = phases[1:]
    for k, first, stop in _place_phases(phases, sentence_of, n, clause_of):
        write(k, _PHASE, first, stop, "cue")
        where[k] = _words_text(instructions[k].position or "part", first, stop, sentence_of)

    for k, (first, stop) in runs.items():
        ins = instructions[k]
        level = _SPAN if ins.span is not None or ins.extent is not None else _CONTENT
        write(k, _PHASE if k in follows_region else level, first, stop, "cue")
        ins = instructions[k]
        shown = _words_text("from there on" if k in follows_region else "", first, stop, sentence_of)
        matched = [p for p in _places(ins) if p.content is not None and p.content in located]
        for p in matched:
            shown += f', found "{p.content}" by meaning'
        where[k] = shown

    for k, ins in labelled:
        if ins.region:
            continue
        for quote in ins.anchors:
            target = [normalise_word(m.group()) for m in WORD_RE.finditer(quote)]
            hits = _find_runs(normalised, target)
            if not hits:
                warnings.append(f'anchor "{quote}" from the description was not found in the script; ignored')
            for start in hits:
                write(k, _ANCHOR, start, start + len(target), "cue")
            if hits:
                where[k] = f'"{quote}"' + (f" ({len(hits)} times)" if len(hits) > 1 else "")

    for (loser, winner), lost in conflicts.items():
        old, new = instructions[loser], instructions[winner]
        shown = " ".join(words[i] for i in lost[:6]) + (" …" if len(lost) > 6 else "")
        warnings.append(
            f'contradiction: "{old.text}" asks for {old.label} and "{new.text}" asks for {new.label} '
            f'on the same words ("{shown}"); {new.label} wins '
            + (
                f'("{old.text}" says how to speak, which does not cancel an emotion)'
                if old.register
                else "(at the same level the later part wins)"
            )
        )

    held = [0] * len(instructions)
    for holder in owner:
        if holder is not None:
            held[holder[1]] += 1
    readings = [
        PlanReading(
            phrase=ins.text,
            label=ins.label or "",
            intensity=round(ins.intensity, 4),
            how=ins.how or f"emotion word for {ins.label}",
            where=where.get(k, "nowhere"),
            words=held[k],
        )
        for k, ins in labelled
    ]
    return Placed(cues, warnings, [*readings, *notes])


def _places(ins: Instruction) -> list[Place]:
    own = [Place(span=ins.span)] if ins.span else [Place(content=ins.content)] if ins.content else []
    extent = [p for p in (ins.extent.start, ins.extent.stop) if p is not None] if ins.extent else []
    return own + extent


def _region_run(
    ins: Instruction,
    cursor: int,
    n: int,
    resolve: Callable[[Place, Instruction], tuple[int, int] | None],
) -> tuple[int, int] | None:
    """The words [first, stop) an instruction placed by span, content or extent covers."""
    own: tuple[int, int] | None = None
    if ins.span is not None or ins.content is not None:
        own = resolve(Place(span=ins.span, content=None if ins.span else ins.content), ins)
        if own is None and ins.extent is None:
            return None
    extent = ins.extent
    if extent is None:
        return own
    if extent.start is not None:
        start = resolve(extent.start, ins)
        if start is None:
            return None
        first = start[0]
    else:
        first = own[0] if own is not None else cursor
    if extent.to_end:
        stop = n
    elif extent.stop is not None:
        end = resolve(extent.stop, ins)
        if end is None:
            return None
        stop = end[1] if extent.stop_inclusive else end[0]
    else:
        stop = n if extent.start is not None or own is None else own[1]
    return first, stop


def _locate_contents(
    instructions: list[Instruction],
    words: list[str],
    sentence_of: list[int],
    locate: Locate | None,
    warnings: list[str],
) -> dict[str, tuple[int, int]]:
    """Every content reference of the brief found in the script's sentences, with one batched call."""
    queries = list(dict.fromkeys(p.content for ins in instructions for p in _places(ins) if p.content))
    if not queries:
        return {}
    if locate is None:
        warnings.append(f"parts of the script named by content ({', '.join(queries)}) cannot be located here")
        return {}
    n_sentences = max(sentence_of) + 1 if sentence_of else 0
    starts = [sentence_of.index(s) for s in range(n_sentences)] + [len(words)]
    units = [" ".join(words[starts[s] : starts[s + 1]]) for s in range(n_sentences)]
    found: dict[str, tuple[int, int]] = {}
    asked = list(dict.fromkeys(q.removesuffix(NEXT_TOO) for q in queries))
    matches = dict(zip(asked, locate(asked, units), strict=True))
    for query in queries:
        match = matches[query.removesuffix(NEXT_TOO)]
        if match is None:
            warnings.append(
                f'no part of the script clearly matches "{query}" from the description; '
                "read that part as if it named no place"
            )
            continue
        last = min(match.last_unit + (1 if query.endswith(NEXT_TOO) else 0), n_sentences - 1)
        found[query] = (starts[match.first_unit], starts[last + 1])
    return found


def _words_text(what: str, first: int, stop: int, sentence_of: list[int]) -> str:
    if first >= stop:
        return f"{what + ': ' if what else ''}no words (the script is too short for it)"
    a, b = sentence_of[first] + 1, sentence_of[stop - 1] + 1
    sentences = f"sentence {a}" if a == b else f"sentences {a}-{b}"
    return f"{what + ': ' if what else ''}{sentences} (words {first + 1}-{stop})"


def _ramp(instruction: Instruction, length: int) -> list[float]:
    top = instruction.intensity
    low = RAMP_LOW if instruction.ramp_low is None else instruction.ramp_low
    if instruction.ramp is None or length < 2 or top <= low:
        return [round(top, 4)] * length
    values = np.linspace(low, top, length)
    if instruction.ramp == FALLING:
        values = values[::-1]
    return [round(float(v), 4) for v in values]


def _parts(sentence_of: list[int], n_words: int, k: int, clause_of: list[int] | None = None) -> list[int]:
    """k+1 word boundaries splitting the script into k runs: by sentence when there are enough, else by
    clause (a long sentence is cut at its commas), else by words."""
    segments = sentence_of
    if clause_of is not None and ((max(sentence_of) + 1) if sentence_of else 0) < k:
        segments = clause_of
    n_segments = (max(segments) + 1) if segments else 0
    if n_segments >= k:
        groups = np.array_split(np.arange(n_segments), k)
        bounds = [segments.index(int(g[0])) for g in groups]
    else:
        bounds = [int(g[0]) if len(g) else n_words for g in np.array_split(np.arange(n_words), k)]
    return [*bounds, n_words]


def _place_phases(
    phases: list[tuple[int, Instruction]], sentence_of: list[int], n_words: int, clause_of: list[int] | None
) -> list[tuple[int, int, int]]:
    """(instruction number, first, stop) word runs for each phase, in the order they should be written."""
    if not phases:
        return []
    opening = phases[0][1].position in (None, START, NEXT)
    if opening and all(p.position in (None, NEXT) for _, p in phases[1:]):
        # a plain sequence ("happy, then sad, then angry"): equal parts, one per phase
        bounds = _parts(sentence_of, n_words, len(phases), clause_of)
        return [(k, bounds[i], bounds[i + 1]) for i, (k, _) in enumerate(phases)]

    # explicit positions: thirds; relative phases take the third after the previous phase
    slot_of = {START: 0, MIDDLE: 1, END: 2}
    slots: dict[int, list[tuple[int, Instruction]]] = {}
    previous = -1
    for k, phase in phases:
        explicit = slot_of.get(phase.position or "")
        slot = explicit if explicit is not None else min(previous + 1, 2)
        slots.setdefault(slot, []).append((k, phase))
        previous = slot
    bounds = _parts(sentence_of, n_words, 3, clause_of)
    ordered = sorted(slots.items())
    placed: list[tuple[int, int, int]] = []
    for i, (slot, members) in enumerate(ordered):
        last = members[-1][1]
        if i + 1 < len(ordered):
            stop_slot = ordered[i + 1][0]  # hold until the next phase begins
        elif last.position in (START, MIDDLE):
            stop_slot = slot + 1  # "calm at first" says nothing about later parts
        else:
            stop_slot = 3
        # every member is written so that a second emotion for the same part is reported as a conflict
        placed += [(k, bounds[slot], bounds[stop_slot]) for k, _ in members]
    return placed


def _count(unit: str, sentence_of: list[int], n_words: int) -> str:
    if unit == SENTENCE:
        n = (max(sentence_of) + 1) if sentence_of else 0
        return f"{n} sentence" + ("" if n == 1 else "s")
    if unit == HALF:
        return "2 halves"
    return f"{n_words} word" + ("" if n_words == 1 else "s")


def _span_text(span: Span) -> str:
    return (
        f"{span.unit}s {span.first}..{span.last}" if span.first != span.last else f"{span.unit} {span.first}"
    )


def _span_run(span: Span, sentence_of: list[int], n_words: int) -> tuple[int, int] | None:
    """(first, stop) words of a span, or None when the script is too short for it."""
    if span.unit == HALF:
        bounds = _parts(sentence_of, n_words, 2) if n_words >= 2 else [0, n_words, n_words]
        first, last = span.first % 2, span.last % 2
        return (bounds[first], bounds[last + 1]) if first <= last else None
    count = ((max(sentence_of) + 1) if sentence_of else 0) if span.unit == SENTENCE else n_words
    first = span.first + count if span.first < 0 else span.first
    last = span.last + count if span.last < 0 else span.last
    first, last = max(first, 0), min(last, count - 1)
    if first > last or first >= count:
        return None
    if span.unit == WORD:
        return first, last + 1
    starts = [sentence_of.index(s) for s in (first, last)]
    stop = sentence_of.index(last + 1) if last + 1 < count else n_words
    return starts[0], stop


def _find_runs(words: list[str], target: list[str]) -> list[int]:
    if not target:
        return []
    n = len(target)
    return [i for i in range(len(words) - n + 1) if words[i : i + n] == target]
